"""`robustaudit curve`, `report` and `compare`: sweeps and reads of evaluation runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from robustaudit.cli.common import BoundsOpt, ModelOptions, NormOpt, OutOpt, SeedOpt, out, parse_bounds
from robustaudit.errors import InputError
from robustaudit.types import DataOptions, parse_numbers


def curve(
    model: Annotated[str, typer.Option(help="any model --model accepts in evaluate")],
    data: Annotated[Path, typer.Option(help="any data --data accepts in evaluate (read whole)")],
    eps: Annotated[str, typer.Option(help="comma-separated radii, numbers or fractions, e.g. 2/255,4/255,0.05")],
    out_dir: OutOpt,
    model_options: ModelOptions,
    data_options: DataOptions,
    norm: NormOpt = "linf",
    attacks: Annotated[str, typer.Option(help="preset or NAME[,NAME...]")] = "fast",
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option(help="examples per batch")] = 256,
    bounds: BoundsOpt = "0,1",
) -> None:
    """Robust accuracy versus eps in one run (each eps attacks only the examples still robust at the smaller eps),
    with exact 95% intervals, written to curve.json and plotted in curve.png."""
    from robustaudit.commands import curve as run_curve

    r = run_curve(model, data, eps=parse_numbers(eps, "--eps"), norm=norm, attacks=attacks, seed=seed,
                  batch_size=batch_size, bounds=parse_bounds(bounds), out=out_dir, data_options=data_options,
                  **model_options.load_kwargs())
    table = Table(title=f"robust accuracy vs eps ({norm}, {r['n']} examples)")
    for col in ("eps", "robust accuracy", "95% CI", "attacked"):
        table.add_column(col, justify="right")
    for row in r["curve"]:
        lo, hi = row["robust_accuracy_ci95"]
        table.add_row(f"{row['eps']:g}", f"{row['robust_accuracy']:.3f}", f"{lo:.3f}-{hi:.3f}", str(row["attacked"]))
    out.print(table)
    out.print(f"written to {out_dir}/ (curve.json, curve.png)", highlight=False)


def report(run: Annotated[Path, typer.Argument(help="output folder of an evaluate run")]) -> None:
    """Regenerate DIR/report.html from the run's files (results.json, gallery.npz, curve.json)."""
    from robustaudit.report.html import write_report

    out.print(f"written {write_report(run)}", highlight=False)


def compare(
    run_a: Annotated[Path, typer.Argument(help="output folder of the first run (holding results.json)")],
    run_b: Annotated[Path, typer.Argument(help="output folder of the second run, on the same examples")],
    json_out: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
) -> None:
    """Compare two runs on the same examples (two models, or two attack sets): the difference in robust accuracy
    with its exact 95% interval, and McNemar's exact test on the paired per-example outcomes."""
    from robustaudit.stats import compare_runs

    result = compare_runs(_read_results(run_a), _read_results(run_b), f"{run_a}", f"{run_b}")
    if json_out:
        out.print_json(data=result)
        return
    for side, run in (("a", run_a), ("b", run_b)):
        lo, hi = result[f"robust_accuracy_{side}_ci95"]
        out.print(f"{side.upper()} {run}: robust accuracy {result[f'robust_accuracy_{side}']:.3f} (95% CI "
                  f"{lo:.3f}-{hi:.3f})", highlight=False)
    only_a, only_b = result["robust_only_in_a"], result["robust_only_in_b"]
    lo, hi = result["difference_ci95"]
    out.print(f"A - B = {result['difference']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}, paired, from the {only_a} "
              f"examples robust only in A and the {only_b} only in B out of {result['n']})", highlight=False)
    out.print(f"McNemar exact test: p = {result['mcnemar_exact_p']:.4g} ({only_a} robust only in A, {only_b} only "
              "in B)", highlight=False)


def _read_results(run: Path) -> dict[str, Any]:
    path = run / "results.json" if run.is_dir() else run
    if not path.is_file():
        raise InputError(f"{path} does not exist: give the --out folder of a finished evaluate run")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
            raise ValueError("no list of examples")
        if not all(isinstance(e, dict) and isinstance(e.get("label"), int) and isinstance(e.get("robust"), bool)
                   for e in data["examples"]):
            raise ValueError("an example lacks its label or robust outcome")
        return data
    except ValueError as e:
        raise InputError(f"{path} is not a robustaudit results.json ({e})") from None
