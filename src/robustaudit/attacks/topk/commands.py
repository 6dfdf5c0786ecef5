"""`robustaudit topk`: ordered top-K targeted attacks (QuadAttack, CW^K, AD) on a white-box PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from robustaudit.console import fail, out, parse_bounds
from robustaudit.errors import InputError


def topk(
    model: Annotated[str, typer.Option(help="a white-box PyTorch model (.pt, .pt2, module:callable) ending in a "
                                            "linear layer")],
    data: Annotated[Path, typer.Option(help=".npz with x (float32 in the bounds) and y (int labels)")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder (topk.json)")],
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
    bounds: Annotated[str, typer.Option(help="valid input range LOW,HIGH")] = "0,1",
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Force the model's K highest classes into a chosen order (minimum-norm, no eps-ball); report success rate,
    perturbation norms and cost per attack and K."""
    from robustaudit.attacks.topk import TOPK_ATTACKS
    from robustaudit.models.load import load_model
    from robustaudit.models.torch import TorchModel
    from robustaudit.run.data import load_npz
    from robustaudit.run.topk import load_targets, topk_audit

    try:
        s, t = (int(v) for v in budget.lower().split("x"))
        ks = [int(v) for v in k.split(",")]
        unknown = [a for a in attacks.split(",") if a not in TOPK_ATTACKS]
        if unknown:
            raise InputError(f"unknown top-K attack {unknown[0]!r}: use {', '.join(TOPK_ATTACKS)}")
        chosen = [TOPK_ATTACKS[a](search_steps=s, steps=t, lr=lr) for a in attacks.split(",")]
        x, y = load_npz(data)
        m = load_model(model)
        if not isinstance(m, TorchModel):
            raise InputError("top-K attacks need a white-box PyTorch model (they split it at its last linear layer)")
        targets = None if topk_targets is None else load_targets(topk_targets, len(x))
        r = topk_audit(m.module, x.to(m.device), y.to(m.device), ks, chosen, targets=targets, layer=layer, seed=seed,
                       batch_size=batch_size, bounds=parse_bounds(bounds), progress=not quiet)
    except ValueError as e:
        fail(str(e))
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "topk.json").write_text(json.dumps({"model": model, "data": str(data), **r}, indent=2))
    table = Table(title=f"ordered top-K attacks, {r['n']} examples, {r['classes']} classes, budget {budget}")
    for col in ("attack", "K", "success", "95% CI", "mean L2", "mean Linf", "s/example"):
        table.add_column(col, justify="left" if col == "attack" else "right")
    for row in r["results"]:  # type: ignore[attr-defined]
        lo95, hi95 = row["success_rate_ci95"]
        table.add_row(row["attack"], str(row["k"]), f"{row['success_rate']:.3f}", f"{lo95:.3f}-{hi95:.3f}",
                      "-" if row["mean_l2"] is None else f"{row['mean_l2']:.3f}",
                      "-" if row["mean_linf"] is None else f"{row['mean_linf']:.3f}",
                      f"{row['seconds_per_example']:.3f}")
    out.print(table)
    out.print(f"results written to {out_dir}/topk.json", highlight=False)
