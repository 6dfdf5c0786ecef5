"""Ordered top-K attacks on the 100-class digit-pairs model (two real digits, 16x16 each, side by side; classes
00-99), in one run: success rate and mean L2 of successful perturbations for K = 1, 5, 10, 20, for QuadAttack, CW^K and
Adversarial Distillation at the same 1 x 60 budget, with wall time per example.

    python benchmarks/topk.py [--n 100] [--budget 1x60] [--lr 0.05]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, cast

import torch

from robustaudit import load_model
from robustaudit.attacks.topk import TOPK_ATTACKS
from robustaudit.demo import pairs_files
from robustaudit.models.torch import TorchModel
from robustaudit.run.data import load_npz
from robustaudit.run.topk import topk_audit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--budget", default="1x60")
    ap.add_argument("--lr", type=float, default=0.05, help="AdamW learning rate (the CLI default is 0.01)")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    s, t = (int(v) for v in args.budget.split("x"))
    model_path, data_path = pairs_files()
    module = cast(TorchModel, load_model(str(model_path))).module
    x, y = load_npz(data_path)
    with torch.no_grad():
        right = module(x).argmax(1) == y
    print(f"digit-pairs model: clean accuracy {float(right.float().mean()):.3f} on {len(y)} test pairs")
    x, y = x[right][: args.n], y[right][: args.n]
    attacks = [cls(search_steps=s, steps=t, lr=args.lr) for cls in TOPK_ATTACKS.values()]
    r = topk_audit(module, x, y, [1, 5, 10, 20], attacks, progress=False)
    print(f"{len(y)} correctly classified pairs, budget {args.budget}, lr {args.lr:g}:")
    print(f"{'K':>3} {'attack':7s} {'success':>8s} {'mean L2':>8s} {'s/example':>10s}")
    for row in sorted(cast(list[dict[str, Any]], r["results"]), key=lambda row: (row["k"], row["attack"])):
        l2 = "-" if row["mean_l2"] is None else f"{row['mean_l2']:.3f}"
        print(f"{row['k']:>3} {row['attack']:7s} {row['success_rate']:8.3f} {l2:>8s} "
              f"{row['seconds_per_example']:10.3f}")


if __name__ == "__main__":
    main()
