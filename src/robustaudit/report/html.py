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
        return render(d, "report.html.j2", r=r, plots=_plots(r, curve), gallery=_gallery(d, r),
                      provenance=provenance_rows(evaluate_provenance(r), r.get("gate")), caveats=evaluate_caveats(r))
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError) as e:
        raise InputError(f"{d}: its results.json, curve.json or gallery.npz is not what an evaluate run writes "
                         f"({type(e).__name__}: {e}); rerun the audit into this folder") from None


def evaluate_provenance(r: dict[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {"threat": r["threat"]}
    for a in r.get("attack_settings", []):
        settings[f"attack {a['name']}"] = {k: v for k, v in a.items() if k != "name"}
    return {**{k: r.get(k) for k in ("model", "model_sha256", "data_sha256", "n", "seed", "model_options",
                                     "robustaudit_version", "torch_version", "python_version", "date")},
            "settings": settings}


def evaluate_caveats(r: dict[str, Any]) -> list[str]:
    from robustaudit.provenance import caveats

    evaluated = [e for e in r["examples"] if e.get("evaluated", True) and e.get("clean_prediction") is not None]
    return caveats(attacks=[a["name"] for a in r.get("attack_settings", [])],
                   clean_correct=sum(e["clean_prediction"] == e["label"] for e in evaluated), n=len(evaluated),
                   classes=len({e["label"] for e in evaluated}))


def provenance_rows(p: dict[str, Any], gate: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """The provenance block of a report (see `robustaudit.provenance`), one (what, value) row each."""
    options = p.get("model_options") or {}
    mean, std = options.get("mean"), options.get("std")
    rows = [("model", str(p.get("model"))),
            ("model sha256", p.get("model_sha256") or "n/a: not loaded from a file or module (a remote or wrapped "
                                                       "model)"),
            ("data sha256", str(p.get("data_sha256") or "n/a")), ("examples", str(p.get("n"))),
            ("normalisation", "none (inputs as given)" if mean is None else f"mean {mean}, std {std}"),
            ("model options", json.dumps({k: v for k, v in options.items() if k not in ("mean", "std")})),
            ("seed", str(p.get("seed")))]
    rows += [(f"setting: {k}", json.dumps(v) if not isinstance(v, str) else v) for k, v in
             (p.get("settings") or {}).items()]
    rows += [("versions", f"robustaudit {p.get('robustaudit_version')} · torch {p.get('torch_version')} · Python "
                          f"{p.get('python_version')}"), ("date", str(p.get("date")))]
    if gate is not None:
        rows.append(("release gate", gate["line"]))
    return rows


def provenance_markdown(p: dict[str, Any], caveats: list[str], gate: dict[str, Any] | None = None) -> list[str]:
    """The caveats and provenance block as Markdown lines, for summary.md."""
    lines = ["", "## Caveats", ""] + [f"- {c}" for c in caveats] if caveats else []
    return lines + ["", "## Provenance", ""] + [f"- {k}: `{v}`" for k, v in provenance_rows(p, gate)]


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
    names = class_names(r.get("data") or {})
    out = []
    for i, clean, adv in zip(g["index"].tolist(), g["clean"], g["adv"], strict=True):
        diff = adv - clean
        scale = float(np.abs(diff).max()) or 1.0
        e = r["examples"][i]
        pred = e.get("adversarial_prediction")
        out.append({"index": i, "label": _named(e["label"], names), "broken_by": e["broken_by"],
                    "prediction": "?" if pred is None else _named(pred, names), "clean": _image(clean),
                    "adv": _image(adv), "diff": _image(0.5 + diff / (2 * scale))})
    return out


def class_names(data: dict[str, Any]) -> dict[int, str]:
    """Class index -> name when the data names its classes (an image folder's folders, through --classes)."""
    if isinstance(data.get("class_index"), dict):
        return {int(v): str(k) for k, v in data["class_index"].items()}
    if isinstance(data.get("classes"), list):
        return dict(enumerate(map(str, data["classes"])))
    return {}


def _named(k: int, names: dict[int, str]) -> str:
    return f"{k} ({names[k]})" if k in names else str(k)


def _image(a: np.ndarray) -> str:
    from PIL import Image

    a = np.clip(a, 0, 1)
    pixels = (a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)) * 255
    buf = io.BytesIO()
    Image.fromarray(pixels.round().astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()
