"""`robustaudit privacy membership`: what a model leaks about its training data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from robustaudit.cli.common import (
    BoundsOpt,
    DataOptions,
    ModelOptions,
    OutOpt,
    QuietOpt,
    SeedOpt,
    command,
    out,
    parse_bounds,
    show_progress,
)

app = typer.Typer(no_args_is_help=True, help="Privacy audits: membership inference.")


def membership(
    model: Annotated[str, typer.Option(help="any model --model accepts in evaluate (local or an OIP URL)")],
    out_dir: OutOpt,
    model_options: ModelOptions,
    data_options: DataOptions,
    members: Annotated[Path | None, typer.Option(help="examples known to be in the training set (.npz x, y; "
                                                      "or any data evaluate reads)")] = None,
    nonmembers: Annotated[Path | None, typer.Option(help="examples known not to be in it")] = None,
    pool: Annotated[Path | None, typer.Option(help="instead: one .npz with x, y and member (0/1 per row)")] = None,
    attacks: Annotated[str | None, typer.Option(help="comma-separated: loss, confidence, lira, gap, boundary, "
                                                     "augmentation (default: all the access allows; lira with "
                                                     "--shadow)")] = None,
    access: Annotated[str | None, typer.Option(help="gradients | scores | labels (default: the most the model "
                                                    "offers)")] = None,
    shadow: Annotated[str | None, typer.Option(help="the target's training recipe for LiRA's shadow models: "
                                                    "FILE.py:FUNCTION(x, y[, seed]) -> nn.Module")] = None,
    population: Annotated[Path | None, typer.Option(help="extra labelled data for the shadow models' training "
                                                         "halves")] = None,
    shadows: Annotated[int, typer.Option(help="number of shadow models (even)")] = 16,
    budget: Annotated[int, typer.Option(help="label queries per example of the boundary attack (HopSkipJump)")]
    = 1000,
    shift: Annotated[int, typer.Option(help="augmentation attack: translations of 1..SHIFT pixels (4*SHIFT+1 "
                                            "queries)")] = 1,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option(help="examples per batch")] = 256,
    bounds: BoundsOpt = "0,1",
    quiet: QuietOpt = False,
) -> None:
    """Membership inference: how well each attack tells training members from non-members (AUC with a bootstrap
    interval, TPR at 1%/0.1%/0% FPR, balanced accuracy, exact queries per example), written to membership.json,
    summary.md and report.html."""
    from robustaudit.api import _access
    from robustaudit.commands import membership as run_membership

    kwargs = model_options.load_kwargs()
    level = _access(access)
    if level is not None:
        kwargs["access"] = level
    r = run_membership(model, members, nonmembers, pool=pool, attacks=None if attacks is None else [
        a.strip() for a in attacks.split(",") if a.strip()], shadow=shadow, population=population, shadows=shadows,
        budget=budget, shift=shift, bounds=parse_bounds(bounds), seed=seed, batch_size=batch_size,
        data_options=data_options, out=out_dir, progress=show_progress(quiet), **kwargs)
    for w in r["warnings"]:
        out.print(f"[yellow]warning:[/yellow] {w}")
    table = Table(title=f"membership inference, {r['n_members']} members + {r['n_nonmembers']} non-members, "
                        f"{r['access']} access")
    for col in ("attack", "AUC", "95% CI", "bal.acc", "TPR@1%", "queries"):
        table.add_column(col, justify="left" if col == "attack" else "right", no_wrap=True)
    for name, a in r["attacks"].items():
        table.add_row(name, f"{a['auc']:.3f}", f"{a['auc_ci95'][0]:.2f}-{a['auc_ci95'][1]:.2f}",
                      f"{a['accuracy']:.3f}", f"{a['tpr_at_fpr']['0.01']:.3f}", f"{a['queries_per_example']:.0f}")
    out.print(table)
    out.print(f"results written to {out_dir}/ (report.html, membership.json, summary.md)", highlight=False)


command(app, model=True, remote=True, data=True)(membership)
