"""Robust accuracy versus eps in one run: each eps attacks only the examples still robust at the smaller eps
(an example broken inside a ball stays broken inside every larger one)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from robustaudit.attacks.base import Attack
from robustaudit.errors import InputError
from robustaudit.models.base import LabelModel
from robustaudit.ops.rng import derive_seed
from robustaudit.run.runner import evaluate
from robustaudit.stats import clopper_pearson
from robustaudit.threat import ThreatModel


def robustness_curve(
    model: LabelModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, eps: Sequence[float],
    attacks: str | Sequence[Attack] = "fast", *, seed: int = 0, checks: bool = True, **options: Any,
) -> list[dict[str, Any]]:
    """Per eps (ascending): robust accuracy with its exact 95% interval, and how many examples were attacked."""
    levels = sorted(set(float(e) for e in eps))
    if not levels or levels[0] <= 0:
        raise InputError(f"give one or more eps > 0, got {list(eps)}")
    n = len(x)
    alive = torch.arange(n)
    rows = []
    for k, e in enumerate(levels):
        attacked = len(alive)
        if attacked:
            rec = evaluate(model, x[alive], y[alive], dataclasses.replace(threat, eps=e), attacks,
                           seed=derive_seed(seed, "eps", e), checks=checks and k == 0, **options)
            alive = alive[torch.tensor([ex.robust for ex in rec.examples], dtype=torch.bool)]
        rows.append({"eps": e, "robust_accuracy": len(alive) / n,
                     "robust_accuracy_ci95": list(clopper_pearson(len(alive), n)), "attacked": attacked})
    return rows


def plot_curve(rows: list[dict[str, Any]], path: str | Path, *, title: str = "") -> None:
    """Robust accuracy against eps with its 95% band, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = [r["eps"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.fill_between(eps, [r["robust_accuracy_ci95"][0] for r in rows], [r["robust_accuracy_ci95"][1] for r in rows],
                    alpha=0.25, label="95% interval (exact)")
    ax.plot(eps, [r["robust_accuracy"] for r in rows], marker="o", label="robust accuracy")
    ax.set_xlabel("eps")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
