"""`robustaudit explain`: attributions by every method asked for, their faithfulness on the neighbourhood the user
names (LFA loss, PGI, PGU, over seeds), the recommended method, and for tables the global probing + surrogate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustaudit.errors import BudgetExhausted, InputError
from robustaudit.explain.explainers import (
    GRADIENT_METHODS,
    QUERY_METHODS,
    Settings,
    check_access,
    explain_gradients,
    explain_queries,
    parse_methods,
)
from robustaudit.explain.faithfulness import Neighbourhood, evaluate
from robustaudit.explain.features import feature_mask
from robustaudit.models.base import LabelModel
from robustaudit.models.torch import TorchModel
from robustaudit.ops.rng import derive_seed
from robustaudit.oracle import Oracle
from robustaudit.progress import progress_bar
from robustaudit.types import Access

STOCHASTIC = ("smoothgrad", "lime", "kernelshap", "clime")


def explain_all(model: LabelModel, x: torch.Tensor, labels: torch.Tensor | None, *, methods: str | list[str],
                target: str | int = "prediction", seed: int = 0, seeds: int = 3, neighbourhood: str = "gaussian:0.1",
                settings: Settings = Settings(), n_eval: int = 200, k: int | None = None, draws: int = 20,
                budget: int | None = None, global_top: int = 15, surrogate: str = "tree",
                progress: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(the explanations document, the attributions per method shaped like x) for the examples x."""
    names = parse_methods(methods) if isinstance(methods, str) else methods
    access = Access(model.access)
    check_access(names, access)
    if seeds < 1 or n_eval < 2 or draws < 1 or settings.n_samples < 2:
        raise InputError("--seeds, --n-eval (>= 2), --draws and --n-samples (>= 2) must be positive")
    nb = Neighbourhood.parse(neighbourhood, settings.baseline)
    n = len(x)
    masks = [feature_mask(x[i], settings.features) for i in range(n)]
    n_features = [int(m.max()) + 1 for m in masks]
    kk = [k or max(1, round(0.2 * f)) for f in n_features]
    tabular = x.dim() == 2 and global_top > 0
    per_seed = [m for m in names if m in QUERY_METHODS]
    eval_cost = n_eval + len(names) * 2 * (1 if nb.kind == "removal" else draws)
    cost = [1 + sum(settings.queries(m, f) * (seeds if m in STOCHASTIC else 1) for m in per_seed) + seeds * eval_cost
            + (x.shape[1] + 1 if tabular else 0) for f in n_features]
    if budget is not None and max(cost) > budget:
        raise InputError(f"this explanation costs up to {max(cost)} queries per example (explainers, {seeds} seeds of "
                         f"{n_eval} evaluation samples{', the global probes' if tabular else ''}); the budget is "
                         f"{budget}: lower --n-samples, --n-eval or --seeds, or raise --budget")
    oracle = Oracle(model, n, max_queries=budget)
    ids = torch.arange(n)
    scores0 = oracle.scores(x, ids).cpu()
    classes = int(scores0.shape[1])
    pred = scores0.argmax(1)
    t = _targets(target, pred, labels, classes)
    module = model.module if isinstance(model, TorchModel) else None
    start = time.perf_counter()
    attributions: dict[int, dict[str, torch.Tensor]] = {}
    rows: dict[str, dict[str, list[float]]] = {m: {"lfa_loss": [], "pgi": [], "pgu": []} for m in names}
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task("explain", total=seeds * n)
            for s in range(seeds):
                run_seed = seed if s == 0 else derive_seed(seed, "explain-seed", s)
                maps: dict[str, torch.Tensor] = {}
                for m in names:
                    if s > 0 and m not in STOCHASTIC:
                        maps[m] = attributions[0][m]
                    elif m in GRADIENT_METHODS:
                        assert module is not None
                        maps[m] = explain_gradients(module, x.to(model.device), t.to(model.device), m, settings,
                                                    run_seed).cpu()
                    else:
                        maps[m] = torch.cat([explain_queries(oracle, x[i:i + 1], i, int(t[i]), m, settings, run_seed,
                                                             masks[i]) for i in range(n)])
                attributions[s] = maps
                g = torch.Generator().manual_seed(derive_seed(run_seed, "lfa"))
                per_example = []
                for i in range(n):
                    def score(xs: torch.Tensor, i: int = i) -> torch.Tensor:
                        return oracle.scores(xs, torch.full((len(xs),), i, dtype=torch.long)).cpu()[:, int(t[i])]

                    per_example.append(evaluate(score, x[i].cpu(), float(scores0[i, int(t[i])]), masks[i],
                                                {m: maps[m][i] for m in names}, nb, n=n_eval, k=kk[i], draws=draws,
                                                g=g))
                    bar.advance(task)
                for m in names:
                    for key in ("lfa_loss", "pgi", "pgu"):
                        rows[m][key].append(float(np.mean([e[m][key] for e in per_example])))
            tab = _global(oracle, x, seed, global_top, surrogate) if tabular else None
    except BudgetExhausted as e:  # the estimate above is an upper bound: this is a defect if it happens
        raise InputError(f"the budget ran out: {e}") from None
    table = {m: {key: _summary(v) for key, v in rows[m].items()} for m in names}
    best = min(names, key=lambda m: table[m]["lfa_loss"]["mean"])
    doc: dict[str, Any] = {
        "n": n, "classes": classes, "methods": names, "target": str(target), "explained_class": t.tolist(),
        "features": settings.features, "n_features": n_features, "neighbourhood": str(nb), "seeds": seeds,
        "settings": {"n_samples": settings.n_samples, "sigma": settings.sigma, "nt_samples": settings.nt_samples,
                     "ig_steps": settings.ig_steps, "baseline": settings.baseline, "n_eval": n_eval, "k": kk,
                     "draws": draws, "lime_kernel": "exp(-d^2 / (2 w^2)), euclidean d, w = 0.75 sqrt(F)"},
        "faithfulness": table, "recommended": best,
        "recommendation": f"{best}: the lowest local-fit (LFA) loss on {nb} (mean over {seeds} seeds)",
        "queries_total": int(oracle.queries.sum()), "queries_per_example": oracle.queries.tolist(),
        "gradient_passes_per_example": {m: settings.passes(m) * (seeds if m in STOCHASTIC else 1)
                                        for m in names if m in GRADIENT_METHODS},
        "seconds": time.perf_counter() - start}
    if tab is not None:
        doc["global"] = tab
    return doc, {m: attributions[0][m].numpy() for m in names}


def _targets(target: str | int, pred: torch.Tensor, labels: torch.Tensor | None, classes: int) -> torch.Tensor:
    if str(target) == "prediction":
        return pred
    if str(target) == "label":
        if labels is None:
            raise InputError("--target label needs labelled data")
        if bool(((labels < 0) | (labels >= classes)).any()):
            raise InputError(f"labels must lie in 0..{classes - 1}: the model has {classes} classes")
        return labels.cpu().long()
    try:
        c = int(target)
    except ValueError:
        raise InputError(f"--target must be prediction, label or a class index, got {target!r}") from None
    if not 0 <= c < classes:
        raise InputError(f"--target {c} is not a class of the model (0..{classes - 1})")
    return torch.full_like(pred, c)


def _summary(values: list[float]) -> dict[str, Any]:
    """Mean over seeds with a t interval (None with one seed)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return {"mean": mean, "ci95": None, "per_seed": values}
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return {"mean": mean, "ci95": [mean - half, mean + half], "per_seed": values}


def _global(oracle: Oracle, x: torch.Tensor, seed: int, top: int, kind: str) -> dict[str, Any]:
    from robustaudit.explain.tabular import probe_importance, surrogate

    imp, labels = probe_importance(lambda xs, ids: oracle.scores(xs, ids).cpu(), x, seed)
    order = np.argsort(-imp)[: min(top, x.shape[1])]
    out = surrogate(x.cpu().numpy(), labels, order, kind, seed)
    out["importance"] = imp.tolist()
    out["top"] = order.tolist()
    return out


def write_explanations(out: str | Path, doc: dict[str, Any], maps: dict[str, np.ndarray], x: torch.Tensor) -> Path:
    """attributions.npz (one array per method, named as asked), explanations.json, summary.md, report.html."""
    import json

    from robustaudit.report.command import explain_report

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "attributions.npz.tmp", "wb") as f:
        np.savez_compressed(f, **maps)  # type: ignore[arg-type]
    (d / "attributions.npz.tmp").replace(d / "attributions.npz")
    (d / "explanations.json").write_text(json.dumps(doc, indent=2))
    explain_report(doc, maps, x.cpu().numpy()).write(d, doc)
    return d
