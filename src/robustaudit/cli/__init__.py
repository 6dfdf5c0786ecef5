"""The `robustaudit` command line: one thin module per domain (parse -> call the library -> show); the options
every command shares and the one InputError -> exit 2 handler live in `common`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from robustaudit.cli import certify, check, evaluate, explain, harden, runs, tools, topk, transfer
from robustaudit.cli.common import command, out
from robustaudit.cli.ownership import app as ownership_app
from robustaudit.cli.privacy import app as privacy_app
from robustaudit.cli.scaling import app as scaling_app
from robustaudit.version import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Audit how robust a classifier really is.")


def _version(value: bool) -> None:
    if value:
        out.print(f"robustaudit {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Audit how robust a classifier really is."""


command(app, model=True, remote=True, data=True, gate=True)(evaluate.evaluate)
command(app)(tools.demo)
command(app, model=True)(tools.serve)
command(app)(tools.attacks)
command(app, model=True, remote=True, data=True)(runs.curve)
command(app)(runs.report)
command(app)(runs.compare)
command(app, model=True, remote=True, gate=True)(transfer.transfer)
command(app, model=True, remote=True)(transfer.online)
command(app, model=True)(topk.topk)
command(app, model=True, remote=True, gate=True)(certify.certify)
command(app, model=True, remote=True)(certify.robustify)
command(app, model=True, remote=True, data=True)(certify.safety)
command(app)(check.check)
command(app, model=True, remote=True, data=True)(explain.explain)
command(app, model=True, remote=True, data=True)(harden.harden)
app.add_typer(scaling_app, name="scaling")
app.add_typer(privacy_app, name="privacy")
app.add_typer(ownership_app, name="ownership")


def _spread(argv: list[str], option: str = "--surrogates") -> list[str]:
    """Let `--surrogates M1 M2 M3` mean `--surrogates M1 --surrogates M2 --surrogates M3`."""
    spread: list[str] = []
    taking = False
    for token in argv:
        if token == option:
            spread.append(token)
            taking = True
            continue
        if taking and not token.startswith("-"):
            if spread[-1] != option:
                spread.append(option)
            spread.append(token)
            continue
        taking = False
        spread.append(token)
    return spread


def main() -> None:
    argv = sys.argv[1:]
    for option in ("--surrogates", "--sources", "--attackers"):
        argv = _spread(argv, option)
    app(args=argv)
