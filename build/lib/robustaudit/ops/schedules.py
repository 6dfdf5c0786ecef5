"""Step-size schedules, written once (APGD checkpoints, PMA's restarted cosine, Square's p)."""

from __future__ import annotations

import math


def apgd_checkpoint_periods(n_iter: int) -> tuple[int, int, int]:
    """(first period k0, decrement, minimum period) of APGD's checkpoints for Linf/L2 (spec §3.1)."""
    return max(int(0.22 * n_iter), 1), max(int(0.03 * n_iter), 1), max(int(0.06 * n_iter), 1)


def apgd_checkpoints(n_iter: int) -> list[int]:
    """1-indexed iterations after which APGD checks its step size (N=100: 22, 41, 57, ..., 99)."""
    k, decr, k_min = apgd_checkpoint_periods(n_iter)
    out, cnt = [], 0
    for i in range(1, n_iter + 1):
        cnt += 1
        if cnt == k:
            out.append(i)
            k, cnt = max(k - decr, k_min), 0
    return out


def pma_step(i: int, n_steps: int, eps: float) -> float:
    """PMA's step at 0-based iteration i: two cosine cycles from 2·eps to 0 restarting after K' = K/2."""
    change = n_steps / 2
    span = n_steps - change
    if i <= change:
        return eps * (1 + math.cos(math.pi * (i - 1) / span))
    return eps * (1 + math.cos(math.pi * (i - change - 1) / span))


_SQUARE_PHASES = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_p(it: int, p_init: float, n_iters: int | None = None) -> float:
    """Square's fraction of pixels at 0-based iteration `it` (spec §2.2); rescaled to 10,000 if n_iters given."""
    if n_iters is not None:
        it = int(it / n_iters * 10000)
    halvings = sum(it > b for b in _SQUARE_PHASES)
    return p_init / 2**halvings
