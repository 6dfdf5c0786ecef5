"""The three nested access levels: LabelModel ⊂ ScoreModel ⊂ GradModel.

Attacks never call these directly: they go through the `Oracle`, which counts every pass.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from robustaudit.types import Access


@runtime_checkable
class LabelModel(Protocol):
    """Top-1 labels only (a decision-based API)."""

    access: Access
    device: torch.device

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ScoreModel(LabelModel, Protocol):
    """Output scores (logits or probabilities), no gradients."""

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class GradModel(ScoreModel, Protocol):
    """White box: differentiable logits with respect to the input."""

    def logits(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class MapModel(ScoreModel, Protocol):
    """An interpretable system: each query returns the scores and an attribution map of the input (the map of
    the interpreter the deployment shows its users), as one query."""

    def predict_scores_and_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
