"""A pytest plugin (entry point `pytest11`): the `robustness_gate` fixture audits a model and fails the test when
the release gate fails, naming the report.

    def test_model_is_robust_enough(robustness_gate):
        robustness_gate(my_model, x, y, eps=8 / 255, fail_under=0.40)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def robustness_gate(tmp_path: Path) -> Callable[..., Any]:
    """`gate(model, data_or_x, y=None, *, eps, fail_under, rule="lower", allow_flags=(), **audit_options)`:
    `robustaudit.audit` with a gate; the report goes to `out` (default: the test's tmp_path/robustaudit)."""

    def gate(model: Any, data_or_x: Any, y: Any = None, *, eps: float | str, fail_under: float, rule: str = "lower",
             allow_flags: Sequence[str] = (), **options: Any) -> Any:
        from robustaudit.api import audit
        from robustaudit.gate import Gate

        out = Path(options.pop("out", tmp_path / "robustaudit"))
        record = audit(model, data_or_x, y, eps=eps, out=out, gate=Gate(fail_under, rule, tuple(allow_flags)),
                       **options)
        verdict = record.gate or {}
        if not verdict.get("passed"):
            pytest.fail(f"{verdict.get('line')}; report: {out / 'report.html'}", pytrace=False)
        return record

    return gate
