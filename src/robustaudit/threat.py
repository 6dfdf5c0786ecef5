"""The threat model: what the adversary may change, and what counts as success."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from robustaudit.errors import InputError
from robustaudit.types import Bounds, Norm, parse_number

MAX_EPS = 1e15  # beyond, float32 distances overflow; far beyond any input box's diameter


@dataclass(frozen=True)
class ThreatModel:
    """Perturbations x' with ||x' - x||_norm <= eps and x' inside `bounds`.

    `eps` is a number (a fraction string such as "8/255" is parsed too).
    `targeted=True` means success is reaching a given target class instead of leaving the true one.
    `max_queries` caps the forward passes an attack may spend per example (None: no cap).
    """

    norm: Norm = Norm.LINF
    eps: float = 8 / 255
    bounds: Bounds = field(default_factory=Bounds)
    targeted: bool = False
    max_queries: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", Norm.parse(self.norm))
        if isinstance(self.bounds, tuple | list):
            object.__setattr__(self, "bounds", Bounds(*self.bounds))
        eps = parse_number(self.eps)
        if not math.isfinite(eps) or eps <= 0:
            raise InputError(f"eps must be a finite number > 0, got {self.eps}")
        if eps > MAX_EPS:
            raise InputError(f"eps {eps:g} is too large to compute with (over {MAX_EPS:g}); a ball the size of the "
                             "input box's diameter already allows every input")
        if self.norm == Norm.L0:
            if eps != int(eps):
                raise InputError(f"at --norm l0, eps is a number of pixels (a whole number >= 1), got {eps:g}")
            eps = float(int(eps))
        object.__setattr__(self, "eps", eps)
        if self.max_queries is not None and (int(self.max_queries) != self.max_queries or self.max_queries < 1):
            raise InputError(f"the query budget must be a positive integer or None, got {self.max_queries}")

    def is_success(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Per-example success of the adversary for these logits (labels y, targets when targeted)."""
        pred = logits.argmax(1)
        return self.success_of_labels(pred, y, target)

    def success_of_labels(
        self, pred: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.targeted:
            if target is None:
                raise InputError("a targeted threat model needs a target class per example")
            return pred == target
        return pred != y

    def to_json(self) -> dict[str, object]:
        return {
            "norm": self.norm.value,
            "eps": self.eps,
            "bounds": [self.bounds.low, self.bounds.high],
            "targeted": self.targeted,
            "max_queries": self.max_queries,
        }
