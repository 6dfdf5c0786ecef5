"""`robustaudit certify`, `robustaudit robustify` and `robustaudit safety`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from robustaudit.cli.common import (
    BoundsOpt,
    ModelOptions,
    NpzOpt,
    OutOpt,
    QuietOpt,
    err,
    out,
    parse_bounds,
    show_progress,
    verdict,
)
from robustaudit.gate import Gate
from robustaudit.tracking import Tracking
from robustaudit.types import DataOptions


def certify(
    model: Annotated[str, typer.Option(help="any model evaluate accepts, or an http(s) URL (top-1 labels suffice)")],
    sigma: Annotated[float, typer.Option(help="standard deviation of the Gaussian noise")],
    data: NpzOpt,
    out_dir: OutOpt,
    model_options: ModelOptions,
    gate: Gate | None,
    track: Tracking,
    n0: Annotated[int, typer.Option(help="noise samples to select the class")] = 100,
    n: Annotated[int, typer.Option(help="noise samples to estimate its probability")] = 10_000,
    alpha: Annotated[float, typer.Option(help="failure probability of each certificate")] = 0.001,
    denoiser: Annotated[Path | None, typer.Option(help="front end from 'robustaudit robustify', put in front of "
                                                       "the model")] = None,
    skip: Annotated[int, typer.Option(help="certify every SKIP-th example")] = 1,
    batch_size: Annotated[int, typer.Option(help="noisy samples per model call")] = 400,
    seed: Annotated[int, typer.Option(help="seed of the noise")] = 0,
    bounds: BoundsOpt = "0,1",
    quiet: QuietOpt = False,
    radius: Annotated[float, typer.Option(help="the L2 radius whose certified accuracy --fail-under judges")] = 0.5,
) -> None:
    """Randomized smoothing (Cohen et al. 2019): per example the smoothed prediction (or abstain) and its
    certified L2 radius; certified accuracy at radii 0-1 and the curve (report.html)."""
    from robustaudit.certify.run import RADII
    from robustaudit.commands import certify as run_certify

    r = run_certify(model, data, sigma=sigma, n0=n0, n=n, alpha=alpha, denoiser=denoiser, skip=skip,
                    batch_size=batch_size, seed=seed, bounds=parse_bounds(bounds), out=out_dir,
                    progress=show_progress(quiet), gate=gate, gate_radius=radius,
                    **model_options.load_kwargs())
    table = Table(title=f"randomized smoothing, sigma={sigma:g}, n={n}, alpha={alpha:g}, {r['examples']} examples")
    table.add_column("L2 radius")
    table.add_column("certified accuracy", justify="right")
    for at in RADII:
        table.add_row(f"{at:g}", f"{r['certified_accuracy'][f'{at:g}']['certified_accuracy']:.3f}")
    out.print(table)
    out.print(f"{r['abstained']} abstained; {r['queries_total']} queries; results written to {out_dir}/ "
              "(report.html, certify.json, summary.md)", highlight=False)
    track.log("certify", out_dir, {k: v for k, v in r.items() if k not in ("per_example", "curve")})
    verdict(r.get("gate"))


def robustify(
    target: Annotated[str, typer.Option(help="the black-box model: any model evaluate accepts, or an http(s) URL "
                                             "(scores needed; gradients for --estimator fo)")],
    sigma: Annotated[float, typer.Option(help="noise level the front end is trained for")],
    data: Annotated[Path, typer.Option(help=".npz with training images x (labels are not needed)")],
    out_path: Annotated[Path, typer.Option("--out", help="front end (TorchScript .pt) to give to certify "
                                                         "--denoiser")],
    model_options: ModelOptions,
    estimator: Annotated[str, typer.Option(help="rge | cge (central, 2d queries) | cge-forward (d + 1) | fo "
                                                "(first-order reference, white-box target)")] = "cge",
    q: Annotated[int, typer.Option(help="RGE: random directions per estimate")] = 192,
    latent: Annotated[int, typer.Option(help="autoencoder code size d")] = 64,
    epochs: Annotated[int, typer.Option(help="zeroth-order training epochs")] = 10,
    pretrain_epochs: Annotated[int, typer.Option(help="white-box autoencoder (and denoiser) epochs")] = 20,
    pretrain_denoiser: Annotated[bool, typer.Option(help="pretrain the denoiser on MSE first")] = True,
    batch_size: Annotated[int, typer.Option(help="training examples per step")] = 64,
    seed: Annotated[int, typer.Option(help="seed")] = 0,
    bounds: BoundsOpt = "0,1",
    quiet: QuietOpt = False,
) -> None:
    """ZO-AE-DS (Zhang et al. 2022): train a denoiser + autoencoder in front of a model reachable only by
    queries, with zeroth-order gradients in the code space; every target query is counted."""
    from robustaudit.commands import robustify as run_robustify

    stats = run_robustify(target, data, sigma=sigma, out=out_path, estimator=estimator, q=q, latent=latent,
                          epochs=epochs, pretrain_epochs=pretrain_epochs, pretrain_denoiser=pretrain_denoiser,
                          batch_size=batch_size, seed=seed, bounds=parse_bounds(bounds), progress=show_progress(quiet),
                          **model_options.load_kwargs())
    out.print(f"front end written to {out_path} ({estimator}, d={latent}); training cost "
              f"{stats['training_queries']} target queries ({stats['queries_per_example_step']} per example per "
              f"step); certify it with: robustaudit certify --model {target} --denoiser {out_path} --sigma {sigma:g} "
              "...", highlight=False)


def safety(
    model: Annotated[str, typer.Option(help="any model evaluate accepts, or an http(s) URL (scores needed)")],
    data: Annotated[Path, typer.Option(help=".npz with x and y (or what evaluate's --data takes)")],
    lipschitz: Annotated[str, typer.Option(help="L2 Lipschitz constant of the model's scores, or 'estimate' (a "
                                                "local PyTorch model: product of the layers' spectral norms)")],
    eps: Annotated[str, typer.Option(help="the region to certify, in --norm units (pixels at l0)")],
    out_dir: OutOpt,
    model_options: ModelOptions,
    data_options: DataOptions,
    norm: Annotated[str, typer.Option(help="l0 (pixels), l2 or linf")] = "l0",
    results: Annotated[Path | None, typer.Option(help="an evaluate run (its folder) on the same data and threat, "
                                                      "shown beside the certificates")] = None,
    bounds: BoundsOpt = "0,1",
    batch_size: Annotated[int, typer.Option(help="examples per model call")] = 256,
) -> None:
    """The Lipschitz safety guarantee (Wicker, Huang & Kwiatkowska 2018): per example the certified-safe region
    from the score margin and the Lipschitz constant, certified accuracy at --eps, beside an evaluate run's
    attacks."""
    from robustaudit.commands import safety as run_safety

    r = run_safety(model, data, lipschitz=lipschitz, norm=norm, eps=eps, bounds=parse_bounds(bounds),
                   batch_size=batch_size, results=results, out=out_dir, data_options=data_options,
                   **model_options.load_kwargs())
    lo, hi = r["certified_accuracy_ci95"]
    out.print(f"Lipschitz constant {r['lipschitz']:.4g} ({r['lipschitz_source']})", highlight=False)
    out.print(f"certified accuracy at {norm} {r['threat']['eps']:g}: {r['certified_accuracy']:.3f} (95% CI "
              f"{lo:.3f}-{hi:.3f}); median safe region {r['median_safe']:.4g} {r['safe_unit']}", highlight=False)
    b = r.get("beside")
    if b is not None:
        out.print(f"robust accuracy under attack: {b['robust_accuracy']:.3f}; the true figure lies between",
                  highlight=False)
        if b["broken_but_certified"]:
            err.print(f"[bold red]error:[/] {len(b['broken_but_certified'])} certified examples were broken by an "
                      "attack: the Lipschitz constant is too small", highlight=False)
            raise typer.Exit(code=1)
    out.print(f"results written to {out_dir}/ (safety.json, summary.md, report.html)", highlight=False)
