"""A black box on high-dimensional tables, explained globally ("Interpreting Black-box Machine Learning Models for
High Dimensional Datasets"): rank the features by probing (each column permuted across the data, the change of the
predicted class's probability, score access, every row a counted query), fit an interpretable surrogate on the
top-k columns to the black box's own labels, measure its fidelity on held-out rows, read rules off it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from robustaudit.errors import InputError
from robustaudit.extras import require
from robustaudit.ops.losses import log_probabilities
from robustaudit.stats import clopper_pearson

Scores = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (inputs, example ids) -> score matrix


def probe_importance(scores: Scores, x: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(importance per column, the black box's labels): importance_j = mean over rows of |p(x) − p(x with column j
    permuted)| for the predicted class. Costs rows × (columns + 1) queries."""
    ids = torch.arange(len(x))
    p0 = log_probabilities(scores(x, ids).double()).exp()
    pred = p0.argmax(1)
    base = p0.gather(1, pred[:, None])[:, 0]
    g = torch.Generator().manual_seed(seed)
    imp = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        xp = x.clone()
        xp[:, j] = x[torch.randperm(len(x), generator=g), j]
        p = log_probabilities(scores(xp, ids).double()).exp().gather(1, pred[:, None])[:, 0]
        imp[j] = float((base - p).abs().mean())
    return imp, pred.numpy()


def surrogate(x: np.ndarray, labels: np.ndarray, top: np.ndarray, kind: str, seed: int,
              names: list[str] | None = None) -> dict[str, Any]:
    """Fit a depth-4 decision tree or an L1 logistic regression on the top columns to the black box's labels on half
    of the rows; fidelity (agreement with the black box) on the other half with its exact 95% interval; the rules
    (tree) or the non-zero coefficients (logistic); per held-out row, the path (tree) or top contributions."""
    require("sklearn", "the surrogate model")
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier, export_text

    if len(x) < 4:
        raise InputError("the surrogate needs at least 4 rows of data")
    names = names or [f"x{j}" for j in range(x.shape[1])]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    train, test = order[: len(x) // 2], order[len(x) // 2:]
    cols = [names[j] for j in top]
    xt = x[:, top]
    if kind == "tree":
        model: Any = DecisionTreeClassifier(max_depth=4, random_state=seed)
    elif kind == "logistic":
        model = LogisticRegression(penalty="l1", solver="liblinear", C=1.0, random_state=seed)
    else:
        raise InputError(f"unknown surrogate {kind!r}: use tree or logistic")
    if len(np.unique(labels[train])) < 2:
        raise InputError("the black box gives one label on the training rows: nothing to explain globally")
    model.fit(xt[train], labels[train])
    agree = int((model.predict(xt[test]) == labels[test]).sum())
    out: dict[str, Any] = {"kind": kind, "features": cols, "fidelity": agree / len(test),
                           "fidelity_ci95": list(clopper_pearson(agree, len(test))), "train_rows": len(train),
                           "heldout_rows": len(test)}
    if kind == "tree":
        out["rules"] = export_text(model, feature_names=cols)
        paths = model.decision_path(xt[test[:10]])
        tree = model.tree_
        local = []
        for r in range(min(10, len(test))):
            steps = []
            for node in paths.indices[paths.indptr[r]:paths.indptr[r + 1]]:
                if tree.children_left[node] == tree.children_right[node]:
                    continue
                f, t = tree.feature[node], tree.threshold[node]
                steps.append(f"{cols[f]} {'<=' if xt[test[r], f] <= t else '>'} {t:.4g}")
            local.append({"row": int(test[r]), "path": steps, "surrogate": int(model.predict(xt[test[r:r + 1]])[0]),
                          "black_box": int(labels[test[r]])})
        out["local"] = local
    else:
        coef = np.atleast_2d(model.coef_)
        out["rules"] = "\n".join(f"class {c}: " + ", ".join(f"{cols[j]} {coef[i, j]:+.3g}"
                                                            for j in np.flatnonzero(coef[i]))
                                 for i, c in enumerate(model.classes_ if len(coef) > 1 else model.classes_[1:]))
        out["local"] = [{"row": int(r), "contributions": {cols[j]: float(coef[0, j] * xt[r, j])
                                                          for j in np.argsort(-np.abs(coef[0] * xt[r]))[:5]},
                         "surrogate": int(model.predict(xt[r:r + 1])[0]), "black_box": int(labels[r])}
                        for r in test[:10]]
    return out
