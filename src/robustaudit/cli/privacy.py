"""`robustaudit privacy membership | distribution`: what a model leaks about its training data."""

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

app = typer.Typer(no_args_is_help=True, help="Privacy audits: membership and distribution inference.")


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
    variance: Annotated[str, typer.Option(help="LiRA's Gaussians: global | per-example | auto (global below 64 "
                                               "shadow models, as the LiRA code advises)")] = "auto",
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
    from robustaudit.errors import InputError

    if variance not in ("auto", "global", "per-example"):
        raise InputError(f"--variance must be global, per-example or auto, got {variance!r}")
    kwargs = model_options.load_kwargs()
    level = _access(access)
    if level is not None:
        kwargs["access"] = level
    r = run_membership(model, members, nonmembers, pool=pool, attacks=None if attacks is None else [
        a.strip() for a in attacks.split(",") if a.strip()], shadow=shadow, population=population, shadows=shadows,
        fix_variance=None if variance == "auto" else variance == "global",
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


def distribution(
    data: Annotated[Path, typer.Option(help="labelled data the records are drawn from (.npz x, y; or any data "
                                            "evaluate reads)")],
    prop: Annotated[str, typer.Option("--property", help="class:K[,K...] (labels) or feature:J:THRESHOLD")],
    ratios: Annotated[str, typer.Option(help="the two property shares alpha_0,alpha_1, e.g. 0.5,0.2")],
    train: Annotated[str, typer.Option(help="the training recipe: FILE.py:FUNCTION(x, y[, seed]) -> nn.Module")],
    out_dir: OutOpt,
    data_options: DataOptions,
    attacks: Annotated[str, typer.Option(help="comma-separated: loss, threshold, meta")] = "loss,threshold,meta",
    train_size: Annotated[int, typer.Option(help="training records per model")] = 200,
    victims: Annotated[int, typer.Option(help="target models per ratio (games = 2 x victims)")] = 20,
    shadows: Annotated[int, typer.Option(help="the adversary's models per ratio")] = 50,
    test_size: Annotated[int, typer.Option(help="records in each test set of the black-box attacks")] = 500,
    meta_epochs: Annotated[int, typer.Option(help="training epochs of the meta-classifier")] = 200,
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Distribution inference: can an adversary tell which of two property shares a model was trained on?
    Accuracy over games with an exact interval and n_leaked per attack, written to distribution.json,
    summary.md and report.html."""
    from robustaudit.cli.common import floats
    from robustaudit.commands import distribution as run_distribution

    r = run_distribution(data, prop=prop, ratios=floats(ratios, "--ratios") or [], train=train,
                         attacks=[a.strip() for a in attacks.split(",") if a.strip()], size=train_size, victims=victims,
                         shadows=shadows, test_size=test_size, meta_epochs=meta_epochs, seed=seed,
                         data_options=data_options, out=out_dir, progress=show_progress(quiet))
    table = Table(title=f"distribution inference, share {r['ratios'][0]:g} vs {r['ratios'][1]:g}, {r['games']} games")
    for col in ("attack", "accuracy", "95% CI", "n_leaked", "seconds"):
        table.add_column(col, justify="left" if col == "attack" else "right", no_wrap=True)
    for name, a in r["attacks"].items():
        table.add_row(name, f"{a['accuracy']:.3f}", f"{a['accuracy_ci95'][0]:.2f}-{a['accuracy_ci95'][1]:.2f}",
                      "unbounded" if a["n_leaked"] is None else f"{a['n_leaked']:.2f}", f"{a['seconds']:.1f}")
    out.print(table)
    for c in r["caveats"]:
        out.print(f"[yellow]note:[/yellow] {c}")
    out.print(f"results written to {out_dir}/ (report.html, distribution.json, summary.md)", highlight=False)


command(app, data=True)(distribution)
