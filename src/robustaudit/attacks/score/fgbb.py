"""Feature-guided black-box testing (spec feature-guided-testing.md): MCTS over SIFT features with DFMCS playouts and
backtracking, a minimum-L0 attack."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from robustaudit.attacks.base import Attack, Context
from robustaudit.attacks.minnorm import MinNorm
from robustaudit.errors import InputError
from robustaudit.ops.lp import pixels
from robustaudit.ops.rng import derive_seed
from robustaudit.ops.saliency import Saliency, sift_saliency
from robustaudit.types import Access, Norm

PLAYERS = ("cooperative", "adversarial", "random")


@dataclass(frozen=True, kw_only=True)
class FGBB(Attack):
    """Feature-guided black-box attack, L0 (pixels), score-based; Wicker, Huang & Kwiatkowska, TACAS 2018.

    SIFT keypoints make a saliency distribution (a mixture of Gaussians over pixels weighted by response). A
    two-player game: player I picks a feature, player II the `visit` pixels inside it (sampled from its
    Gaussian) set to the farther bound (SafeCV's MNIST manipulation) — `player2` cooperative keeps the best of
    `candidates` samples for the attacker, adversarial the worst, random one sample. MCTS picks the first feature
    with the intended UCB (the official code's bonus is always 0: `safecv_compat=True` reproduces that); a DFMCS
    playout then adds features sampled from the playout's own copy of the distribution, reverting a move that raises
    the true class's probability and reweighting the feature by the drop, until the label changes (or the playout
    can no longer beat the best); backtracking restores the changed pixels in clusters of `backtrack`, then one by
    one, whenever the image stays adversarial. The root feature's weight moves by the playout's total drop.
    A minimum-norm attack: it searches until the budget (`max_queries` per example when the threat sets none) and
    returns the fewest pixels found; success means at most eps pixels. Cost: 1 query per candidate move, per
    backtracking test, and 1 for the clean scores.

    >>> FGBB(max_queries=1000)(as_score_only(model), x, y, ThreatModel(norm="l0", eps=10))  # doctest: +SKIP
    """

    name = "fgbb"
    requires = Access.SCORES
    norms: ClassVar[frozenset[Norm]] = frozenset({Norm.L0})
    max_queries: int | None = 1000
    visit: int | None = None  # pixels per move; default: 0.5% of the pixels, at least 1 (6 of 784 in SafeCV's MNIST)
    player2: str = "cooperative"
    candidates: int = 2
    sigma_constant: float = 15.0
    backtrack: int = 10
    exploration: float = 1.0
    safecv_compat: bool = False

    def __post_init__(self) -> None:
        if self.player2 not in PLAYERS:
            raise InputError(f"--player2 must be one of {', '.join(PLAYERS)}, got {self.player2!r}")
        if self.candidates < 1 or (self.visit is not None and self.visit < 1) or self.backtrack < 1:
            raise InputError("fgbb: candidates, visit and backtrack must be >= 1")

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if ctx.oracle.max_queries is None and self.max_queries is not None:
            ctx.oracle.limit(self.max_queries)
        if ctx.oracle.max_queries is None:
            raise InputError("fgbb searches until its budget: give a query budget (--budget or max_queries)")
        track = MinNorm(x, ctx.ops)
        ctx.min_norm = track
        for i in range(len(x)):
            _Game(self, ctx, x, y, i, track).play()
        success = track.dist <= ctx.threat.eps
        return torch.where(success.reshape(-1, *[1] * (x.dim() - 1)), track.best.to(x.dtype), x), success


class _Game:
    """One example's search: the saliency, the root's statistics, the best pixel count so far."""

    def __init__(self, attack: FGBB, ctx: Context, x: torch.Tensor, y: torch.Tensor, i: int, track: MinNorm):
        self.a, self.ctx, self.track = attack, ctx, track
        self.x, self.y = x[i:i + 1], y[i:i + 1]
        self.idx = torch.tensor([i], device=x.device)
        self.rng = np.random.default_rng(derive_seed(ctx.seed, "fgbb", int(ctx.ids[i])))
        b = ctx.threat.bounds
        self.sal: Saliency = sift_saliency(x[i], b, sigma_constant=attack.sigma_constant) if x.dim() == 4 else \
            sift_saliency(x[i].reshape(-1), b)
        flat = pixels(self.x)[0]  # channels × pixels
        self.n_pix = flat.shape[1]
        self.far = torch.where(flat < (b.low + b.high) / 2, b.high, b.low)  # the farther bound, per channel
        self.visit = attack.visit or max(1, round(0.005 * self.n_pix))
        self.best = math.inf
        if ctx.threat.targeted:
            assert ctx.target is not None
            self.t = ctx.target[i:i + 1]

    def affordable(self, cost: int = 1) -> bool:
        return bool(self.ctx.oracle.affordable(self.idx, cost).all())

    def query(self, imgs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(score to lower, adversarial?) per image: the true class's probability (targeted: 1 - the target's)."""
        z = self.ctx.oracle.scores(imgs, self.idx.repeat(len(imgs)))
        p = z.double().softmax(1)
        s = 1 - p[:, int(self.t)] if self.ctx.threat.targeted else p[:, int(self.y)]
        adv = self.ctx.success(z, self.y.repeat(len(imgs)), self.idx.repeat(len(imgs)))
        return s.cpu().numpy(), adv.cpu().numpy()

    def image(self, changed: np.ndarray) -> torch.Tensor:
        flat = pixels(self.x)[0].clone()
        if len(changed):
            cols = torch.as_tensor(changed, device=flat.device)
            flat[:, cols] = self.far[:, cols]
        return flat.reshape(self.x.shape)

    def play(self) -> None:
        if not self.affordable():
            return
        s0 = float(self.query(self.x)[0][0])
        weights = self.sal.weights.copy()
        plays = np.zeros(len(weights))
        total = 0
        while self.best > 1 and self.affordable():
            total += 1
            bonus = 0.0 if self.a.safecv_compat else \
                self.a.exploration * np.sqrt(np.log(total + 1) / (plays + 1))
            k0 = int(self.rng.choice(len(weights), p=_normalise(weights + bonus)))
            plays[k0] += 1
            spent = int(self.ctx.oracle.queries[i := int(self.idx)])
            s_end, changed = self.playout(k0, s0, weights.copy())
            if int(self.ctx.oracle.queries[i]) == spent:  # the budget left cannot pay a move
                return
            if changed is not None:
                changed = self.backtracking(changed)
                self.best = min(self.best, len(changed))
            weights[k0] = max(0.0, weights[k0] + (s0 - s_end))
            if weights.sum() <= 0:
                weights = self.sal.weights.copy()

    def playout(self, k: int, s: float, w: np.ndarray) -> tuple[float, np.ndarray | None]:
        """DFMCS from the clean image: (last score, changed pixels if an adversarial image was reached)."""
        changed = np.zeros(0, dtype=np.int64)
        n_cand = 1 if self.a.player2 == "random" else self.a.candidates
        while len(changed) + 1 < self.best and self.affordable(n_cand):
            sets = [self.pick(k, changed) for _ in range(n_cand)]
            sets = [p for p in sets if len(p)]
            if not sets:
                break
            scores, adv = self.query(torch.cat([self.image(np.concatenate([changed, p])) for p in sets]))
            if adv.any() and self.a.player2 != "adversarial":
                j = int(np.flatnonzero(adv)[0])
            else:
                j = int(scores.argmin() if self.a.player2 == "cooperative" else scores.argmax())
            reward = s - float(scores[j])
            w[k] = max(0.0, w[k] + reward / 25)
            if adv[j]:
                new = np.concatenate([changed, sets[j]])
                self.track.update(self.image(new), self.idx, self.ctx.oracle.queries[self.idx.cpu()])
                return float(scores[j]), new
            if reward >= 0:  # keep the move; a move that helps the true class is reverted
                changed, s = np.concatenate([changed, sets[j]]), float(scores[j])
            k = int(self.rng.choice(len(w), p=_normalise(w)))
        return s, None

    def pick(self, k: int, changed: np.ndarray) -> np.ndarray:
        """Player II: `visit` new pixels from feature k's Gaussian (up to 5 draws each), skipping pixels already
        changed and those the manipulation would not change."""
        out: list[int] = []
        taken = set(changed.tolist())
        for _ in range(self.visit):
            for p in self.sal.sample(k, 5, self.rng).tolist():
                if p not in taken and bool((pixels(self.x)[0][:, p] != self.far[:, p]).any()):
                    out.append(p)
                    taken.add(p)
                    break
        return np.array(out, dtype=np.int64)

    def backtracking(self, changed: np.ndarray) -> np.ndarray:
        """Restore pixels in clusters of `backtrack`, then one by one, keeping each restoration that leaves the
        image adversarial; every adversarial image tested feeds the tracker. Never adds a pixel."""
        for size in dict.fromkeys((self.a.backtrack, 1)):
            start = 0
            while start < len(changed) and self.affordable():
                trial = np.concatenate([changed[:start], changed[start + size:]])
                img = self.image(trial)
                _, adv = self.query(img)
                if adv[0]:
                    self.track.update(img, self.idx, self.ctx.oracle.queries[self.idx.cpu()])
                    changed = trial
                else:
                    start += size
        return changed


def _normalise(w: np.ndarray) -> np.ndarray:
    w = np.clip(w, 0, None)
    return w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w))
