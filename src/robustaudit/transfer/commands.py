"""`robustaudit transfer` and `robustaudit online`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from robustaudit.console import fail, out, parse_bounds
from robustaudit.errors import InputError
from robustaudit.models.base import GradModel
from robustaudit.stats import clopper_pearson
from robustaudit.threat import ThreatModel
from robustaudit.types import Access, Norm


def _threat(norm: str, eps: float, bounds: str) -> ThreatModel:
    return ThreatModel(norm=Norm.parse(norm), eps=eps, bounds=parse_bounds(bounds))


def _surrogate(spec: str, device: str | None) -> GradModel:
    from robustaudit.models.load import load_model

    m = load_model(spec, device=device)
    if Access(m.access) < Access.GRADIENTS:
        raise InputError(f"surrogate {spec} must be a local white-box model (PyTorch); it offers "
                         f"{Access(m.access).name.lower()} only")
    return cast(GradModel, m)


TargetOpt = Annotated[str, typer.Option(help="the audited model: any model evaluate accepts, or an http(s) URL "
                                             "(label access suffices)")]
DataOpt = Annotated[Path, typer.Option(help=".npz with x (float32) and y (int labels)")]
NormOpt = Annotated[str, typer.Option(help="linf or l2")]
BoundsOpt = Annotated[str, typer.Option(help="valid input range LOW,HIGH")]
DeviceOpt = Annotated[str | None, typer.Option(help="torch device for the surrogates")]


def transfer(
    target: TargetOpt,
    surrogates: Annotated[list[str], typer.Option(help="white-box surrogate models: --surrogates M1 M2 ... (or "
                                                       "repeat the option)")],
    eps: Annotated[float, typer.Option(help="perturbation budget in input units")],
    data: DataOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")],
    attacks: Annotated[str, typer.Option(help="comma-separated: mi, di, ti, their combinations (mi-di-ti), "
                                              "ifgsm, fgsm")] = "mi,di,ti,mi-di-ti",
    norm: NormOpt = "linf",
    ensemble: Annotated[bool, typer.Option(help="also attack with the ensemble of all surrogates")] = True,
    bounds: BoundsOpt = "0,1",
    seed: Annotated[int, typer.Option(help="seed of every random draw")] = 0,
    batch_size: Annotated[int, typer.Option(help="examples per batch")] = 128,
    device: DeviceOpt = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Transfer audit: craft attacks on public surrogates, send each to TARGET once, report the worst case."""
    from robustaudit.models.load import load_model
    from robustaudit.report.transfer import write_transfer_report
    from robustaudit.run.data import load_npz
    from robustaudit.transfer.audit import transfer_audit

    try:
        threat = _threat(norm, eps, bounds)
        x, y = load_npz(data)
        names = [s for spec in surrogates for s in spec.split(",") if s]
        models = {f"{i}:{Path(s).stem}" if names.count(s) > 1 else Path(s).stem: _surrogate(s, device)
                  for i, s in enumerate(names)}
        if len(models) != len(names):
            raise InputError("two surrogates share a file name; give them distinct names")
        victim = load_model(target, access=Access.LABELS)
        record = transfer_audit(victim, models, attacks.split(","), x, y, threat, ensemble=ensemble, seed=seed,
                                batch_size=batch_size, progress=not quiet)
    except InputError as e:
        fail(str(e))
        return
    r = {"target": target, "surrogate_files": names, "attacks": attacks.split(","), "seed": seed,
         **record.to_json()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "transfer.json").write_text(json.dumps(r, indent=2))
    write_transfer_report(out_dir, r)
    table = Table(title=f"transfer audit: {norm} eps={eps:g}, {record.n} examples")
    for col in ("source", "attack", "target robust accuracy"):
        table.add_column(col, justify="right" if col.startswith("target") else "left")
    for p in record.ranked():
        table.add_row(p.source, p.attack, f"{p.robust_accuracy:.3f}")
    out.print(table)
    worst = int(record.worst_case.sum())
    lo, hi = clopper_pearson(worst, record.n)
    out.print(f"clean accuracy {float(record.clean.float().mean()):.3f}; random noise of the same norm "
              f"{record.noise.robust_accuracy:.3f}")
    out.print(f"worst case over all pairs {worst / record.n:.3f} (95% CI {lo:.3f}-{hi:.3f}); "
              f"{int(record.target_queries.sum())} target queries")
    out.print(f"results written to {out_dir}/ (report.html, transfer.json, summary.md)", highlight=False)


def online(
    target: TargetOpt,
    surrogate: Annotated[str, typer.Option(help="the attacker's white-box model (values and attacks)")],
    data: DataOpt,
    k: Annotated[int, typer.Option(help="the attacker may attack at most k examples of the stream")],
    eps: Annotated[float, typer.Option(help="perturbation budget in input units")],
    strategy: Annotated[str | None, typer.Option(help="virtual+ | virtual | optimistic | single-ref (default: "
                                                      "all)")] = None,
    permutations: Annotated[int, typer.Option(help="random stream orders to average over")] = 100,
    attack: Annotated[str, typer.Option(help="attack crafted on the surrogate: fgsm, ifgsm, mi, mi-di-ti, "
                                             "...")] = "fgsm",
    norm: NormOpt = "linf",
    bounds: BoundsOpt = "0,1",
    seed: Annotated[int, typer.Option(help="seed of the stream orders")] = 0,
    device: DeviceOpt = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="also write the results as JSON here")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Online transfer attack on a stream: each example is attacked or skipped at once, at most k in all;
    reports each strategy's successes against the k best in hindsight (competitive ratio)."""
    from robustaudit.models.load import load_model
    from robustaudit.run.data import load_npz
    from robustaudit.transfer.audit import online_audit

    try:
        threat = _threat(norm, eps, bounds)
        x, y = load_npz(data)
        record = online_audit(load_model(target, access=Access.LABELS), _surrogate(surrogate, device), x, y, threat,
                              k=k, attack=attack, strategies=None if strategy is None else [strategy],
                              permutations=permutations, seed=seed, progress=not quiet)
    except InputError as e:
        fail(str(e))
        return
    r = record.to_json()
    table = Table(title=f"online attack, k={k} of {len(x)}, {permutations} stream orders, {record.attack} on "
                        f"{Path(surrogate).name}")
    for col in ("strategy", "competitive ratio", "95% CI", "successes (mean)"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    best = r["offline_successes"]
    for name, s in r["strategies"].items():  # type: ignore[attr-defined]
        ci = "n/a" if s["ci95"] is None else f"{s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}"
        table.add_row(name, f"{s['competitive_ratio']:.3f}", ci, f"{s['competitive_ratio'] * best:.2f}")
    out.print(table)
    out.print(f"offline optimum (k best in hindsight): {best} successes; {r['fooling_examples']} of {len(x)} "
              f"attacked examples fool the target; {r['target_queries']} target queries")
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(r, indent=2))
