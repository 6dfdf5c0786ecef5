"""An interpretable deep-learning system at score access: every query returns the classifier's scores and the
interpreter's attribution map for the predicted class, as a deployment that shows both would (the `MapModel`
protocol the genetic attack's map term reads)."""

from __future__ import annotations

import torch
from torch import nn

from robustaudit.interpret.maps import attribution_maps
from robustaudit.models.torch import set_eval
from robustaudit.types import Access


class InterpretableSystem:
    """`module` + a captum interpreter; scores (logits) and map come from one (counted) query."""

    access = Access.SCORES

    def __init__(self, module: nn.Module, interpreter: str, layer: str | None = None) -> None:
        set_eval(module)
        self.module, self.interpreter, self.layer = module, interpreter, layer
        self.device = next(module.parameters()).device

    def predict_scores_and_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.predict_scores(x)
        return scores, attribution_maps(self.module, x, scores.argmax(1), self.interpreter, self.layer)

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(x).float()

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_scores(x).argmax(1)
