"""`robustaudit harden`: parse the options, call `robustaudit.commands.harden`, show both audits side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from robustaudit.cli.common import (
    BoundsOpt,
    EpsOpt,
    ModelOptions,
    NormOpt,
    OutOpt,
    QuietOpt,
    SeedOpt,
    names,
    out,
    parse_bounds,
    show_progress,
)
from robustaudit.types import DataOptions


def harden(
    method: Annotated[str, typer.Option(help="pgd-at | trades (white box) | pubdef (transfer from public models) | "
                                             "convex (two-layer ReLU network for tables)")],
    data: Annotated[Path, typer.Option(help="training data: .npz with x and y, an image folder or Parquet")],
    eps: EpsOpt,
    out_dir: OutOpt,
    model_options: ModelOptions,
    data_options: DataOptions,
    recipe: Annotated[str | None, typer.Option(help="the model to train: FILE.py:FUNCTION (or module:FUNCTION) "
                                                    "returning an untrained or pretrained nn.Module (not for "
                                                    "convex)")] = None,
    test: Annotated[Path | None, typer.Option(help="held-out data for the audits (default: 20% of --data, held "
                                                   "out)")] = None,
    norm: NormOpt = "linf",
    bounds: BoundsOpt = "0,1",
    epochs: Annotated[int, typer.Option(help="training epochs")] = 10,
    lr: Annotated[float, typer.Option(help="learning rate")] = 1e-3,
    optimizer: Annotated[str, typer.Option(help="adam or sgd (momentum 0.9, weight decay 5e-4)")] = "adam",
    batch_size: Annotated[int, typer.Option(help="training batch")] = 64,
    steps: Annotated[int, typer.Option(help="PGD steps of the inner maximisation (pgd-at, trades)")] = 7,
    beta: Annotated[float, typer.Option(help="TRADES' weight of the KL term")] = 6.0,
    sources: Annotated[list[str] | None, typer.Option(help="pubdef: public source models, --sources M1 M2 ... "
                                                           "(white box)")] = None,
    attackers: Annotated[list[str] | None, typer.Option(help="pubdef: the audit's attacker models, held out from "
                                                             "--sources (default: the sources)")] = None,
    pick: Annotated[int, typer.Option(help="pubdef: training sources chosen from --sources by the game")] = 4,
    copies: Annotated[int, typer.Option(help="pubdef: fixed PGD copies of the training set per source")] = 1,
    baseline: Annotated[str | None, typer.Option(help="the unhardened model to compare with (default: the recipe "
                                                      "trained normally; convex: the standard convex program)")] = None,
    audit: Annotated[str, typer.Option(help="the evaluate preset or attacks of the audits (pgd-at, trades, "
                                            "convex)")] = "fast",
    audit_n: Annotated[int | None, typer.Option(help="audit at most this many held-out examples")] = None,
    transfer_attacks: Annotated[str, typer.Option(help="pubdef: the transfer audit's attacks")] = "ifgsm,mi,di",
    patterns: Annotated[int, typer.Option(help="convex: sampled Gaussian gates")] = 8,
    warm: Annotated[int, typer.Option(help="convex: width of the warm-start network (Adam on the same objective) "
                                            "whose patterns join the standard program's (0: none)")] = 64,
    reg: Annotated[float, typer.Option(help="convex: weight decay β of the network (group lasso in the "
                                            "program)")] = 1e-3,
    solver: Annotated[str, typer.Option(help="convex: clarabel (interior point) or scs (first order)")] = "clarabel",
    rounds: Annotated[int, typer.Option(help="convex: rounds of pattern search on the program's dual (each adds "
                                              "up to 16 patterns and one solve)")] = 0,
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Harden a model (adversarial training, TRADES, PubDef or convex training) and audit the result against the
    unhardened model with robustaudit's own commands. Writes model.pt2, the training logs, audit/, harden.json,
    summary.md and report.html to --out; rerun the same command to resume an interrupted run."""
    from robustaudit.commands import harden as run_harden

    doc = run_harden(method, data, out=out_dir, recipe=recipe, test=test, eps=eps, norm=norm,
                     bounds=parse_bounds(bounds), epochs=epochs, lr=lr, optimizer=optimizer, batch_size=batch_size,
                     steps=steps, beta=beta, sources=names(sources), attackers=names(attackers), pick=pick,
                     copies=copies, baseline=baseline, audit=audit, audit_n=audit_n,
                     transfer_attacks=[a for a in transfer_attacks.split(",") if a], patterns=patterns, warm=warm,
                     reg=reg, solver=solver, rounds=rounds, seed=seed, progress=show_progress(quiet),
                     data_options=data_options,
                     **model_options.load_kwargs())
    table = Table(title=f"harden --method {method}: {norm} eps={doc['threat']['eps']:g}, {doc['n_test']} held-out "
                        "examples")
    for col in ("model", "clean accuracy", "robust accuracy", "95% CI", "audit"):
        table.add_column(col, justify="left" if col in ("model", "audit") else "right")
    for tag, r in doc["audit"].items():
        lo, hi = r["robust_accuracy_ci95"]
        table.add_row(tag, f"{r['clean_accuracy']:.3f}", f"{r['robust_accuracy']:.3f}", f"{lo:.3f}-{hi:.3f}",
                      r["command"])
    out.print(table)
    out.print(f"robust accuracy {doc['robust_gain']:+.3f}, clean accuracy {-doc['clean_drop']:+.3f}; results written "
              f"to {out_dir}/ (model.pt2, harden.json, summary.md, report.html)", highlight=False)

