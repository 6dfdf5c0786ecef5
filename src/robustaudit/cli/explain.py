"""`robustaudit explain`: parse the options, call `robustaudit.commands.explain`, show the ranking."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from robustaudit.cli.common import BoundsOpt, ModelOptions, OutOpt, QuietOpt, SeedOpt, out, parse_bounds, show_progress
from robustaudit.types import DataOptions


def explain(
    model: Annotated[str, typer.Option(help="any model evaluate accepts, or an http(s) URL (scores needed)")],
    data: Annotated[Path, typer.Option(help="the examples to explain: .npz with x (and y), an image folder or "
                                            "Parquet")],
    methods: Annotated[str, typer.Option(help="saliency,smoothgrad,gradxinput,ig (gradients) and occlusion,lime,"
                                              "kernelshap,clime (scores), comma-separated")],
    out_dir: OutOpt,
    model_options: ModelOptions,
    data_options: DataOptions,
    target: Annotated[str, typer.Option(help="the explained class: prediction (one query each), label, or a class "
                                             "index N")] = "prediction",
    seed: SeedOpt = 0,
    seeds: Annotated[int, typer.Option(help="repetitions (fresh explainer and evaluation samples) for the "
                                            "intervals")] = 3,
    neighbourhood: Annotated[str, typer.Option("--neighbourhood", "--neighborhood",
                                               help="where faithfulness is measured: gaussian:SIGMA, removal or "
                                                    "scaling")] = "gaussian:0.1",
    features: Annotated[str, typer.Option(help="pixels (tables: columns), patches:K or superpixels[:N]")] = "pixels",
    n_samples: Annotated[int, typer.Option(help="samples of lime, kernelshap and clime")] = 1000,
    sigma: Annotated[float, typer.Option(help="noise of smoothgrad and clime (absolute)")] = 0.1,
    baseline: Annotated[float, typer.Option(help="the value of a removed feature (occlusion, lime, kernelshap, ig, "
                                                 "removal)")] = 0.0,
    n_eval: Annotated[int, typer.Option(help="fresh neighbourhood samples per example and seed")] = 200,
    k: Annotated[int | None, typer.Option(help="features perturbed by PGI/PGU (default 20% of them)")] = None,
    budget: Annotated[int | None, typer.Option(help="hard total of queries per example, everything included")] = None,
    access: Annotated[str | None, typer.Option(help="gradients | scores (default: the most the model offers)")] = None,
    global_top: Annotated[int, typer.Option(help="tables: the probed features the surrogate uses (0: no global "
                                                 "analysis)")] = 15,
    surrogate: Annotated[str, typer.Option(help="tables: tree (depth 4) or logistic (L1)")] = "tree",
    bounds: BoundsOpt = "0,1",
    quiet: QuietOpt = False,
) -> None:
    """Explain what the model relies on with up to eight methods, measure which is most faithful on the
    neighbourhood you name (Han, Srinivas & Lakkaraju 2022), and for tables rank the features globally and fit a
    readable surrogate. Writes attributions.npz, explanations.json, summary.md and report.html to --out."""
    from robustaudit.commands import explain as run_explain

    doc = run_explain(model, data, methods=methods, target=target, seed=seed, seeds=seeds,
                      neighbourhood=neighbourhood, features=features, n_samples=n_samples, sigma=sigma,
                      baseline=baseline, n_eval=n_eval, k=k, budget=budget, access=access, global_top=global_top,
                      surrogate=surrogate, bounds=parse_bounds(bounds), out=out_dir, progress=show_progress(quiet),
                      data_options=data_options, **model_options.load_kwargs())
    f = doc["faithfulness"]
    table = Table(title=f"faithfulness on {doc['neighbourhood']}, {doc['n']} examples, {doc['seeds']} seeds")
    for col in ("method", "LFA loss", "PGI", "PGU"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m in sorted(f, key=lambda m: f[m]["lfa_loss"]["mean"]):
        table.add_row(m, f"{f[m]['lfa_loss']['mean']:.4g}", f"{f[m]['pgi']['mean']:.4g}", f"{f[m]['pgu']['mean']:.4g}")
    out.print(table)
    out.print(f"recommended: {doc['recommendation']}", highlight=False)
    g = doc.get("global")
    if g is not None:
        out.print(f"global: {g['kind']} surrogate on {', '.join(g['features'])}; fidelity {g['fidelity']:.3f} "
                  f"(95% CI {g['fidelity_ci95'][0]:.3f}-{g['fidelity_ci95'][1]:.3f})", highlight=False)
    out.print(f"{doc['queries_total']} queries; results written to {out_dir}/ (attributions.npz, explanations.json, "
              "summary.md, report.html)", highlight=False)
