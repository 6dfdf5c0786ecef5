"""Certified accuracy on real digits at sigma = 0.25, in one run (spec certification-and-defences.md §2.3's table,
on the digits instead of CIFAR-10): the plain demo CNN, the same architecture trained with Gaussian noise, and the
plain CNN as a black box behind a ZO-AE-DS front end trained with RGE (q = 20) or CGE (d = 64), or with first-order
gradients (the white-box reference). Certification: n0 = 100, n = 10,000, alpha = 0.001 (the ZO-AE-DS protocol),
every 6th test digit. The front ends train on 600 digits for 5 epochs. Prints certified accuracy at radii 0-0.75,
the training queries and the time per example.

    python benchmarks/certify.py [--skip 6] [--epochs 5] [--train 600]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import cast

import torch

from robustaudit import load_model
from robustaudit.certify.denoise import ZOAEDS, Composed
from robustaudit.certify.run import certify_dataset
from robustaudit.demo import demo_files, digits_32, noisy_files
from robustaudit.models import as_label_only, as_score_only
from robustaudit.models.base import LabelModel
from robustaudit.models.torch import TorchModel

SIGMA = 0.25
RADII = (0.0, 0.25, 0.5, 0.75)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train", type=int, default=600, help="training digits for the front ends")
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    xtr, _, xte, yte = digits_32()
    x_train = torch.from_numpy(xtr[: args.train])
    x, y = torch.from_numpy(xte[:: args.skip]), torch.from_numpy(yte[:: args.skip])
    plain = cast(TorchModel, load_model(str(demo_files()[0])))
    rows: list[tuple[str, LabelModel, int]] = [("plain CNN", as_label_only(plain), 0),
                                               ("noise-trained CNN", as_label_only(load_model(str(noisy_files(SIGMA)))),
                                                0)]
    for name, estimator in [("ZO-AE-DS RGE q=20", "rge"), ("ZO-AE-DS CGE d=64", "cge"), ("FO-AE-DS", "fo")]:
        t0 = time.perf_counter()
        target = plain if estimator == "fo" else as_score_only(plain)
        front, stats = ZOAEDS(sigma=SIGMA, estimator=estimator, q=20, latent=64, epochs=args.epochs).train(
            target, x_train, progress=False)
        print(f"trained {name} in {time.perf_counter() - t0:.0f} s with {stats['training_queries']} target queries")
        rows.append((name, Composed(front, as_label_only(plain)), stats["training_queries"]))
    print(f"\ncertified accuracy, sigma {SIGMA}, n = {args.n}, alpha = 0.001, {len(y)} test digits:")
    print(f"{'model':22s} " + " ".join(f"r={r:<5g}" for r in RADII) + "  s/example  training queries")
    for name, model, queries in rows:
        rec = certify_dataset(model, x, y, sigma=SIGMA, n0=100, n=args.n, alpha=0.001, progress=False)
        print(f"{name:22s} " + " ".join(f"{rec.certified_accuracy(r):7.3f}" for r in RADII)
              + f"  {rec.seconds / len(y):9.2f}  {queries}")


if __name__ == "__main__":
    main()
