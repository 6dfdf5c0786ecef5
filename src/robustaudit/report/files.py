"""Atomic writes of an evaluation's files: a crash never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from robustaudit.results import EvalRecord


def write_run(record: EvalRecord, out: str | Path) -> Path:
    """Write results.json, adversarial.npz and summary.md into `out` (created if needed)."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "results.json.tmp"
    tmp.write_text(json.dumps(record.to_json(), indent=2))
    with open(d / "adversarial.npz.tmp", "wb") as f:
        np.savez_compressed(f, x_adv=record.x_adv.numpy())
    (d / "summary.md.tmp").write_text(summary_markdown(record))
    for name in ("adversarial.npz", "summary.md", "results.json"):
        os.replace(d / f"{name}.tmp", d / name)
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
        f"- robust accuracy: {record.robust_accuracy:.3f} (95% CI {lo:.3f}-{hi:.3f}, exact binomial)",
        f"- wall time: {record.seconds:.1f} s, seed {record.seed}",
        "",
        "| attack | attacked | broken | seconds | gradients | forward passes |",
        "|---|---|---|---|---|---|",
    ]
    for a in record.attacks:
        lines.append(f"| {a.name} | {a.attacked} | {a.broken} | {a.seconds:.1f} | {a.gradients} | {a.forwards} |")
    notes = [n for a in record.attacks for n in a.notes]
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    lines += ["", "Diagnostics:" if record.flags else "Diagnostics: nothing suspicious found."]
    lines += [f"- **{f.code}**: {f.message}" for f in record.flags]
    return "\n".join(lines) + "\n"
