"""What every CLI command shares: the consoles, the one-line error exit and the --bounds parser."""

from __future__ import annotations

import typer
from rich.console import Console

from robustaudit.errors import InputError
from robustaudit.types import Bounds

err = Console(stderr=True)
out = Console()


def fail(message: str) -> None:
    """Print a one-line error and exit with code 2 (bad input)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def parse_bounds(text: str) -> Bounds:
    """'LOW,HIGH' -> Bounds."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--bounds must be LOW,HIGH, got {text!r}") from None
    return Bounds(low, high)
