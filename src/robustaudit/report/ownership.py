"""The ownership reports: embed (accuracy cost, where the signature sits, verification of the owner's model),
verify (the verdict per test) and attack (bit-error rate, trigger accuracy and accuracy under each removal attack);
the QR code read back is drawn and written as qr.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robustaudit.report.command import CommandReport, Table
from robustaudit.report.html import png


def _p(v: float | None) -> str:
    return "-" if v is None else f"{v:.2e}"


def _tests(r: dict[str, Any]) -> Table:
    rows = []
    w, b = r.get("white_box"), r.get("black_box")
    if w is not None:
        rows.append(["white-box signature", f"bit-error rate {w['bit_error_rate']:.3f} over {w['bits']} bits"
                     if w.get("bit_error_rate") is not None else w.get("note", "-"),
                     "yes" if w.get("decodes") else f"no ({w.get('decoded')!r})", _p(w["p_value"])])
    if b is not None:
        rows.append(["black-box trigger set", f"{b['trigger_hits']}/{b['trigger_size']} labels match "
                     f"(chance {b['chance']:.3f}), {b['queries']} queries", "-", _p(b["p_value"])])
    return Table("verification tests (p-value under a model made without the key)",
                 ["test", "evidence", "QR decodes", "p-value"], rows)


def _qr(white: dict[str, Any] | None, folder: Path) -> list[tuple[str, str]]:
    if white is None or white.get("recovered") is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.6, 2.6), dpi=110)
    ax.imshow(1 - white["recovered"], cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"read back: {white['decoded']!r}", fontsize=8)
    fig.savefig(folder / "qr.png", bbox_inches="tight")
    return [("the QR code read back from the layer's mask (pad removed, function patterns restored)", png(fig))]


def _curves(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attacks = [a for a in ("finetune", "prune", "fill") if any(r["attack"] == a for r in rows)]
    if not attacks:
        return []
    fig, axes = plt.subplots(1, len(attacks), figsize=(3.4 * len(attacks), 2.8), dpi=110, squeeze=False)
    labels = {"finetune": "fine-tuning epochs", "prune": "global sparsity", "fill": "fraction of pruned weights "
              "revived"}
    for ax, a in zip(axes[0], attacks, strict=True):
        sel = [rows[0], *[r for r in rows if r["attack"] == a]]
        xs = [r["strength"] if r["attack"] != "none" or a != "prune" else r["sparsity"] for r in sel]
        for key, name in (("bit_error_rate", "bit-error rate"), ("trigger_accuracy", "trigger accuracy"),
                          ("accuracy", "test accuracy")):
            if all(r[key] is not None for r in sel):
                ax.plot(xs, [r[key] for r in sel], marker="o", label=name)
        ax.set_xlabel(labels[a])
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return [("bit-error rate, trigger accuracy and test accuracy under each removal attack", png(fig))]


def ownership_report(kind: str, r: dict[str, Any], white: dict[str, Any] | None, folder: Path) -> CommandReport:
    """The report of `ownership embed` (kind "embed"), `verify` or `attack`."""
    if kind == "embed":
        acc = r["accuracy"]
        rows = [["signature", f"{r['signature']!r}: QR version {r['qr_version']} ({r['qr_size']}x{r['qr_size']}), "
                 f"{r['signature_bits']} data bits"],
                ["layer and window", f"{r['layer']} at output channel {r['offset'][0]}, input channel "
                 f"{r['offset'][1]}"],
                ["sparsity", f"{r['sparsity']:.4f} ({r['nonzeros_pruned']} kept weights before embedding, "
                 f"{r['nonzeros_signed']} after)"],
                ["connections changed", ", ".join(f"{k} {v}" for k, v in r["connections_changed"].items())],
                ["signature survives magnitude pruning up to", f"{r['signature_survives_pruning_to']:.3f} sparsity"],
                ["accuracy: input model", f"{acc['input_model']:.4f}"],
                ["accuracy: ticket without signature", f"{acc['ticket_without_signature']:.4f}"],
                ["accuracy: signed ticket", f"{acc['signed_ticket']:.4f} (cost {acc['cost']:+.4f}; {acc['test']}, "
                 f"n={acc['n_test']})"]]
        return CommandReport("Ownership: signature embedded", f"model {r['model']}; key in model.key.json (secret)",
                             "accuracy cost", f"{acc['cost'] * 100:+.2f} points",
                             [Table("embedding", ["", "value"], rows), _tests(r)], _qr(white, folder))
    if kind == "verify":
        return CommandReport("Ownership verification", f"suspect {r['model']}; signature {r['signature']!r}",
                             "verdict", f"{r['verdict']} (alpha {r['alpha']}, threshold {r['threshold']:.3g})",
                             [_tests(r)], _qr(white, folder))
    rows = [[row["attack"], f"{row['strength']:g}", f"{row['sparsity']:.3f}", f"{row['accuracy']:.4f}",
             "-" if row["bit_error_rate"] is None else f"{row['bit_error_rate']:.3f}",
             "-" if row["qr_decodes"] is None else ("yes" if row["qr_decodes"] else "no"),
             "-" if row["trigger_accuracy"] is None else f"{row['trigger_accuracy']:.2f}",
             "yes" if row["verified"] else "NO"] for row in r["rows"]]
    held = sum(row["verified"] for row in r["rows"])
    return CommandReport("Ownership under removal attacks", f"model {r['model']}; signature {r['signature']!r}",
                         "ownership still shown", f"{held} of {len(r['rows'])} attacked models",
                         [Table("each attack, then verification", ["attack", "strength", "sparsity", "accuracy",
                                                                   "bit-error rate", "QR decodes",
                                                                   "trigger acc.", "verified"], rows)],
                         _curves(r["rows"]))
