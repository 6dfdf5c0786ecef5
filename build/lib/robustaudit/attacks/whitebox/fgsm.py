"""Fast Gradient Sign Method (and its L2 form, FGM)."""

from __future__ import annotations

from dataclasses import dataclass

from robustaudit.attacks.whitebox.pgd import PGD


@dataclass(frozen=True, kw_only=True)
class FGSM(PGD):
    """FGSM (Linf) / FGM (L2), white box; Goodfellow et al., "Explaining and Harnessing Adversarial Examples", 2015.

    One full step of size eps from x: PGD with one step, step eps and no random start.
    Cost: 1 fwd (clean) + 1 grad + 1 fwd per example.

    >>> FGSM()(model, x, y, ThreatModel(norm="linf", eps=0.1))  # doctest: +SKIP
    """

    name = "fgsm"
    steps: int = 1
    rel_stepsize: float = 1.0
    random_start: bool = False
