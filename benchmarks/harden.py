"""`robustaudit harden` benchmark: each defence's acceptance figures, measured side by side in one run on this
machine.

- convex (breast cancer, 30 features min-max scaled, 455 train / 114 test): the solvers side by side (Clarabel vs
  SCS: seconds and optimum on the same program), the recovered network's objective against the optimum, the
  convex network (warm-start patterns of width 64, with and without pattern search) against full-batch Adam on
  the same non-convex objective at the same width from 10 other seeds, and
  the robust program against the standard one under `evaluate` (fast) at Linf eps 0.05;
- pgd-at / trades: the demo digits CNN, robust accuracy under the `fast` audit at Linf 0.1 before and after;
- pubdef: the demo's public CNN and MLP as sources, its wide CNN held out as the attacker, Linf 0.2.

    python benchmarks/harden.py [--part convex|pgd-at|trades|pubdef|all] [--epochs 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustaudit.commands import harden
from robustaudit.defend.convex import solve, train_nonconvex
from robustaudit.demo import demo_files, digits_32, surrogate_files


def breast_cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = ((d.data - d.data.min(0)) / (d.data.max(0) - d.data.min(0))).astype(np.float32)
    idx = np.random.default_rng(0).permutation(len(x))
    return x[idx[:455]], d.target[idx[:455]], x[idx[455:]], d.target[idx[455:]]


def convex(folder: Path) -> None:
    x, y, xte, yte = breast_cancer()
    beta = 1e-3
    warm = train_nonconvex(x, y, 2, width=8, beta=beta, seed=0)
    print("\nconvex program, 455 x 30, beta 1e-3, 8 Gaussian gates + the warm start's 8 + all-ones")
    print(f"{'solver':<10} {'seconds':>8} {'optimum':>12} {'recovered':>12}")
    for solver in ("clarabel", "scs"):
        r = solve(x, y, 2, patterns=8, beta=beta, warm=warm, solver=solver)
        print(f"{solver:<10} {r.seconds:>8.1f} {r.optimum:>12.6g} {r.network.objective(x, y, beta):>12.6g}")
    for width, rounds in ((64, 0), (64, 2)):
        start = time.perf_counter()
        wide = train_nonconvex(x, y, 2, width=width, beta=beta, seed=0)
        best = solve(x, y, 2, patterns=8, beta=beta, warm=wide, rounds=rounds)
        sgd = sorted(train_nonconvex(x, y, 2, width=best.network.width, beta=beta, seed=s).objective(x, y, beta)
                     for s in range(1, 11))
        print(f"warm start of width {width} (objective {wide.objective(x, y, beta):.6g}), {rounds} rounds of pattern "
              f"search: optimum {best.optimum:.6g} in {time.perf_counter() - start:.1f} s, {best.patterns} patterns, "
              f"width {best.network.width}, dual ratio {best.dual_ratio:.3f}")
        wins = sum(best.optimum <= s for s in sgd)
        print(f"  Adam on the non-convex objective at width {best.network.width}, 10 other seeds: min {sgd[0]:.6g}, "
              f"median {np.median(sgd):.6g}, max {sgd[-1]:.6g}; the convex optimum is <= {wins} of 10")
    start = time.perf_counter()
    doc = harden("convex", torch.from_numpy(x), torch.from_numpy(y), test=(torch.from_numpy(xte),
                 torch.from_numpy(yte)), eps=0.05, out=folder / "convex")
    report(doc, time.perf_counter() - start)


def report(doc: dict[str, Any], seconds: float) -> None:
    a, b = doc["audit"]["unhardened"], doc["audit"]["hardened"]
    print(f"{doc['method']}: clean {a['clean_accuracy']:.3f} -> {b['clean_accuracy']:.3f}, robust "
          f"{a['robust_accuracy']:.3f} -> {b['robust_accuracy']:.3f} (95% CI {b['robust_accuracy_ci95'][0]:.3f}-"
          f"{b['robust_accuracy_ci95'][1]:.3f}); {seconds / 60:.1f} min in all, training {training(doc):.0f} s")


def training(doc: dict[str, Any]) -> float:
    """Seconds spent training the hardened model (convex: solving both programs)."""
    if doc["method"] == "convex":
        return float(sum(v["seconds"] for v in doc["convex"].values() if isinstance(v, dict)))
    return float(sum(e["seconds"] for e in doc["log"]))


def digits(method: str, folder: Path, epochs: int) -> None:
    xtr, ytr, _, _ = digits_32()
    _, test = demo_files()
    start = time.perf_counter()
    if method == "pubdef":
        s = surrogate_files()
        doc = harden("pubdef", torch.from_numpy(xtr), torch.from_numpy(ytr), test=test,
                     recipe="robustaudit.demo:DigitsCNN", eps=0.2, epochs=epochs, sources=[s["cnn"], s["mlp"]],
                     attackers=[s["cnn-wide"]], out=folder / method)
    else:
        doc = harden(method, torch.from_numpy(xtr), torch.from_numpy(ytr), test=test,
                     recipe="robustaudit.demo:DigitsCNN", eps=0.1, epochs=epochs, steps=5, out=folder / method)
    report(doc, time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", default="all", choices=["convex", "pgd-at", "trades", "pubdef", "all"])
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("convex", "pgd-at", "trades", "pubdef"):
            if args.part in (part, "all"):
                if part == "convex":
                    convex(Path(tmp))
                else:
                    digits(part, Path(tmp), args.epochs)


if __name__ == "__main__":
    main()
