"""Membership-inference metrics (spec membership-inference.md, Metrics): the ROC of a score where higher means
"member", its AUC with a bootstrap interval, TPR at a low FPR and the best balanced accuracy over thresholds."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

FPRS = (0.01, 0.001, 0.0)


def roc(member: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1); tied scores move together, as in
    scikit-learn's `roc_curve`."""
    member = np.asarray(member, dtype=bool)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    s, m = np.asarray(score, dtype=np.float64)[order], member[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last index of each run of equal scores
    tp, fp = np.cumsum(m)[last], np.cumsum(~m)[last]
    pos, neg = max(int(member.sum()), 1), max(int((~member).sum()), 1)
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos]


def auc(member: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC: the Mann-Whitney probability that a member outscores a non-member (ties count 1/2)."""
    member = np.asarray(member, dtype=bool)
    pos, neg = int(member.sum()), int((~member).sum())
    if pos == 0 or neg == 0:
        raise ValueError("the AUC needs members and non-members")
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[member].sum() - pos * (pos + 1) / 2) / (pos * neg))


def tpr_at(fpr: np.ndarray, tpr: np.ndarray, limit: float) -> float:
    """TPR at the largest ROC point with FPR <= limit."""
    return float(tpr[fpr <= limit + 1e-15].max())


def balanced_accuracy(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Best balanced accuracy over thresholds: max of 1 - (FPR + 1 - TPR)/2."""
    return float((1 - (fpr + 1 - tpr) / 2).max())


def auc_interval(member: np.ndarray, score: np.ndarray, *, rounds: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, resampling members and non-members separately (stratified)."""
    member = np.asarray(member, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[member], score[~member]
    rng = np.random.default_rng(seed)
    both = np.r_[np.ones(len(pos), dtype=bool), np.zeros(len(neg), dtype=bool)]
    values = [auc(both, np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]) for _ in range(rounds)]
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def summary(member: np.ndarray, score: np.ndarray, *, seed: int = 0, points: int = 200) -> dict[str, object]:
    """Everything the report shows of one attack's scores: AUC and interval, TPR at each of FPRS, balanced
    accuracy, and the ROC thinned to about `points` points (log-spaced in FPR, the ends kept)."""
    fpr, tpr = roc(member, score)
    keep = np.unique(np.r_[0, np.searchsorted(fpr, np.geomspace(1e-4, 1, points)).clip(0, len(fpr) - 1),
                           len(fpr) - 1])
    a = auc(member, score)
    return {"auc": a, "auc_ci95": list(auc_interval(member, score, seed=seed)),
            "accuracy": balanced_accuracy(fpr, tpr),
            "tpr_at_fpr": {f"{f:g}": tpr_at(fpr, tpr, f) for f in FPRS},
            "roc": {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}}
