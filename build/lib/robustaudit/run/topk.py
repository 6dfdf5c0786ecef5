"""The ordered top-K audit: success rate, perturbation size and cost of each attack for each K."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustaudit.attacks.topk import FeatureSplit, OrderedTopKAttack
from robustaudit.errors import InputError
from robustaudit.models.torch import set_eval
from robustaudit.ops.rng import generator
from robustaudit.progress import progress_bar
from robustaudit.stats import clopper_pearson
from robustaudit.types import Bounds
from robustaudit.validate import check_inputs


def random_targets(y: torch.Tensor, k: int, n_classes: int, seed: int = 0) -> torch.Tensor:
    """Per example, k distinct classes other than the label, in random order (seeded per example)."""
    if not 1 <= k <= n_classes - 1:
        raise InputError(f"K must be between 1 and {n_classes - 1} for a {n_classes}-class model, got {k}")
    rows = []
    for i, label in enumerate(y.tolist()):
        others = torch.tensor([c for c in range(n_classes) if c != label])
        rows.append(others[torch.randperm(len(others), generator=generator(seed, "topk-targets", k, i))[:k]])
    return torch.stack(rows)


def load_targets(path: str | Path, n: int) -> torch.Tensor:
    """An (n, K) integer array of ordered target lists from .npy, .npz (key 'targets') or .csv/.txt."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist")
    try:
        if p.suffix == ".npz":
            with np.load(p) as f:
                a = f["targets"]
        elif p.suffix == ".npy":
            a = np.load(p)
        else:
            a = np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, dtype=np.int64, ndmin=2)
    except (ValueError, KeyError, OSError) as e:
        raise InputError(f"{p}: cannot read target lists ({e})") from None
    if a.ndim != 2 or len(a) != n or not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"{p}: expected an integer array of shape ({n}, K), got {a.dtype} {a.shape}")
    return torch.from_numpy(a.astype(np.int64))


def topk_audit(module: nn.Module, x: torch.Tensor, y: torch.Tensor, ks: Sequence[int],
               attacks: Sequence[OrderedTopKAttack], *, targets: torch.Tensor | None = None, layer: str | None = None,
               seed: int = 0, batch_size: int = 64, bounds: Bounds | None = None,
               progress: bool = True) -> dict[str, object]:
    """Every attack at every K (random target lists, or `targets` for its own K) on x."""
    b = bounds or Bounds()
    check_inputs(x, y, b)
    set_eval(module)
    split = FeatureSplit(module, layer)
    split.check(x[:batch_size])
    classes = split.linear.out_features
    plan = {targets.shape[1]: targets} if targets is not None else {
        k: random_targets(y, k, classes, seed) for k in ks if k <= classes - 1}
    if not plan:
        raise InputError(f"no K in {list(ks)} fits a {classes}-class model (K <= {classes - 1})")
    rows = []
    with progress_bar(progress) as bar:
        task = bar.add_task("ordered top-K", total=len(plan) * len(attacks) * len(x))
        for k, tk in plan.items():
            for attack in attacks:
                success, l1, l2, linf = [], [], [], []
                grads = unsolved = 0
                t0 = time.perf_counter()
                for i in range(0, len(x), batch_size):
                    idx = torch.arange(i, min(i + batch_size, len(x)))
                    xb = x[idx]
                    r = attack(split, xb, tk[idx].to(xb.device), seed=seed, bounds=b, ids=idx)
                    norms = r.norms(xb)
                    success.append(r.success)
                    l1.append(norms["l1"].cpu())
                    l2.append(norms["l2"].cpu())
                    linf.append(norms["linf"].cpu())
                    grads += int(r.gradients.sum())
                    unsolved += int(r.unsolved.sum())
                    bar.advance(task, len(idx))
                secs = time.perf_counter() - t0
                ok = torch.cat(success)
                wins, n = int(ok.sum()), len(ok)

                def mean(v: list[torch.Tensor], ok: torch.Tensor = ok) -> float | None:
                    return float(torch.cat(v)[ok].mean()) if bool(ok.any()) else None

                rows.append({"attack": attack.name, "k": k, "success_rate": wins / n,
                             "success_rate_ci95": list(clopper_pearson(wins, n)), "mean_l1": mean(l1),
                             "mean_l2": mean(l2), "mean_linf": mean(linf), "seconds_per_example": secs / n,
                             "gradients_per_example": grads / n,
                             "qps_per_example": grads / n if attack.name == "quad" else 0,
                             "unsolved_qps": unsolved})
    return {"n": len(x), "classes": classes, "layer": split.name, "budget": f"{attacks[0].search_steps}x"
            f"{attacks[0].steps}", "seed": seed, "results": rows}
