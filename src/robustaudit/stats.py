"""Exact binomial statistics: Clopper-Pearson intervals, McNemar's exact test, paired differences."""

from __future__ import annotations

from typing import Any

from scipy.stats import beta, binom


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion k/n."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    a = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return low, high


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test on the discordant pairs (b: only A holds, c: only B holds): the p-value of
    b ~ Binomial(b + c, 1/2)."""
    if b < 0 or c < 0:
        raise ValueError(f"counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(b, c), b + c, 0.5)))


def paired_difference(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Difference of two paired proportions, (b - c)/n, with an exact interval conditional on the b + c
    discordant pairs: the Clopper-Pearson interval of b/(b + c), mapped through d = (b + c)/n·(2p − 1)."""
    if n <= 0 or b + c > n:
        raise ValueError(f"need b + c <= n and n > 0, got b={b}, c={c}, n={n}")
    d = (b - c) / n
    if b + c == 0:
        return d, 0.0, 0.0
    lo, hi = clopper_pearson(b, b + c, confidence)
    scale = (b + c) / n
    return d, scale * (2 * lo - 1), scale * (2 * hi - 1)


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
