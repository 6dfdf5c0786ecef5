"""Atomic writes of an evaluation's files: a crash never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from robustaudit.report.html import evaluate_caveats, evaluate_provenance, provenance_markdown, write_report
from robustaudit.results import EvalRecord


def write_run(record: EvalRecord, out: str | Path, gallery: tuple[list[int], torch.Tensor] | None = None) -> Path:
    """Write results.json, adversarial.npz, summary.md and report.html into `out` (created if needed); minnorm.json
    when a minimum-norm attack ran (per attack, the median smallest perturbation found within each query budget)
    and curves.json (per attack, that median and each example's own curve: its smallest perturbation within each
    budget, null before the first);
    gallery.npz with the clean and adversarial images of `gallery` = (example indices, clean inputs)."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    names = ["adversarial.npz", "summary.md", "results.json"]
    if gallery is not None and gallery[1].dim() == 4 and len(gallery[0]):
        idx, clean = gallery
        with open(d / "gallery.npz.tmp", "wb") as f:
            np.savez_compressed(f, index=np.array(idx), clean=clean.numpy(), adv=record.x_adv[idx].numpy())
        names.insert(0, "gallery.npz")
    else:
        (d / "gallery.npz").unlink(missing_ok=True)
    curves = {a.name: a.to_json()["norm_curve"] for a in record.attacks if a.norm_curve}
    per_example = {a: {"median": c, "examples": {str(e.index): e.extra["curves"][a] for e in record.examples
                                                 if a in e.extra.get("curves", {})}} for a, c in curves.items()}
    for name, content in (("minnorm.json", curves), ("curves.json", per_example)):
        if curves:
            (d / f"{name}.tmp").write_text(json.dumps(content, indent=2))
            names.insert(0, name)
        else:
            (d / name).unlink(missing_ok=True)  # a stale one from an earlier run into this folder
    tmp = d / "results.json.tmp"
    tmp.write_text(json.dumps(record.to_json(), indent=2))
    with open(d / "adversarial.npz.tmp", "wb") as f:
        np.savez_compressed(f, x_adv=record.x_adv.numpy())
    (d / "summary.md.tmp").write_text(summary_markdown(record))
    for name in names:
        os.replace(d / f"{name}.tmp", d / name)
    write_report(d)
    return d


def summary_markdown(record: EvalRecord) -> str:
    """A one-page summary a person can read."""
    t = record.threat
    lo, hi = record.robust_accuracy_ci95
    lines = [
        f"# Robustness audit of {record.model}",
        "",
        f"Threat model: {t['norm']} eps={t['eps']:g}, inputs in [{t['bounds'][0]:g}, {t['bounds'][1]:g}]"
        + (", targeted" if t["targeted"] else ""),
        "",
        f"- examples: {record.n}",
        f"- clean accuracy: {record.clean_accuracy:.3f}",
        f"- robust accuracy: {record.robust_accuracy:.3f} (95% CI {lo:.3f}-{hi:.3f}, exact binomial)"
        + ("" if record.naive_robust_accuracy is None else
           f"; the naive cascade alone reported {record.naive_robust_accuracy:.3f}"),
        f"- wall time: {record.seconds:.1f} s, seed {record.seed}",
        *([] if record.gate is None else [f"- {record.gate['line']}"]),
        "",
        "| attack | attacked | broken | seconds | gradients | forward passes |",
        "|---|---|---|---|---|---|",
    ]
    for a in record.attacks:
        lines.append(f"| {a.name} | {a.attacked} | {a.broken} | {a.seconds:.1f} | {a.gradients} | {a.forwards} |")
    curves = [a for a in record.attacks if a.norm_curve]
    if curves:
        budgets = sorted({int(b) for a in curves for b in a.norm_curve})
        lines += ["", f"Median smallest {t['norm']} perturbation found within each query budget (inf: not yet "
                      "broken):", "", "| attack | " + " | ".join(str(b) for b in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
        for a in curves:
            lines.append(f"| {a.name} | " + " | ".join(f"{a.norm_curve.get(str(b), float('nan')):.4g}"
                                                       for b in budgets) + " |")
    notes = [n for a in record.attacks for n in a.notes]
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    if record.adaptations:
        lines += ["", "Adaptations (chosen by the diagnostics, applied to the whole run):", ""]
        lines += [f"- **{a['name']}** ({a['reason']}): {a['detail']}" for a in record.adaptations]
    lines += ["", "Diagnostics:" if record.flags else "Diagnostics: nothing suspicious found."]
    lines += [f"- **{f.code}**: {f.message}" for f in record.flags]
    r = record.to_json()
    lines += provenance_markdown(evaluate_provenance(r), evaluate_caveats(r), record.gate)
    return "\n".join(lines) + "\n"
