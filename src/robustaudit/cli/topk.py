"""`robustaudit topk`: ordered top-K targeted attacks (QuadAttack, CW^K, AD) on a white-box PyTorch model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from robustaudit.cli.common import BoundsOpt, ModelOptions, OutOpt, QuietOpt, ints, out, parse_bounds, show_progress


def topk(
    model: Annotated[str, typer.Option(help="a white-box PyTorch model (.pt, .pt2, module:callable) ending in a "
                                            "linear layer")],
    data: Annotated[Path, typer.Option(help=".npz with x (float32 in the bounds) and y (int labels)")],
    out_dir: OutOpt,
    model_options: ModelOptions,
    k: Annotated[str, typer.Option(help="comma-separated K values (those above classes - 1 are skipped)")]
    = "1,5,10,20",
    attacks: Annotated[str, typer.Option(help="comma-separated: quad, cwk, ad")] = "quad,cwk,ad",
    topk_targets: Annotated[Path | None, typer.Option(help="ordered target lists, one row per example (.npy, "
                                                           ".npz 'targets', .csv); default: random, seeded")] = None,
    budget: Annotated[str, typer.Option(help="binary-search steps x iterations, e.g. 1x60 or 9x30")] = "1x60",
    lr: Annotated[float, typer.Option(help="AdamW learning rate on the perturbation")] = 0.01,
    layer: Annotated[str | None, typer.Option(help="name of the final nn.Linear (default: the last one)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the targets and the initial noise")] = 0,
    batch_size: Annotated[int, typer.Option(help="examples per batch")] = 64,
    bounds: BoundsOpt = "0,1",
    quiet: QuietOpt = False,
) -> None:
    """Force the model's K highest classes into a chosen order (minimum-norm, no eps-ball); report success rate,
    perturbation norms and cost per attack and K."""
    from robustaudit.commands import topk as run_topk
    from robustaudit.errors import InputError

    steps = ints(budget.lower(), "--budget", "x")
    if len(steps) != 2:
        raise InputError(f"--budget must be STEPSxITERATIONS, e.g. 1x60, got {budget!r}")
    r = run_topk(model, data, k=ints(k, "--k"), attacks=attacks.split(","), targets=topk_targets,
                 search_steps=steps[0], steps=steps[1], lr=lr, layer=layer, seed=seed, batch_size=batch_size,
                 bounds=parse_bounds(bounds), out=out_dir, progress=show_progress(quiet),
                 **model_options.load_kwargs())
    table = Table(title=f"ordered top-K attacks, {r['n']} examples, {r['classes']} classes, budget {budget}")
    for col in ("attack", "K", "success", "95% CI", "mean L2", "mean Linf", "s/example"):
        table.add_column(col, justify="left" if col == "attack" else "right")
    for row in r["results"]:
        lo95, hi95 = row["success_rate_ci95"]
        table.add_row(row["attack"], str(row["k"]), f"{row['success_rate']:.3f}", f"{lo95:.3f}-{hi95:.3f}",
                      "-" if row["mean_l2"] is None else f"{row['mean_l2']:.3f}",
                      "-" if row["mean_linf"] is None else f"{row['mean_linf']:.3f}",
                      f"{row['seconds_per_example']:.3f}")
    out.print(table)
    out.print(f"results written to {out_dir}/ (report.html, topk.json, summary.md)", highlight=False)
