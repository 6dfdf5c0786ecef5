"""Sparse (L0, pixels) benchmark on the demo model (digits 32x32), side by side in one run:

- minimum L0 within 1,000 queries per example: `fgbb` (cooperative and random player II; and SafeCV's MNIST
  settings: farther-bound manipulation, probability reward) against a random-pixel
  baseline with the same budget (random pixels set to the farther bound, `visit` at a time, until the label
  changes; restarts; the fewest kept) — median over the examples, seconds per example;
- robust accuracy at eps = 10 pixels and 1,000 queries: Sparse-RS and fgbb (score access), PGD-L0 (white box),
  and ART's white-box JSMA (Papernot et al.; gamma = 10 pixels of 1,024) when the peers' venv has ART.

    python benchmarks/l0.py [--n 20] [--queries 1000] [--eps 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from robustaudit import ThreatModel, load_model
from robustaudit.attacks.registry import get
from robustaudit.attacks.score.fgbb import FGBB
from robustaudit.demo import demo_files
from robustaudit.models import TorchModel, as_score_only
from robustaudit.types import Norm


def random_pixels(net: TorchModel, x: torch.Tensor, y: torch.Tensor, queries: int, visit: int,
                  seed: int) -> np.ndarray:
    """Per example, the fewest pixels of the random-pixel search that changed the label within `queries` (inf if
    none): each query adds `visit` random unchanged pixels at the farther bound; a success or a count at the best
    so far restarts from the clean image."""
    rng = np.random.default_rng(seed)
    out = np.full(len(x), np.inf)
    for i in range(len(x)):
        flat = x[i].reshape(x.shape[1], -1)
        far = torch.where(flat < 0.5, 1.0, 0.0)
        spent, changed = 0, np.zeros(0, dtype=np.int64)
        while spent < queries:
            new = rng.choice(np.setdiff1d(np.arange(flat.shape[1]), changed), visit, replace=False)
            changed = np.concatenate([changed, new])
            img = flat.clone()
            img[:, changed] = far[:, changed]
            spent += 1
            if int(net.predict_labels(img.reshape(1, *x.shape[1:]))[0]) != int(y[i]):
                out[i] = min(out[i], len(changed))
                changed = np.zeros(0, dtype=np.int64)
            elif len(changed) >= out[i]:
                changed = np.zeros(0, dtype=np.int64)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--eps", type=int, default=10)
    args = ap.parse_args()
    mp, dp = demo_files()
    net = load_model(str(mp))
    assert isinstance(net, TorchModel)
    d = np.load(dp)
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
    with torch.no_grad():
        right = (net.predict_labels(x) == y).nonzero()[:, 0][: args.n]
    x, y = x[right], y[right]
    threat = ThreatModel(norm=Norm.L0, eps=args.eps, max_queries=args.queries)
    print(f"demo digits CNN, {len(x)} correctly classified test digits, budget {args.queries} queries, "
          f"eps {args.eps} pixels of {x[0, 0].numel()}")
    print(f"{'attack':<28}{'median min L0':>14}{'success@eps':>12}{'queries':>9}{'s/example':>10}")
    medians = {}
    for name, attack in (("fgbb (cooperative)", FGBB()), ("fgbb (random player II)", FGBB(player2="random")),
                         ("fgbb (SafeCV: far, p_y)", FGBB(manipulation="far", reward="probability"))):
        t = time.perf_counter()
        r = attack(as_score_only(net), x, y, threat, seed=0)
        assert r.min_distance is not None
        medians[name] = float(np.median(r.min_distance.numpy()))
        print(f"{name:<28}{medians[name]:>14.1f}{float(r.success.float().mean()):>12.3f}"
              f"{float(r.queries.float().mean()):>9.0f}{(time.perf_counter() - t) / len(x):>10.2f}")
    t = time.perf_counter()
    base = random_pixels(net, x, y, args.queries, FGBB().visit or max(1, round(0.005 * x[0, 0].numel())), 0)
    medians["random"] = float(np.median(base))
    print(f"{'random pixels (baseline)':<28}{medians['random']:>14.1f}{float((base <= args.eps).mean()):>12.3f}"
          f"{args.queries:>9}{(time.perf_counter() - t) / len(x):>10.2f}")
    print(f"ratio random / fgbb (cooperative): {medians['random'] / medians['fgbb (cooperative)']:.2f}x")
    for name in ("sparse-rs", "pgd-l0"):
        t = time.perf_counter()
        r = get(name)(net if name == "pgd-l0" else as_score_only(net), x, y, threat, seed=0)
        rate = float(r.success.float().mean())
        print(f"{name:<28}{'-':>14}{rate:>12.3f}{float(r.queries.float().mean()):>9.0f}"
              f"{(time.perf_counter() - t) / len(x):>10.2f}   robust accuracy {1 - rate:.3f}")
    try:
        from art.attacks.evasion import SaliencyMapMethod
        from art.estimators.classification import PyTorchClassifier
        from common import peer_module
    except ImportError:
        print("ART not installed (make bench-peers): JSMA reference skipped")
        return
    clf = PyTorchClassifier(peer_module(str(mp)), loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                            nb_classes=10, clip_values=(0.0, 1.0))
    t = time.perf_counter()
    xa = SaliencyMapMethod(clf, theta=1.0, gamma=args.eps / x[0, 0].numel(), verbose=False).generate(x.numpy())
    l0 = (np.abs(xa - x.numpy()).reshape(len(x), -1) > 0).sum(1)
    fooled = clf.predict(xa).argmax(1) != y.numpy()
    ok = fooled & (l0 <= args.eps)
    print(f"{'ART JSMA (white box)':<28}{float(np.median(l0)):>14.1f}{float(ok.mean()):>12.3f}{'-':>9}"
          f"{(time.perf_counter() - t) / len(x):>10.2f}   robust accuracy {1 - float(ok.mean()):.3f}")


if __name__ == "__main__":
    main()
