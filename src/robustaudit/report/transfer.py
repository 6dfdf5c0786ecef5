"""The transfer audit's report: summary.md and a self-contained report.html with the transfer heat maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robustaudit.report.html import png, provenance_markdown, provenance_rows, render


def summary_markdown(r: dict[str, Any]) -> str:
    t = r["threat"]
    lo, hi = r["worst_case_robust_accuracy_ci95"]
    lines = [f"# Transfer audit: {t['norm']} eps={t['eps']:g}, {r['n']} examples",
             "", f"- clean accuracy of the target: {r['clean_accuracy']:.3f}",
             f"- **worst case over all (source, attack) pairs: {r['worst_case_robust_accuracy']:.3f}** "
             f"(95% CI {lo:.3f}-{hi:.3f})",
             f"- random noise of the same norm: {r['noise']['robust_accuracy']:.3f}",
             f"- target queries: {r['target_queries']['total']} (at most {r['target_queries']['max_per_example']} "
             "per example: one clean check and one per pair and the noise baseline)",
             "", "| source | attack | target robust accuracy | 95% CI | surrogate s | target s |",
             "|---|---|---|---|---|---|"]
    for p in r["pairs"]:
        a, b = p["robust_accuracy_ci95"]
        lines.append(f"| {p['source']} | {p['attack']} | {p['robust_accuracy']:.3f} | {a:.3f}-{b:.3f} | "
                     f"{p['surrogate_seconds']:.1f} | {p['target_seconds']:.1f} |")
    m = r["matrix"]
    lines += ["", "Transfer among the surrogates (robust accuracy of the column model on inputs crafted on the row "
              "model, worst case over the attacks):", "",
              "| crafted on \\ attacked | " + " | ".join(m["victims"]) + " |",
              "|---|" + "---|" * len(m["victims"])]
    for name, row in zip(m["sources"], m["robust_accuracy"], strict=True):
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    if "whitebox_robust_accuracy" in r:
        lines += ["", f"White-box robust accuracy of the target ({r['whitebox_attack']}): "
                  f"{r['whitebox_robust_accuracy']:.3f}"]
    lines += provenance_markdown(r["provenance"], r.get("caveats", []), r.get("gate"))
    return "\n".join(lines) + "\n"


def _heatmaps(r: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plots = []
    sources = sorted({p["source"] for p in r["pairs"]}, key=[p["source"] for p in r["pairs"]].index)
    attacks = sorted({p["attack"] for p in r["pairs"]}, key=[p["attack"] for p in r["pairs"]].index)
    grid = np.full((len(sources), len(attacks)), np.nan)
    for p in r["pairs"]:
        grid[sources.index(p["source"]), attacks.index(p["attack"])] = p["robust_accuracy"]
    m = r["matrix"]
    for title, values, rows, cols in [("Target robust accuracy per (source, attack)", grid, sources, attacks),
                                      ("Surrogates attacking each other (row: crafted on, column: attacked)",
                                       np.asarray(m["robust_accuracy"]), m["sources"], m["victims"])]:
        fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(cols), 1.0 + 0.5 * len(rows)))
        im = ax.imshow(values, vmin=0, vmax=1, cmap="RdYlGn")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
        fig.colorbar(im, ax=ax, label="robust accuracy")
        plots.append((title, png(fig)))
    return plots


def write_transfer_report(out: str | Path, r: dict[str, Any]) -> Path:
    """Write summary.md and report.html for a transfer record's JSON into `out`."""
    d = Path(out)
    (d / "summary.md").write_text(summary_markdown(r))
    return render(d, "transfer.html.j2", r=r, plots=_heatmaps(r), caveats=r.get("caveats", []),
                  provenance=provenance_rows(r["provenance"], r.get("gate")))
