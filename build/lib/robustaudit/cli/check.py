"""`robustaudit check FILE`: the audit and the gate a CI job runs, from robustaudit.toml or pyproject.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robustaudit.cli.common import QuietOpt, show_progress, verdict


def check(
    config: Annotated[Path, typer.Argument(help="robustaudit.toml, or a pyproject.toml with [tool.robustaudit]")]
    = Path("robustaudit.toml"),
    quiet: QuietOpt = False,
) -> None:
    """Run the audit FILE describes (model, data, threat model, attacks) and its release gate: exit 1 when the
    gate fails, 0 when it passes (or none is set)."""
    from robustaudit.cli.evaluate import show
    from robustaudit.commands import check as run_check

    record, out = run_check(config, progress=show_progress(quiet))
    show(record, out)
    verdict(record.gate)
