"""Exact binomial statistics: Clopper-Pearson intervals, McNemar's exact test, paired differences."""

from __future__ import annotations

from typing import Any

from scipy.stats import binom, binomtest


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion k/n."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test on the discordant pairs (b: only A holds, c: only B holds): the p-value of
    b ~ Binomial(b + c, 1/2)."""
    if b < 0 or c < 0:
        raise ValueError(f"counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(b, c), b + c, 0.5)))


def paired_difference(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Difference of two paired proportions, d = p_b − p_c estimated by (b − c)/n (b: only A holds, c: only B
    holds), with an interval of guaranteed coverage. Write d = s·(2q − 1) with s = p_b + p_c (how often the runs
    disagree) and q = p_b / s (which side wins a disagreement); Clopper-Pearson intervals of s (from b + c of n)
    and of q (from b of b + c), each at 1 − α/2, bound d over their rectangle (Bonferroni). Unlike the interval
    conditional on b + c alone, it accounts for how many pairs disagree, so the estimate is not on a bound by
    construction when one side is 0."""
    if n <= 0 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f"need b, c >= 0, b + c <= n and n > 0, got b={b}, c={c}, n={n}")
    half = 1 - (1 - confidence) / 2
    s_lo, s_hi = clopper_pearson(b + c, n, half)
    q_lo, q_hi = clopper_pearson(b, b + c, half) if b + c else (0.0, 1.0)
    low, high = 2 * q_lo - 1, 2 * q_hi - 1
    return (b - c) / n, min(s_lo * low, s_hi * low), max(s_lo * high, s_hi * high)


def compare_runs(a: dict[str, Any], b: dict[str, Any], name_a: str = "A", name_b: str = "B") -> dict[str, Any]:
    """Two results.json documents on the same examples: robust accuracies with exact intervals, their paired
    difference with its exact interval, and McNemar's exact test on the per-example outcomes."""
    from robustaudit.errors import InputError

    ea, eb = a["examples"], b["examples"]
    if len(ea) != len(eb) or any(x["label"] != y["label"] for x, y in zip(ea, eb, strict=True)):
        raise InputError(f"{name_a} and {name_b} are not on the same examples ({len(ea)} and {len(eb)} examples, "
                         "or different labels): compare runs made on one data file")
    n = len(ea)
    only_a = sum(x["robust"] and not y["robust"] for x, y in zip(ea, eb, strict=True))
    only_b = sum(y["robust"] and not x["robust"] for x, y in zip(ea, eb, strict=True))
    d, lo, hi = paired_difference(only_a, only_b, n)
    ra, rb = sum(x["robust"] for x in ea), sum(y["robust"] for y in eb)
    return {
        "n": n, "robust_accuracy_a": ra / n, "robust_accuracy_a_ci95": list(clopper_pearson(ra, n)),
        "robust_accuracy_b": rb / n, "robust_accuracy_b_ci95": list(clopper_pearson(rb, n)),
        "difference": d, "difference_ci95": [lo, hi], "robust_only_in_a": only_a, "robust_only_in_b": only_b,
        "mcnemar_exact_p": mcnemar_exact(only_a, only_b),
    }


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the exact one-sided p-value of k or more successes."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p)) if k > 0 else 1.0
