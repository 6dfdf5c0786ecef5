"""`robustaudit certify` and `robustaudit robustify`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.table import Table

from robustaudit.console import fail, out, parse_bounds
from robustaudit.errors import InputError


def _sidecar(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".json")


def certify(
    model: Annotated[str, typer.Option(help="any model evaluate accepts, or an http(s) URL (top-1 labels suffice)")],
    sigma: Annotated[float, typer.Option(help="standard deviation of the Gaussian noise")],
    data: Annotated[Path, typer.Option(help=".npz with x (float32) and y (int labels)")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")],
    n0: Annotated[int, typer.Option(help="noise samples to select the class")] = 100,
    n: Annotated[int, typer.Option(help="noise samples to estimate its probability")] = 10_000,
    alpha: Annotated[float, typer.Option(help="failure probability of each certificate")] = 0.001,
    denoiser: Annotated[Path | None, typer.Option(help="front end from 'robustaudit robustify', put in front of "
                                                       "the model")] = None,
    skip: Annotated[int, typer.Option(help="certify every SKIP-th example")] = 1,
    batch_size: Annotated[int, typer.Option(help="noisy samples per model call")] = 400,
    seed: Annotated[int, typer.Option(help="seed of the noise")] = 0,
    bounds: Annotated[str, typer.Option(help="valid input range LOW,HIGH")] = "0,1",
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Randomized smoothing (Cohen et al. 2019): per example the smoothed prediction (or abstain) and its
    certified L2 radius; certified accuracy at radii 0-1 and the curve (report.html)."""
    from robustaudit.certify.denoise import Composed
    from robustaudit.certify.run import RADII, certify_dataset
    from robustaudit.models.load import load_model
    from robustaudit.report.certify import write_certify_report
    from robustaudit.run.data import load_npz
    from robustaudit.types import Access

    try:
        if skip < 1:
            raise InputError(f"--skip must be >= 1, got {skip}")
        x, y = load_npz(data)
        x, y = x[::skip], y[::skip]
        target = load_model(model, access=Access.LABELS)
        extra: dict[str, object] = {"model": model}
        if denoiser is not None:
            front = load_model(str(denoiser))
            target = Composed(front.module, target)  # type: ignore[attr-defined]
            extra["denoiser"] = str(denoiser)
            if _sidecar(denoiser).is_file():
                extra.update({k: v for k, v in json.loads(_sidecar(denoiser).read_text()).items()
                              if k in ("training_queries", "estimator", "q", "latent")})
        rec = certify_dataset(target, x, y, sigma=sigma, n0=n0, n=n, alpha=alpha, batch_size=batch_size, seed=seed,
                              bounds=parse_bounds(bounds), progress=not quiet)
    except ValueError as e:
        fail(str(e))
        return
    rec.extra.update(extra)
    r = rec.to_json()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "certify.json").write_text(json.dumps(r, indent=2))
    write_certify_report(out_dir, r)
    table = Table(title=f"randomized smoothing, sigma={sigma:g}, n={n}, alpha={alpha:g}, {len(y)} examples")
    table.add_column("L2 radius")
    table.add_column("certified accuracy", justify="right")
    for radius in RADII:
        table.add_row(f"{radius:g}", f"{rec.certified_accuracy(radius):.3f}")
    out.print(table)
    out.print(f"{r['abstained']} abstained; {r['queries_total']} queries; results written to {out_dir}/ "
              "(report.html, certify.json, summary.md)", highlight=False)


def robustify(
    target: Annotated[str, typer.Option(help="the black-box model: any model evaluate accepts, or an http(s) URL "
                                             "(scores needed; gradients for --estimator fo)")],
    sigma: Annotated[float, typer.Option(help="noise level the front end is trained for")],
    data: Annotated[Path, typer.Option(help=".npz with training images x (labels are not needed)")],
    out_path: Annotated[Path, typer.Option("--out", help="front end (TorchScript .pt) to give to certify "
                                                         "--denoiser")],
    estimator: Annotated[str, typer.Option(help="rge | cge (central, 2d queries) | cge-forward (d + 1) | fo "
                                                "(first-order reference, white-box target)")] = "cge",
    q: Annotated[int, typer.Option(help="RGE: random directions per estimate")] = 192,
    latent: Annotated[int, typer.Option(help="autoencoder code size d")] = 64,
    epochs: Annotated[int, typer.Option(help="zeroth-order training epochs")] = 10,
    pretrain_epochs: Annotated[int, typer.Option(help="white-box autoencoder (and denoiser) epochs")] = 20,
    pretrain_denoiser: Annotated[bool, typer.Option(help="pretrain the denoiser on MSE first")] = True,
    batch_size: Annotated[int, typer.Option(help="training examples per step")] = 64,
    seed: Annotated[int, typer.Option(help="seed")] = 0,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """ZO-AE-DS (Zhang et al. 2022): train a denoiser + autoencoder in front of a model reachable only by
    queries, with zeroth-order gradients in the code space; every target query is counted."""
    from robustaudit.certify.denoise import ZOAEDS
    from robustaudit.models.load import load_model
    from robustaudit.run.data import load_npz

    try:
        if out_path.suffix != ".pt":
            raise InputError(f"--out must end in .pt (TorchScript), got {out_path}")
        x, _ = load_npz(data)
        settings = ZOAEDS(sigma=sigma, estimator=estimator, q=q, latent=latent, epochs=epochs,
                          pretrain_epochs=pretrain_epochs, pretrain_denoiser=pretrain_denoiser, batch_size=batch_size,
                          seed=seed)
        front, stats = settings.train(load_model(target), x, progress=not quiet)
    except ValueError as e:
        fail(str(e))
        return
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.trace(front, x[:2]), str(out_path))
    _sidecar(out_path).write_text(json.dumps({"target": target, **stats}, indent=2))
    out.print(f"front end written to {out_path} ({estimator}, d={latent}); training cost "
              f"{stats['training_queries']} target queries ({settings.queries_per_example_step()} per example per "
              f"step); certify it with: robustaudit certify --model {target} --denoiser {out_path} --sigma {sigma:g} "
              "...", highlight=False)
