"""Honest downgrades: a white-box model seen only through its scores or its top-1 labels."""

from __future__ import annotations

import torch

from robustaudit.models.base import LabelModel, ScoreModel
from robustaudit.types import Access


class ScoreOnly:
    """Scores without gradients: what a score-based black-box attack may see."""

    access = Access.SCORES

    def __init__(self, model: ScoreModel) -> None:
        self._model = model
        self.device = model.device
        self.name = getattr(model, "name", "model")

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self._model.predict_scores(x)

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        return self._model.predict_scores(x).argmax(1)


class LabelOnly:
    """Top-1 labels only: what a decision-based attack may see."""

    access = Access.LABELS

    def __init__(self, model: LabelModel) -> None:
        self._model = model
        self.device = model.device
        self.name = getattr(model, "name", "model")

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        return self._model.predict_labels(x)


def as_score_only(model: ScoreModel) -> ScoreOnly:
    return ScoreOnly(model)


def as_label_only(model: LabelModel) -> LabelOnly:
    return LabelOnly(model)
