"""Scale benchmark, side by side in one run, on the demo model and 2,000 digits (the test set repeated):

* runner overhead: `evaluate` through shards, the SQLite store and the merge, against the bare attack loop
  (the same attack called batch by batch), with a cheap attack (FGSM) so that the overhead shows;
* Ray: the same run with 2 workers (`ray.init(num_cpus=2)`) against the local backend: speed-up and scaling
  efficiency on this machine.

    python benchmarks/scale.py [--n 2000] [--no-ray]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robustaudit import ThreatModel, load_model
from robustaudit.attacks.registry import get
from robustaudit.demo import demo_files
from robustaudit.run.backends import RayBackend
from robustaudit.run.data import ArraySource
from robustaudit.run.sharded import evaluate_sharded
from robustaudit.run.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--attack", default="fgsm")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model_path, data_path = demo_files()
    model = load_model(str(model_path))
    d = np.load(data_path)
    reps = -(-args.n // len(d["x"]))
    x = torch.from_numpy(np.concatenate([d["x"]] * reps)[: args.n])
    y = torch.from_numpy(np.concatenate([d["y"]] * reps)[: args.n]).long()
    threat = ThreatModel(eps=0.1)
    attack = get(args.attack)
    attack(model, x[:256], y[:256], threat)  # warm-up

    start = time.perf_counter()
    for xb, yb in zip(x.split(256), y.split(256), strict=True):
        attack(model, xb, yb, threat)
    bare = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store.sqlite")
        start = time.perf_counter()
        evaluate_sharded(model, ArraySource(x, y), threat, [attack], shard_size=256, store=store, checks=False)
        runner = time.perf_counter() - start
        store.close()
    print(f"\n{args.attack} on {args.n} digits, shards of 256")
    print(f"bare attack loop   {bare:7.2f} s  ({bare / args.n * 1e3:.3f} ms per example)")
    print(f"runner + store     {runner:7.2f} s  (overhead {100 * (runner / bare - 1):+.1f}%)")

    if not args.no_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        factory = functools.partial(load_model, str(model_path))
        backend = RayBackend(factory, workers=2)
        evaluate_sharded(model, ArraySource(x[:512], y[:512]), threat, [attack], shard_size=256, checks=False,
                         backend=backend)  # warm-up: Ray starts its worker processes once
        start = time.perf_counter()
        evaluate_sharded(model, ArraySource(x, y), threat, [attack], shard_size=256, checks=False, backend=backend)
        on_ray = time.perf_counter() - start
        ray.shutdown()
        print(f"Ray, 2 workers     {on_ray:7.2f} s  (speed-up {runner / on_ray:.2f}x over local, scaling efficiency "
              f"{runner / on_ray / 2:.0%}; {args.n / on_ray:.0f} examples/s, "
              f"{args.n / on_ray / 2:.0f} per worker)")


if __name__ == "__main__":
    main()
