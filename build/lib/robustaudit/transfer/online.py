"""Online attacks on a stream (Mladenovic et al., ICLR 2022; spec black-box-attacks.md §8): examples arrive one at
a time in random order; the attacker may attack at most k of them and must decide on each at once, from a value it
can compute itself (the surrogate's loss on the attacked example). A k-secretary problem under noise.

Every rule takes the stream's observed values in arrival order and returns the selected positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from robustaudit.errors import InputError

Rule = Callable[[Sequence[float], int], list[int]]

# Albers & Ladewig's (c, r) per k, the entries the spec gives: observe floor(c n + 1) items, then select above the
# r-th best of them.
SINGLE_REF_TABLE = {1: (0.3678, 1), 2: (0.2545, 1), 10: (0.2159, 3), 100: (0.1331, 15)}


def _check(values: Sequence[float], k: int) -> int:
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    return len(values)


def virtual_plus(values: Sequence[float], k: int, t: int | None = None, exhaust: bool = True) -> list[int]:
    """Virtual+: observe items 0..t (t = floor(n/e)); then select an item iff budget remains and its value strictly
    beats the smallest of R, the top-k of the observed and the selected items. With `exhaust`, spend the rest of
    the budget on the last items."""
    n = _check(values, k)
    t = math.floor(n / math.e) if t is None else t
    ref: list[float] = []  # top-k values, descending
    chosen: list[int] = []
    for i, v in enumerate(values):
        if i <= t:
            ref = sorted([*ref, v], reverse=True)[:k]
            continue
        left = k - len(chosen)
        if exhaust and left > 0 and n - i <= left:
            chosen.append(i)
        elif left > 0 and (not ref or v > ref[-1]):
            chosen.append(i)
            ref = sorted([*ref, v], reverse=True)[:k]
    return chosen


def virtual(values: Sequence[float], k: int, t: int | None = None) -> list[int]:
    """Virtual (Babaioff et al. 2007): select iff v beats R's smallest AND that smallest came from the sampling
    phase; R is updated with every item that beats it, selected or not. t = floor(0.38 n)."""
    n = _check(values, k)
    t = math.floor(0.38 * n) if t is None else t
    ref: list[tuple[float, int]] = []
    chosen: list[int] = []
    for i, v in enumerate(values):
        if i <= t:
            ref = sorted([*ref, (v, i)], reverse=True)[:k]
            continue
        if len(ref) < k or v > ref[-1][0]:
            if len(ref) == k and ref[-1][1] <= t and len(chosen) < k:
                chosen.append(i)
            ref = sorted([*ref, (v, i)], reverse=True)[:k]
    return chosen


def optimistic(values: Sequence[float], k: int, t: int | None = None) -> list[int]:
    """Optimistic (Babaioff et al.): compare with the smallest of the frozen sample's top-k; after each pick drop
    that smallest (one element, not the released code's two), so the bar rises; an empty R keeps the last bar."""
    n = _check(values, k)
    t = math.floor(n / math.e) if t is None else t
    ref = sorted(values[: t + 1], reverse=True)[:k]
    bar = ref[-1] if ref else -math.inf
    chosen: list[int] = []
    for i in range(t + 1, n):
        if len(chosen) < k and values[i] > bar:
            chosen.append(i)
            ref = ref[:-1]
            bar = ref[-1] if ref else bar
    return chosen


def single_ref(values: Sequence[float], k: int, c: float | None = None, r: int | None = None) -> list[int]:
    """Single-Ref (Albers & Ladewig 2019): observe floor(c n + 1) items, then select anything above the r-th best
    of them. (c, r) default to the table entry of the largest tabulated k not above ours."""
    n = _check(values, k)
    tc, tr = SINGLE_REF_TABLE[max(key for key in SINGLE_REF_TABLE if key <= k)]
    c, r = (tc if c is None else c), (tr if r is None else r)
    t = math.floor(c * n + 1)
    sample = sorted(values[:t], reverse=True)
    bar = sample[min(r, len(sample)) - 1] if sample else -math.inf
    chosen: list[int] = []
    for i in range(t, n):
        if len(chosen) < k and values[i] > bar:
            chosen.append(i)
    return chosen


def offline(values: Sequence[float], k: int) -> list[int]:
    """The k best in hindsight."""
    _check(values, k)
    return sorted(np.argsort(-np.asarray(values, dtype=float), kind="stable")[:k].tolist())


STRATEGIES: dict[str, Rule] = {"virtual+": virtual_plus, "virtual": virtual, "optimistic": optimistic,
                               "single-ref": single_ref}


def random_choice(n: int, k: int, rng: np.random.Generator) -> list[int]:
    """k positions uniformly at random (the Random baseline)."""
    return sorted(rng.choice(n, size=min(k, n), replace=False).tolist())


def competitive_ratios(values: np.ndarray, gains: np.ndarray, k: int, *, permutations: int = 100, seed: int = 0,
                       strategies: Sequence[str] = tuple(STRATEGIES)) -> dict[str, np.ndarray]:
    """For each strategy (and 'random'), the ratio of its total gain to the offline optimum's, per random stream
    order. `values[i]` is what the attacker observes for example i, `gains[i]` what attacking it earns (1 if it
    fools the target); the offline optimum takes the k largest gains. Orders where the optimum earns nothing are
    left out (no ratio)."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise InputError(f"unknown strategy {unknown[0]!r}: use {', '.join(STRATEGIES)}")
    if len(values) != len(gains) or len(values) == 0:
        raise InputError("values and gains must be non-empty and of the same length")
    if permutations < 1:
        raise InputError(f"permutations must be >= 1, got {permutations}")
    best = float(np.sort(gains)[::-1][:k].sum())
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {s: [] for s in (*strategies, "random")}
    if best <= 0:
        return {s: np.array([]) for s in out}
    for _ in range(permutations):
        order = rng.permutation(len(values))
        seen = values[order].tolist()
        for s in strategies:
            out[s].append(float(gains[order[STRATEGIES[s](seen, k)]].sum()) / best)
        out["random"].append(float(gains[order[random_choice(len(values), k, rng)]].sum()) / best)
    return {s: np.asarray(v) for s, v in out.items()}
