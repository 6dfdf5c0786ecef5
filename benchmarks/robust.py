"""Strength per unit of compute on a model where examples survive: the PGD-AT digits CNN (`robust_files`, built
and cached on first use), Linf eps 0.1, 200 test digits, 2 threads, in one run.

Cost in floors: seconds / the time of 20 forward+backward passes of the batch. Rows: our `fast`, PMA+ as published
(`pma,apgd-t`: APGD-T over 9 targets, what `fast` was before issue 18) and `standard`,
torchattacks' AutoAttack (when installed: `make bench-peers`) and, with `--autoattack PATH` (a checkout of
fra31/auto-attack), the reference AutoAttack, standard version.

    python benchmarks/robust.py [--n 200] [--eps 0.1] [--autoattack PATH] [--ours-only]
        [--audits fast/pma,apgd-t/standard]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from common import peer_module, robust_accuracy

from robustaudit import ThreatModel, evaluate, load_model
from robustaudit.demo import robust_files


def timed(fn: Callable[[], torch.Tensor | float]) -> tuple[torch.Tensor | float, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--autoattack", default=None, help="path of a fra31/auto-attack checkout")
    ap.add_argument("--ours-only", action="store_true")
    ap.add_argument("--audits", default="fast/pma,apgd-t/standard",
                    help="'/'-separated attack specs (presets or comma lists); pma,apgd-t is PMA+ with 9 targets")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    torch.set_num_threads(args.threads)
    model_path, data_path = robust_files()
    model = load_model(str(model_path))
    net = peer_module(str(model_path))
    d = np.load(data_path)
    x, y = torch.from_numpy(d["x"][: args.n]), torch.from_numpy(d["y"][: args.n]).long()

    def floor() -> torch.Tensor:
        for _ in range(20):
            xg = x.clone().requires_grad_(True)
            torch.nn.functional.cross_entropy(net(xg), y).backward()
        return x

    floor()
    _, t_floor = timed(floor)
    print(f"PGD-AT digits CNN ({model_path.name}), {len(x)} examples, Linf eps {args.eps}, {args.threads} threads; "
          f"clean accuracy {robust_accuracy(net, x, y, x):.3f}; floor {t_floor:.2f} s")
    rows: list[tuple[str, float, float]] = []
    for preset in args.audits.split("/"):
        start = time.perf_counter()
        rec = evaluate(model, x, y, ThreatModel(eps=args.eps), preset, seed=0, checks=False).robust_accuracy
        rows.append((f"robustaudit {preset}", float(rec), time.perf_counter() - start))
    if not args.ours_only:
        try:
            import torchattacks

            aa = torchattacks.AutoAttack(net, norm="Linf", eps=args.eps, version="standard", n_classes=10, seed=0)
            adv, t = timed(lambda: aa(x, y))
            rows.append(("torchattacks AutoAttack", robust_accuracy(net, x, y, adv), t))  # type: ignore[arg-type]
        except ImportError:
            print("torchattacks not installed: skipped its AutoAttack (make bench-peers)")
    if args.autoattack:
        sys.path.insert(0, args.autoattack)
        from autoattack import AutoAttack

        ref = AutoAttack(net, norm="Linf", eps=args.eps, version="standard", seed=0, verbose=False, device="cpu")
        adv, t = timed(lambda: ref.run_standard_evaluation(x, y, bs=len(x)))
        rows.append(("reference AutoAttack", robust_accuracy(net, x, y, adv), t))  # type: ignore[arg-type]
    reference = next((t for name, _, t in rows if name == "reference AutoAttack"), None)
    head = f"\n{'audit':26s} {'robust acc':>10s} {'seconds':>8s} {'floors':>7s}"
    print(head + ("  vs reference" if reference else ""))
    for name, ra, t in rows:
        print(f"{name:26s} {ra:10.3f} {t:8.1f} {t / t_floor:7.1f}" + (f"  {t / reference:.2f}x" if reference else ""))


if __name__ == "__main__":
    main()
