"""Certify a data set with randomized smoothing: per example the smoothed prediction and its certified radius,
overall the certified accuracy at each radius."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from robustaudit.certify.smoothing import ABSTAIN, Smoothed
from robustaudit.models.base import LabelModel
from robustaudit.oracle import Oracle
from robustaudit.progress import progress_bar
from robustaudit.stats import clopper_pearson
from robustaudit.types import Bounds
from robustaudit.validate import check_inputs

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class CertRecord:
    sigma: float
    n0: int
    n: int
    alpha: float
    labels: torch.Tensor
    predictions: torch.Tensor  # ABSTAIN (-1) where the smoothed classifier abstains
    radii: torch.Tensor
    queries: torch.Tensor  # per example, exact
    seconds: float
    extra: dict[str, object] = field(default_factory=dict)

    def certified_accuracy(self, r: float) -> float:
        """Share of examples certified correct at radius r (correct AND radius >= r, as analyze.py)."""
        return float(((self.predictions == self.labels) & (self.radii >= r)).float().mean())

    def curve(self, points: int = 101) -> tuple[list[float], list[float]]:
        top = max(1.0, float(self.radii.max()) if len(self.radii) else 1.0)
        grid = np.linspace(0, top, points).tolist()
        return grid, [self.certified_accuracy(r) for r in grid]

    def to_json(self) -> dict[str, object]:
        n = len(self.labels)
        at = {}
        for r in RADII:
            k = int(((self.predictions == self.labels) & (self.radii >= r)).sum())
            at[f"{r:g}"] = {"certified_accuracy": k / n, "ci95": list(clopper_pearson(k, n))}
        grid, acc = self.curve()
        return {"sigma": self.sigma, "n0": self.n0, "n": self.n, "alpha": self.alpha, "examples": n,
                "abstained": int((self.predictions == ABSTAIN).sum()), "certified_accuracy": at,
                "curve": {"radius": grid, "certified_accuracy": acc}, "queries_total": int(self.queries.sum()),
                "seconds_per_example": self.seconds / max(n, 1), **self.extra,
                "per_example": [{"label": int(a), "prediction": int(b), "radius": float(c),
                                 "correct": bool(a == b)}
                                for a, b, c in zip(self.labels, self.predictions, self.radii, strict=True)]}


def certify_dataset(model: LabelModel, x: torch.Tensor, y: torch.Tensor, *, sigma: float, n0: int = 100,
                    n: int = 10_000, alpha: float = 0.001, batch_size: int = 400, seed: int = 0,
                    bounds: Bounds | None = None, progress: bool = True) -> CertRecord:
    """CERTIFY every example (top-1 labels suffice; every noisy sample is one counted query)."""
    check_inputs(x, y, bounds or Bounds())
    oracle = Oracle(model, len(x))
    smoothed = Smoothed(oracle, sigma, batch_size=batch_size, seed=seed)
    preds, radii = torch.full((len(x),), ABSTAIN, dtype=torch.long), torch.zeros(len(x), dtype=torch.float64)
    t0 = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task("certify", total=len(x))
        for i in range(len(x)):
            preds[i], radii[i] = smoothed.certify(x[i], i, n0, n, alpha)
            bar.advance(task)
    return CertRecord(sigma=sigma, n0=n0, n=n, alpha=alpha, labels=y.cpu().long(), predictions=preds, radii=radii,
                      queries=oracle.queries.clone(), seconds=time.perf_counter() - t0)
