"""`robustaudit privacy membership | distribution | inversion`: what a model leaks about its training data."""

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

app = typer.Typer(no_args_is_help=True, help="Privacy audits: membership, distribution inference, model inversion.")


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


def inversion(
    model: Annotated[str, typer.Option(help="the target: any model --model accepts in evaluate (local or an OIP "
                                            "URL), at label access or above")],
    public: Annotated[Path, typer.Option(help="unlabelled public inputs from another population (.npz with x, an "
                                              "image folder or Parquet; labels are ignored)")],
    num_classes: Annotated[int, typer.Option(help="the target's number of classes")],
    out_dir: OutOpt,
    model_options: ModelOptions,
    data_options: DataOptions,
    invert: Annotated[str | None, typer.Option(help="the classes to invert, e.g. 0,3,7 (default: all)")] = None,
    evaluator: Annotated[str | None, typer.Option(help="an independent evaluation model (neither the target nor a "
                                                       "surrogate) for the attack accuracy")] = None,
    private_eval: Annotated[Path | None, typer.Option(help="labelled private examples, for evaluation only: the "
                                                           "distance of each reconstruction to the nearest")] = None,
    access: Annotated[str | None, typer.Option(help="gradients (white-box inversion of the target) | scores | "
                                                    "labels (LOKT) (default: the most the model offers)")] = None,
    budget: Annotated[int | None, typer.Option(help="cap on every target query of the attack")] = None,
    iterations: Annotated[int, typer.Option(help="stage 1: T-ACGAN generator updates")] = 2000,
    n_uncond: Annotated[int, typer.Option(help="stage 1: of which plain-GAN (no target query)")] = 300,
    n_dis: Annotated[int, typer.Option(help="stage 1: discriminator updates per generator update")] = 2,
    alpha: Annotated[float, typer.Option(help="stage 1: weight of the class loss in the discriminator's step")] = 1.5,
    alpha_g: Annotated[float, typer.Option(help="stage 1: weight of the class loss in the generator's step (the "
                                                "paper: the same as --alpha)")] = 0.1,
    per_class: Annotated[int, typer.Option(help="stage 2: generated images per class labelled by the target")] = 500,
    surrogate_epochs: Annotated[int, typer.Option(help="stage 2: training epochs per surrogate")] = 30,
    steps: Annotated[int, typer.Option(help="stage 3: Adam steps on the latent")] = 300,
    seeds: Annotated[int, typer.Option(help="stage 3: independent runs")] = 5,
    samples: Annotated[int, typer.Option(help="stage 3: reconstructions per class and seed")] = 4,
    seed: SeedOpt = 0,
    bounds: BoundsOpt = "0,1",
    quiet: QuietOpt = False,
) -> None:
    """Model inversion: reconstruct what each class of the target looks like from its top-1 labels (LOKT), its
    scores or its gradients; attack accuracy by an independent evaluator, target queries, the image grid. Each
    stage checkpoints into --out: rerun the same command to resume. Writes inversion.json, reconstructions.npz,
    grid.png, summary.md and report.html."""
    from robustaudit.api import _access
    from robustaudit.commands import inversion as run_inversion
    from robustaudit.errors import InputError
    from robustaudit.privacy.inversion import InversionSettings

    settings = InversionSettings(iterations=iterations, n_uncond=n_uncond, n_dis=n_dis, alpha=alpha, alpha_g=alpha_g,
                                 per_class=per_class, surrogate_epochs=surrogate_epochs, steps=steps, seeds=seeds,
                                 samples=samples)
    kwargs = model_options.load_kwargs()
    level = _access(access)
    if level is not None:
        kwargs["access"] = level
    try:
        chosen = None if invert is None else [int(c) for c in invert.split(",") if c.strip()]
    except ValueError:
        raise InputError(f"--invert takes class indices such as 0,3,7, got {invert!r}") from None
    r = run_inversion(model, public, classes=num_classes, invert=chosen, evaluator=evaluator, private_eval=private_eval,
                      budget=budget, settings=settings, bounds=parse_bounds(bounds), seed=seed,
                      data_options=data_options, out=out_dir, progress=show_progress(quiet), **kwargs)
    acc = r["attack_accuracy"]
    line = f"{r['method']}: {r['target_queries']} target queries"
    if acc is not None:
        line += f"; evaluator top-1 {acc['top1']['mean']:.3f}, top-5 {acc['top5']['mean']:.3f} over {r['seeds']} seeds"
    out.print(line, highlight=False)
    for c in r["caveats"]:
        out.print(f"[yellow]note:[/yellow] {c}")
    out.print(f"results written to {out_dir}/ (report.html, inversion.json, grid.png, summary.md)", highlight=False)


command(app, model=True, remote=True, data=True)(inversion)
