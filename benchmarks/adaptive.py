"""Adaptive evaluation, in one run: an adversarially trained digits CNN (PGD-AT, Linf 0.1, 8x8 digits) and three
masked copies of it (8-level input quantisation, softmax of 1000x the logits, Gaussian input noise sigma 0.1),
each audited by the default cascade with adaptation (`--adaptive auto`) and without (`off`): robust accuracy,
seconds, forward passes and gradients per example. On the randomised copy, torchattacks' EOT-PGD (EOT 20) runs
beside ours when installed (`make bench-peers`).

    python benchmarks/adaptive.py [--n 200] [--eps 0.15]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import robustaudit
from robustaudit.masks import Noisy, Quantised, Saturated, adversarially_trained


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--eps", type=float, default=0.15)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    torch.set_num_threads(2)
    d = load_digits()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32))[:, None]
    y = torch.from_numpy(d.target.astype(np.int64))
    net = adversarially_trained(small_cnn(), x[:1400], y[:1400], eps=0.1)
    xt, yt = x[1400:1400 + args.n], y[1400:1400 + args.n]
    print(f"PGD-AT digits CNN, {len(xt)} test digits, Linf eps {args.eps}")
    print(f"{'model':11s} {'adaptive':8s} {'robust':>7s} {'naive':>6s} {'seconds':>8s} {'fwd/ex':>8s} {'grad/ex':>8s}"
          "  adaptations")
    for name, model in (("unmasked", net), ("quantised", Quantised(net).eval()), ("saturated", Saturated(net).eval()),
                        ("noisy", Noisy(net).eval())):
        for adaptive in (False, True):
            start = time.perf_counter()
            rec = robustaudit.audit(model, xt, yt, eps=args.eps, adaptive=adaptive)
            seconds = time.perf_counter() - start
            naive = "-" if rec.naive_robust_accuracy is None else f"{rec.naive_robust_accuracy:.3f}"
            print(f"{name:11s} {'auto' if adaptive else 'off':8s} {rec.robust_accuracy:7.3f} {naive:>6s} "
                  f"{seconds:8.1f} {np.mean([e.queries for e in rec.examples]):8.0f} "
                  f"{np.mean([e.gradients for e in rec.examples]):8.0f}  "
                  f"{', '.join(a['name'] for a in rec.adaptations) or '-'}")
    try:
        import torchattacks
    except ImportError:
        print("torchattacks not installed: its EOT-PGD on the noisy copy skipped (make bench-peers)")
        return
    noisy = Noisy(net).eval()
    start = time.perf_counter()
    adv = torchattacks.EOTPGD(noisy, eps=args.eps, alpha=args.eps / 4, steps=40, eot_iter=20)(xt, yt)
    with torch.no_grad():
        votes = torch.stack([noisy(adv).argmax(1) for _ in range(20)]).mode(0).values
    print(f"torchattacks EOT-PGD (40 steps, EOT 20) on noisy: robust {float((votes == yt).float().mean()):.3f} "
          f"(majority of 20 draws), {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
