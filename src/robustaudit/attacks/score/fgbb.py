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
from robustaudit.ops.losses import log_probabilities, margin
from robustaudit.ops.lp import pixels
from robustaudit.ops.rng import derive_seed
from robustaudit.ops.saliency import Saliency, sift_saliency
from robustaudit.types import Access, Norm

PLAYERS = ("cooperative", "adversarial", "random")
MANIPULATIONS = ("vertex", "far")


@dataclass(frozen=True, kw_only=True)
class FGBB(Attack):
    """Feature-guided black-box attack, L0 (pixels), score-based; Wicker, Huang & Kwiatkowska, TACAS 2018.

    SIFT keypoints make a saliency distribution (a mixture of Gaussians over pixels weighted by response; a table:
    one feature per column, weighted by DeepGame's grey-box probes — each column alone at either bound, 2 queries
    per column when that is at most half the budget). A two-player game: player I picks a feature, player II the
    `visit` pixels inside it (sampled from its Gaussian) and how to change them: `manipulation` "vertex" sets each
    to a random vertex of the box other than its value (every channel at a bound, so either direction; Sparse-RS's
    values), "far" to the farther bound in every channel (SafeCV's MNIST manipulation) — `player2` cooperative keeps
    the best of `candidates` samples for the attacker, adversarial the worst, random one sample. MCTS picks the
    first feature with the intended UCB, weight + `exploration`·√(log N / (n_k + 1)) (the official code's bonus is
    always 0: `safecv_compat=True` reproduces that); a DFMCS playout then adds features sampled from the playouts'
    mutable distribution, reverting a move that raises the score to lower and reweighting the feature by the drop /
    5, until the label changes (or the playout can no longer beat the best); backtracking restores the changed
    pixels in clusters of `backtrack`, then one by one, whenever the image stays adversarial. The root feature's
    weight moves by the playout's total drop. The score (`reward`) is SafeCV's true-class probability
    ("probability") or the log-probability margin ("margin", default: the probability saturates far from the
    boundary and stops guiding the search); drops are measured as fractions of the clean margin. The playouts'
    distribution is shared across playouts, so what one playout learns guides the next (SafeCV keeps it per node). A
    minimum-norm attack: it searches until the budget (`max_queries` per example when the threat sets none) and
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
    manipulation: str = "vertex"
    reward: str = "margin"
    candidates: int = 2
    sigma_constant: float = 15.0
    backtrack: int = 10
    exploration: float = 0.1
    safecv_compat: bool = False

    def __post_init__(self) -> None:
        if self.player2 not in PLAYERS:
            raise InputError(f"--player2 must be one of {', '.join(PLAYERS)}, got {self.player2!r}")
        if self.reward not in ("margin", "probability"):
            raise InputError(f"fgbb: reward must be margin or probability, got {self.reward!r}")
        if self.manipulation not in MANIPULATIONS:
            raise InputError(f"fgbb: manipulation must be one of {', '.join(MANIPULATIONS)}, "
                             f"got {self.manipulation!r}")
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
        self.flat = pixels(self.x)[0]  # channels × pixels
        self.n_pix = self.flat.shape[1]
        self.far = torch.where(self.flat < (b.low + b.high) / 2, b.high, b.low)  # the farther bound, per channel
        self.visit = attack.visit or max(1, round(0.005 * self.n_pix))
        self.best = math.inf
        if ctx.threat.targeted:
            assert ctx.target is not None
            self.t = ctx.target[i:i + 1]

    def affordable(self, cost: int = 1) -> bool:
        return bool(self.ctx.oracle.affordable(self.idx, cost).all())

    def query(self, imgs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(score to lower, adversarial?) per image. `reward` "probability": the true class's probability
        (targeted: 1 - the target's); "margin": log p_y - max_{k≠y} log p_k (targeted: max_{k≠t} log p_k - log p_t),
        which does not saturate far from the boundary."""
        z = self.ctx.oracle.scores(imgs, self.idx.repeat(len(imgs)))
        n = len(imgs)
        if self.a.reward == "margin":
            lp = log_probabilities(z.double())
            s = -margin(lp, self.t.repeat(n)) if self.ctx.threat.targeted else margin(lp, self.y.repeat(n))
        else:
            p = log_probabilities(z.double()).exp()
            s = 1 - p[:, int(self.t)] if self.ctx.threat.targeted else p[:, int(self.y)]
        adv = self.ctx.success(z, self.y.repeat(len(imgs)), self.idx.repeat(len(imgs)))
        return s.cpu().numpy(), adv.cpu().numpy()

    def image(self, move: Move) -> torch.Tensor:
        flat = self.flat.clone()
        if len(move.pix):
            flat[:, torch.as_tensor(move.pix, device=flat.device)] = move.vals
        return flat.reshape(self.x.shape)

    def play(self) -> None:
        if not self.affordable():
            return
        s0 = float(self.query(self.x)[0][0])
        self.scale = max(abs(s0), 1e-6) if self.a.reward == "margin" else 1.0  # rewards as fractions of the margin
        self.probed: dict[int, torch.Tensor] = {}
        if self.sal.source == "features":
            self.probe(s0)
        weights = self.sal.weights.copy()
        learnt = self.sal.weights.copy()  # the playouts' distribution, learnt across playouts
        plays = np.zeros(len(weights))
        total = 0
        while self.best > 1 and self.affordable():
            total += 1
            bonus = 0.0 if self.a.safecv_compat else \
                self.a.exploration * np.sqrt(np.log(total + 1) / (plays + 1))
            k0 = int(self.rng.choice(len(weights), p=_normalise(weights + bonus)))
            plays[k0] += 1
            spent = int(self.ctx.oracle.queries[i := int(self.idx)])
            s_end, found = self.playout(k0, s0, learnt)
            if int(self.ctx.oracle.queries[i]) == spent:  # the budget left cannot pay a move
                return
            if found is not None:
                self.best = min(self.best, len(self.backtracking(found).pix))
            weights[k0] = max(0.0, weights[k0] + (s0 - s_end) / self.scale)
            if weights.sum() <= 0:
                weights = self.sal.weights.copy()

    def playout(self, k: int, s: float, w: np.ndarray) -> tuple[float, Move | None]:
        """DFMCS from the clean image: (last score, the changed pixels if an adversarial image was reached)."""
        changed = Move(np.zeros(0, dtype=np.int64), self.flat[:, :0])
        n_cand = 1 if self.a.player2 == "random" else self.a.candidates
        open_ = np.ones(len(w), dtype=bool)  # features that still have pixels to change
        while len(changed.pix) + 1 < self.best and self.affordable(n_cand):
            moves = [changed + m for m in (self.pick(k, changed) for _ in range(n_cand)) if len(m.pix)]
            if not moves:
                open_[k] = False
                if not open_.any():
                    break
                k = int(self.rng.choice(len(w), p=_normalise(w * open_, open_)))
                continue
            scores, adv = self.query(torch.cat([self.image(m) for m in moves]))
            if adv.any() and self.a.player2 != "adversarial":
                j = int(np.flatnonzero(adv)[0])
            else:
                j = int(scores.argmin() if self.a.player2 == "cooperative" else scores.argmax())
            reward = (s - float(scores[j])) / self.scale
            w[k] = max(0.0, w[k] + reward / 5)
            if adv[j]:
                self.track.update(self.image(moves[j]), self.idx, self.ctx.oracle.queries[self.idx.cpu()])
                return float(scores[j]), moves[j]
            if reward >= 0:  # keep the move; a move that helps the true class is reverted
                changed, s = moves[j], float(scores[j])
            k = int(self.rng.choice(len(w), p=_normalise(w * open_, open_)))
        return s, None

    def pick(self, k: int, changed: Move) -> Move:
        """Player II: `visit` new pixels from feature k's Gaussian (up to 5 draws each), skipping pixels already
        changed, each with its manipulated value."""
        out: list[int] = []
        vals: list[torch.Tensor] = []
        taken = set(changed.pix.tolist())
        for _ in range(self.visit):
            for p in self.sal.sample(k, 5, self.rng).tolist():
                v = self.manipulate(p)
                if p not in taken and bool((v != self.flat[:, p]).any()):
                    out.append(p)
                    vals.append(v)
                    taken.add(p)
                    break
        return Move(np.array(out, dtype=np.int64), torch.stack(vals, 1) if vals else self.flat[:, :0])

    def probe(self, s0: float) -> None:
        """Tables (no SIFT): DeepGame's grey-box features — each column set alone to its lower and to its upper
        bound (2 queries per column, when that is at most half the budget left); a column's weight is its larger
        drop of the score, and its manipulation from then on the bound that gave it."""
        n, b = self.n_pix, self.ctx.threat.bounds
        left = self.ctx.oracle.budget_left(self.idx)
        if 2 * n > int(left[0]) // 2:
            return
        lows = [Move(np.array([p]), torch.full_like(self.flat[:, :1], b.low)) for p in range(n)]
        highs = [Move(np.array([p]), torch.full_like(self.flat[:, :1], b.high)) for p in range(n)]
        moves = lows + highs
        scores, adv = self.query(torch.cat([self.image(m) for m in moves]))
        if adv.any():
            j = int(np.flatnonzero(adv)[0])
            self.track.update(self.image(moves[j]), self.idx, self.ctx.oracle.queries[self.idx.cpu()])
            self.best = 1
        drop = s0 - scores.reshape(2, n)
        side = drop.argmax(0)
        for p in range(n):
            self.probed[p] = moves[p + n * int(side[p])].vals[:, 0]
        gain = np.clip(drop.max(0), 0, None) + 1e-3 * max(float(drop.max()), 1e-12) / n  # no column is ruled out
        self.sal.weights = gain / gain.sum()

    def manipulate(self, p: int) -> torch.Tensor:
        """The new value of pixel p: a probed column's best bound, else the farther bound per channel, or a random
        vertex other than its value."""
        if p in self.probed:
            return self.probed[p]
        if self.a.manipulation == "far":
            return self.far[:, p]
        b = self.ctx.threat.bounds
        bits = self.rng.integers(0, 2, self.flat.shape[0])
        v = torch.as_tensor(b.low + b.width * bits, dtype=self.flat.dtype, device=self.flat.device)
        if bool((v == self.flat[:, p]).all()):  # the pixel is that vertex: flip one channel
            c = int(self.rng.integers(0, len(bits)))
            v[c] = b.low + b.high - v[c]
        return v

    def backtracking(self, found: Move) -> Move:
        """Restore pixels in clusters of `backtrack`, then one by one, keeping each restoration that leaves the
        image adversarial; every adversarial image tested feeds the tracker. Never adds a pixel."""
        for size in dict.fromkeys((self.a.backtrack, 1)):
            start = 0
            while start < len(found.pix) and self.affordable():
                trial = found.without(start, start + size)
                img = self.image(trial)
                _, adv = self.query(img)
                if adv[0]:
                    self.track.update(img, self.idx, self.ctx.oracle.queries[self.idx.cpu()])
                    found = trial
                else:
                    start += size
        return found


@dataclass(frozen=True)
class Move:
    """Changed pixels (indices into the flattened pixels) and their new values (channels × pixels)."""

    pix: np.ndarray
    vals: torch.Tensor

    def __add__(self, other: Move) -> Move:
        return Move(np.concatenate([self.pix, other.pix]), torch.cat([self.vals, other.vals], 1))

    def without(self, a: int, b: int) -> Move:
        keep = np.r_[0:a, b:len(self.pix)]
        return Move(self.pix[keep], self.vals[:, torch.as_tensor(keep, dtype=torch.long, device=self.vals.device)])


def _normalise(w: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """w as a distribution; all zero: uniform over the allowed entries (default all)."""
    w = np.clip(w, 0, None)
    if w.sum() > 0:
        return w / w.sum()
    u = np.ones(len(w)) if allowed is None else allowed.astype(np.float64)
    return u / u.sum()
