"""The HTML report: one self-contained page (inline CSS, plots and images as data: URIs; opens from disk with no
network) built from a run folder's results.json, gallery.npz and curve.json."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape

from robustaudit.errors import InputError

TEMPLATES = Path(__file__).parent / "templates"


def write_report(run: str | Path) -> Path:
    """Render DIR/report.html from the files of a finished run in DIR."""
    d = Path(run)
    if not (d / "results.json").is_file():
        raise InputError(f"{d} holds no results.json: give the --out folder of an evaluate run")
    try:
        r = json.loads((d / "results.json").read_text())
        curve = json.loads((d / "curve.json").read_text()) if (d / "curve.json").is_file() else None
        return render(d, "report.html.j2", r=r, plots=_plots(r, curve), gallery=_gallery(d, r))
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError) as e:
        raise InputError(f"{d}: its results.json, curve.json or gallery.npz is not what an evaluate run writes "
                         f"({type(e).__name__}: {e}); rerun the audit into this folder") from None


def render(out: Path, template: str, **context: Any) -> Path:
    """Render a template of `TEMPLATES` into out/report.html, atomically."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    path = out / "report.html"
    tmp = out / "report.html.tmp"
    tmp.write_text(env.get_template(template).render(**context))
    tmp.replace(path)
    return path


def _plots(r: dict[str, Any], curve: dict[str, Any] | None) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    if curve is not None:
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
        rows = curve["curve"]
        eps = [c["eps"] for c in rows]
        ax.fill_between(eps, [c["robust_accuracy_ci95"][0] for c in rows], [c["robust_accuracy_ci95"][1] for c in rows],
                        alpha=0.25)
        ax.plot(eps, [c["robust_accuracy"] for c in rows], marker="o")
        ax.set(xlabel="eps", ylabel="robust accuracy", ylim=(0, 1))
        plots.append(("robust accuracy versus eps (95% band)", png(fig)))
    curves = [a for a in r["attacks"] if a.get("success_curve") and a.get("attacked")]
    if curves:
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
        for a in curves:
            q = sorted(a["success_curve"], key=int)
            ax.plot([int(k) for k in q], [a["success_curve"][k] for k in q], marker="o", label=a["name"])
        ax.set(xscale="log", xlabel="queries per example", ylabel="share of attacked examples broken", ylim=(0, 1))
        ax.legend()
        plots.append(("success versus queries", png(fig)))
    norm = r["threat"]["norm"]
    broken = [e[norm] for e in r["examples"] if e.get("broken_by")]
    if broken:
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
        ax.hist(broken, bins=20, range=(0.0, 1.05 * max(max(broken), r["threat"]["eps"])))
        ax.axvline(r["threat"]["eps"], color="k", linestyle="--", label="eps")
        ax.set(xlabel=f"{norm} norm of the perturbation", ylabel="broken examples")
        ax.legend()
        plots.append((f"distribution of perturbation norms ({norm})", png(fig)))
    return plots


def png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _gallery(d: Path, r: dict[str, Any]) -> list[dict[str, Any]]:
    path = d / "gallery.npz"
    if not path.is_file():
        return []
    g = np.load(path)
    out = []
    for i, clean, adv in zip(g["index"].tolist(), g["clean"], g["adv"], strict=True):
        diff = adv - clean
        scale = float(np.abs(diff).max()) or 1.0
        e = r["examples"][i]
        out.append({"index": i, "label": e["label"], "broken_by": e["broken_by"], "clean": _image(clean),
                    "adv": _image(adv), "diff": _image(0.5 + diff / (2 * scale))})
    return out


def _image(a: np.ndarray) -> str:
    from PIL import Image

    a = np.clip(a, 0, 1)
    pixels = (a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)) * 255
    buf = io.BytesIO()
    Image.fromarray(pixels.round().astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()
