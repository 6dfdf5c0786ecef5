"""Robustness as a release gate: a figure against a threshold, judged on the lower end of its exact 95% interval
(or the estimate), failed outright by a diagnostic that makes the figure untrustworthy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from robustaudit.errors import InputError

#: flags that make a figure untrustworthy unless an adaptation handled them (or the user allows them)
UNTRUSTWORTHY = ("training_mode", "buffer_updates", "probability_outputs", "randomized", "zero_gradients",
                 "nonfinite_gradients", "shattered_gradients", "non_differentiable", "not_broken_at_large_eps",
                 "gradient_masking", "incomplete", "not_evaluated", "checks_skipped", "label_mismatch")
RULES = ("lower", "point")


@dataclass(frozen=True)
class Gate:
    """Fail when the figure (the lower end of its 95% interval with rule "lower", the estimate with "point") is
    below `fail_under`, or when an untrustworthy flag fired that no adaptation handled and `allow_flags` omits."""

    fail_under: float
    rule: str = "lower"
    allow_flags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_under <= 1.0:
            raise InputError(f"--fail-under must lie in [0, 1], got {self.fail_under}")
        if self.rule not in RULES:
            raise InputError(f"--gate must be lower or point, got {self.rule!r}")

    def judge(self, what: str, estimate: float, ci95: tuple[float, float] | list[float],
              flags: Sequence[str] = (), handled: set[str] | None = None) -> dict[str, Any]:
        """The verdict on `what` (e.g. "robust accuracy"): passed, the figure judged, why, in one line."""
        figure = float(ci95[0]) if self.rule == "lower" else float(estimate)
        named = "the lower end of its 95% interval" if self.rule == "lower" else "the estimate"
        blocking = [f for f in flags if f in UNTRUSTWORTHY and f not in (handled or set())
                    and f not in self.allow_flags]
        passed = figure >= self.fail_under and not blocking
        if blocking:
            line = (f"gate FAILED: {', '.join(blocking)} makes the {what} untrustworthy (allow with --allow-flag "
                    f"CODE once understood)")
        else:
            line = (f"gate {'passed' if passed else 'FAILED'}: {what} {figure:.3f} ({named}) "
                    f"{'>=' if passed else '<'} {self.fail_under:g}")
        return {"passed": passed, "threshold": self.fail_under, "rule": self.rule, "figure": figure, "what": what,
                "blocking_flags": blocking, "line": line}
