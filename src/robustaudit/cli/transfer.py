"""`robustaudit transfer` and `robustaudit online`."""

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
    NpzOpt,
    OutOpt,
    QuietOpt,
    names,
    out,
    parse_bounds,
    show_progress,
    verdict,
)
from robustaudit.gate import Gate
from robustaudit.tracking import Tracking

TargetOpt = Annotated[str, typer.Option(help="the audited model: any model evaluate accepts, or an http(s) URL "
                                             "(label access suffices)")]


def transfer(
    target: TargetOpt,
    surrogates: Annotated[list[str], typer.Option(help="white-box surrogate models: --surrogates M1 M2 ... (or "
                                                       "repeat the option)")],
    eps: EpsOpt,
    data: NpzOpt,
    out_dir: OutOpt,
    model_options: ModelOptions,
    gate: Gate | None,
    track: Tracking,
    attacks: Annotated[str, typer.Option(help="comma-separated: mi, di, ti, their combinations (mi-di-ti), "
                                              "ifgsm, fgsm")] = "mi,di,ti,mi-di-ti",
    norm: NormOpt = "linf",
    ensemble: Annotated[bool, typer.Option(help="also attack with the ensemble of all surrogates")] = True,
    bounds: BoundsOpt = "0,1",
    seed: Annotated[int, typer.Option(help="seed of every random draw")] = 0,
    batch_size: Annotated[int, typer.Option(help="examples per batch")] = 128,
    quiet: QuietOpt = False,
) -> None:
    """Transfer audit: craft attacks on public surrogates, send each to TARGET once, report the worst case."""
    from robustaudit.commands import transfer as run_transfer

    r = run_transfer(target, names(surrogates), data, eps=eps, attacks=attacks.split(","), norm=norm, ensemble=ensemble,
                     bounds=parse_bounds(bounds), seed=seed, batch_size=batch_size, out=out_dir,
                     progress=show_progress(quiet), gate=gate, **model_options.load_kwargs())
    table = Table(title=f"transfer audit: {norm} eps={r['threat']['eps']:g}, {r['n']} examples")
    for col in ("source", "attack", "target robust accuracy"):
        table.add_column(col, justify="right" if col.startswith("target") else "left")
    for p in r["pairs"]:
        table.add_row(p["source"], p["attack"], f"{p['robust_accuracy']:.3f}")
    out.print(table)
    lo, hi = r["worst_case_robust_accuracy_ci95"]
    out.print(f"clean accuracy {r['clean_accuracy']:.3f}; random noise of the same norm "
              f"{r['noise']['robust_accuracy']:.3f}")
    out.print(f"worst case over all pairs {r['worst_case_robust_accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}); "
              f"{r['target_queries']['total']} target queries")
    out.print(f"results written to {out_dir}/ (report.html, transfer.json, summary.md)", highlight=False)
    track.log("transfer", out_dir, {k: v for k, v in r.items() if k not in ("examples", "matrix")})
    verdict(r.get("gate"))


def online(
    target: TargetOpt,
    surrogate: Annotated[str, typer.Option(help="the attacker's white-box model (values and attacks)")],
    data: NpzOpt,
    k: Annotated[int, typer.Option(help="the attacker may attack at most k examples of the stream")],
    eps: EpsOpt,
    model_options: ModelOptions,
    strategy: Annotated[str | None, typer.Option(help="virtual+ | virtual | optimistic | single-ref (default: "
                                                      "all)")] = None,
    permutations: Annotated[int, typer.Option(help="random stream orders to average over")] = 100,
    attack: Annotated[str, typer.Option(help="attack crafted on the surrogate: fgsm, ifgsm, mi, mi-di-ti, "
                                             "...")] = "fgsm",
    norm: NormOpt = "linf",
    bounds: BoundsOpt = "0,1",
    seed: Annotated[int, typer.Option(help="seed of the stream orders")] = 0,
    out_dir: Annotated[Path | None, typer.Option("--out", help="output folder (online.json, summary.md, "
                                                              "report.html)")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Online transfer attack on a stream: each example is attacked or skipped at once, at most k in all;
    reports each strategy's successes against the k best in hindsight (competitive ratio)."""
    from robustaudit.commands import online as run_online

    r = run_online(target, surrogate, data, k=k, eps=eps, strategy=strategy, permutations=permutations, attack=attack,
                   norm=norm, bounds=parse_bounds(bounds), seed=seed, out=out_dir, progress=show_progress(quiet),
                   **model_options.load_kwargs())
    table = Table(title=f"online attack, k={k} of {r['n']}, {permutations} stream orders, {r['attack']} on "
                        f"{Path(surrogate).name}")
    for col in ("strategy", "competitive ratio", "95% CI", "successes (mean)"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    best = r["offline_successes"]
    for name, s in r["strategies"].items():
        ci = "n/a" if s["ci95"] is None else f"{s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}"
        table.add_row(name, f"{s['competitive_ratio']:.3f}", ci, f"{s['competitive_ratio'] * best:.2f}")
    out.print(table)
    out.print(f"offline optimum (k best in hindsight): {best} successes; {r['fooling_examples']} of {r['n']} "
              f"attacked examples fool the target; {r['target_queries']} target queries")
    if out_dir is not None:
        out.print(f"results written to {out_dir}/ (report.html, online.json, summary.md)", highlight=False)
