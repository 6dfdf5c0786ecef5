"""The certification report: summary.md and a self-contained report.html with the certified-accuracy curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robustaudit.report.html import png, provenance_markdown, provenance_rows, render


def summary_markdown(r: dict[str, Any]) -> str:
    lines = [f"# Randomized smoothing: sigma={r['sigma']:g}, n0={r['n0']}, n={r['n']}, alpha={r['alpha']:g}",
             "", f"{r['examples']} examples, {r['abstained']} abstained, {r['queries_total']} queries "
             f"({r['seconds_per_example']:.2f} s per example)", "",
             "| L2 radius | certified accuracy | 95% CI |", "|---|---|---|"]
    for radius, v in r["certified_accuracy"].items():
        lo, hi = v["ci95"]
        lines.append(f"| {radius} | {v['certified_accuracy']:.3f} | {lo:.3f}-{hi:.3f} |")
    if "training_queries" in r:
        lines += ["", f"The denoiser in front of the model was trained with {r['training_queries']} queries of it."]
    lines += provenance_markdown(r["provenance"], r.get("caveats", []), r.get("gate"))
    return "\n".join(lines) + "\n"


def _curve(r: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(r["curve"]["radius"], r["curve"]["certified_accuracy"])
    ax.set_xlabel("L2 radius")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    return png(fig)


def write_certify_report(out: str | Path, r: dict[str, Any]) -> Path:
    d = Path(out)
    (d / "summary.md").write_text(summary_markdown(r))
    return render(d, "certify.html.j2", r=r, curve=_curve(r), caveats=r.get("caveats", []),
                  provenance=provenance_rows(r["provenance"], r.get("gate")))
