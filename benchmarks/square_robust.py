"""Square at score access against torchattacks' Square on an adversarially trained model, at equal queries.

The model is the test suite's `robust_cnn` (small_cnn, PGD-5 adversarial training at Linf 0.1 on the first 1,400
sklearn digits, 8x8); the examples are digits 1400-1796 (397). For Linf (eps 0.1) and L2 (eps 0.5), 500 queries and
seeds 0..SEEDS-1, it prints robust accuracy of: ours with per-example windows (the default) and with AutoAttack's
shared windows, both run through `evaluate` with a budget of 500 queries per example (clean check included), and
torchattacks' Square with n_queries=500 (when installed: `make bench-peers`). tests/test_square.py keeps
torchattacks' figures as constants.

    python benchmarks/square_robust.py [--ours-only] [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import robust_accuracy  # noqa: E402
from conftest import small_cnn  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from robustaudit import ThreatModel, evaluate  # noqa: E402
from robustaudit.attacks.score.square import Square  # noqa: E402
from robustaudit.masks import adversarially_trained  # noqa: E402
from robustaudit.models import TorchModel, as_score_only  # noqa: E402
from robustaudit.types import Norm  # noqa: E402

QUERIES = 500
SETTINGS = (("linf", 0.1), ("l2", 0.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours-only", action="store_true")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..SEEDS-1")
    args = ap.parse_args()
    torch.set_num_threads(2)
    d = load_digits()
    x = torch.from_numpy(d.images / 16.0).float()[:, None]
    y = torch.from_numpy(d.target).long()
    net = adversarially_trained(small_cnn(seed=0), x[:1400], y[:1400], eps=0.1)
    xt, yt = x[1400:], y[1400:]
    model = as_score_only(TorchModel(net))
    print(f"robust_cnn, {len(xt)} digits, {QUERIES} queries; robust accuracy per seed")
    for norm, eps in SETTINGS:
        rows: dict[str, list[float]] = {"ours, per-example windows": [], "ours, shared windows": []}
        for seed in range(args.seeds):
            for label, per_example in (("ours, per-example windows", True), ("ours, shared windows", False)):
                threat = ThreatModel(norm=Norm.parse(norm), eps=eps, max_queries=QUERIES)
                rec = evaluate(model, xt, yt, threat, [Square(per_example_windows=per_example)], seed=seed,
                               checks=False)
                rows[label].append(rec.robust_accuracy)
            if not args.ours_only:
                try:
                    import torchattacks
                except ImportError:
                    continue
                sq = torchattacks.Square(net, norm="Linf" if norm == "linf" else "L2", eps=eps, n_queries=QUERIES,
                                         p_init=0.8, loss="margin", seed=seed)
                rows.setdefault("torchattacks", []).append(robust_accuracy(net, xt, yt, sq(xt, yt)))
        print(f"\n{norm} eps {eps}")
        for label, ras in rows.items():
            print(f"  {label:28s} mean {sum(ras) / len(ras):.4f}: " + " ".join(f"{r:.4f}" for r in ras))


if __name__ == "__main__":
    main()
