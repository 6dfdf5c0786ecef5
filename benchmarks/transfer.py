"""Transfer audit on the digits family, in one run: the demo CNN is the target; four public surrogates (MLP, small
CNN, CNN with BatchNorm, wide CNN; none is the target) and their ensemble craft MI, DI, TI and MI-DI-TI at Linf
eps 0.1. Prints the wall time per (pair, example) and the share spent on the target, the worst-case transfer
robust accuracy next to the white-box robust accuracy of the same target (the `fast` preset), and the online
attack's competitive ratios (k = 10, 100 stream orders).

    python benchmarks/transfer.py [--n 360] [--eps 0.1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, cast

from robustaudit import ThreatModel, evaluate, load_model
from robustaudit.demo import demo_files, surrogate_files
from robustaudit.models import as_label_only
from robustaudit.models.base import GradModel
from robustaudit.run.data import load_npz
from robustaudit.transfer.audit import online_audit, transfer_audit
from robustaudit.types import Norm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=360)
    ap.add_argument("--eps", type=float, default=0.1)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    model_path, data_path = demo_files()
    x, y = load_npz(data_path)
    x, y = x[: args.n], y[: args.n]
    target = load_model(str(model_path))
    surrogates = {Path(p).stem.removeprefix("surrogate_"): cast(GradModel, load_model(str(p)))
                  for p in surrogate_files().values()}
    threat = ThreatModel(norm=Norm.LINF, eps=args.eps)

    t0 = time.perf_counter()
    rec = transfer_audit(as_label_only(target), surrogates, ["mi", "di", "ti", "mi-di-ti"], x, y, threat,
                         progress=False)
    total = time.perf_counter() - t0
    crafted = int(rec.clean.sum())
    on_target = sum(p.target_seconds for p in rec.pairs)
    print(f"{len(rec.pairs)} pairs x {crafted} examples in {total:.1f} s: "
          f"{1000 * total / (len(rec.pairs) * crafted):.2f} ms per (pair, example), "
          f"{100 * on_target / total:.1f}% of it on the target")
    for p in rec.ranked():
        print(f"  {p.source:9s} {p.attack:9s} target robust accuracy {p.robust_accuracy:.3f}")
    print(f"  noise of the same norm: {rec.noise.robust_accuracy:.3f}")
    wb = evaluate(target, x, y, threat, "fast", progress=False)
    print(f"clean accuracy {float(rec.clean.float().mean()):.3f}; worst-case transfer robust accuracy "
          f"{float(rec.worst_case.float().mean()):.3f}; white-box robust accuracy (fast preset) "
          f"{wb.robust_accuracy:.3f}")
    print("transfer among the surrogates (row: crafted on, column: attacked):")
    for name, row in zip(rec.surrogates, rec.matrix, strict=True):
        print(f"  {name:9s} " + " ".join(f"{v:.3f}" for v in row))

    r = online_audit(as_label_only(target), surrogates["cnn"], x, y, threat, k=10, permutations=100,
                     progress=False).to_json()
    print(f"online (FGSM on the small CNN, k=10 of {len(x)}, 100 orders; offline optimum "
          f"{r['offline_successes']} successes):")
    for name, s in cast(dict[str, Any], r["strategies"]).items():
        print(f"  {name:10s} competitive ratio {s['competitive_ratio']:.3f} "
              f"(95% CI {s['ci95'][0]:.3f}-{s['ci95'][1]:.3f})")


if __name__ == "__main__":
    main()
