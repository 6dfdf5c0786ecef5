"""Convex training of two-layer ReLU networks, standard and adversarially robust (Pilanci & Ergen, ICML 2020;
Bai, Gautam & Sojoudi, SIMODS 2022; Mishkin, Sahiner & Pilanci 2022). Spec defence-training.md, Part B.

Network f(x) = Σ_j (x̃ᵀu_j)_+ α_j on standardised features x̃ = [(x - μ)/σ, 1] (the last entry is the bias).
With sign patterns D_i = diag(1[X̃ g_i ≥ 0]) of sampled gates g_i (Gaussian, plus the all-ones pattern, which
makes a linear part available), training with weight decay β/2 (‖u‖² + α²) is the convex program

    min  (1/n) Σ_k Σ_c ( 1 - y_kc ŷ_kc + ε·r_kc )_+  +  β Σ_{c,i} ( ‖v_ci‖₂ + ‖w_ci‖₂ )
    s.t. (2D_i - I) X̃ v_ci ≥ 0,  (2D_i - I) X̃ w_ci ≥ 0          ŷ_kc = Σ_i d_ik x̃_kᵀ (v_ci - w_ci)

one output per class against the rest (one output for two classes), y_kc = ±1. The recovered neurons are
u = v/√‖v‖, α = +√‖v‖ and u = w/√‖w‖, α = -√‖w‖: the network's objective equals the program's optimum.

Robust version (Linf radius ε on the raw inputs, i.e. ε/σ per standardised feature; derived here, the bias
excluded from the norms). ReLU is monotone, so in the ball a neuron helping example k's label loses at most
ε‖u‖₁ where it is active at x_k and nothing where it is off, and a neuron opposing it gains at most ε‖u‖₁
(active) or ε‖u‖₁ from zero (off, since x̃_kᵀu ≤ 0). Hence
    r_kc = Σ_i [ d_ik ‖a_ci‖₁ + ‖b_ci‖₁ ],   (a, b) = (v, w) when y_kc = +1, (w, v) when y_kc = -1,
a convex upper bound of the recovered network's worst-case hinge loss for every training point. The spec's
pattern-robust constraints ((2d_ik - 1) x̃_kᵀv - ε‖v‖₁ ≥ 0) admit only v = 0 on real data (measured on breast
cancer at ε = 0.05: no neuron survives), so they are not used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from robustaudit.errors import InputError
from robustaudit.extras import require

log = logging.getLogger(__name__)
SOLVERS = ("clarabel", "scs")


@dataclass(frozen=True)
class TwoLayer:
    """A two-layer ReLU network in standardised coordinates: hidden weights `u` (m, d+1; last column the bias),
    output weights `a` (m, outputs); `mean`/`scale` map raw inputs to standardised ones."""

    u: np.ndarray
    a: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    classes: int

    @property
    def width(self) -> int:
        return int(self.u.shape[0])

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """ŷ (n, outputs) in float64."""
        return np.maximum(features(x, self.mean, self.scale) @ self.u.T, 0.0) @ self.a

    def objective(self, x: np.ndarray, y: np.ndarray, beta: float, eps: float = 0.0) -> float:
        """The non-convex training objective: mean summed hinge (its robust bound at Linf `eps`) + β/2 (‖U‖² +
        ‖A‖²)."""
        return float(self.robust_hinge(x, y, eps).mean() + beta / 2 * ((self.u ** 2).sum() + (self.a ** 2).sum()))

    def robust_hinge(self, x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
        """Per example, the upper bound of the worst-case hinge loss over the Linf ball of radius eps (summed
        over outputs; see the module docstring)."""
        z = features(x, self.mean, self.scale)
        t = signs(y, self.classes)
        l1 = np.abs(self.u[:, :-1] / self.scale).sum(1)  # ‖u‖₁ weighted by 1/σ: the raw-input ball
        active = (z @ self.u.T) > 0
        out = np.maximum(z @ self.u.T, 0.0) @ self.a
        bound = np.zeros_like(out)
        for c in range(self.a.shape[1]):
            helps = np.sign(self.a[:, c])[None, :] * t[:, c:c + 1] > 0  # (n, m)
            weight = np.abs(self.a[:, c]) * l1
            bound[:, c] = ((helps & active) * weight).sum(1) + ((~helps) * weight).sum(1)
        return hinge(out, t, eps * bound).sum(1)

    def module(self) -> nn.Module:
        """The network on raw inputs as a torch module (float32): Flatten, Linear, ReLU, Linear; two classes give
        the logits (-ŷ/2, ŷ/2)."""
        w1 = self.u[:, :-1] / self.scale
        b1 = self.u[:, -1] - w1 @ self.mean
        head = np.concatenate([-self.a / 2, self.a / 2], 1) if self.classes == 2 else self.a
        hidden, last = nn.Linear(w1.shape[1], self.width), nn.Linear(self.width, head.shape[1], bias=False)
        with torch.no_grad():
            hidden.weight.copy_(torch.from_numpy(w1))
            hidden.bias.copy_(torch.from_numpy(b1))
            last.weight.copy_(torch.from_numpy(head.T.copy()))
        return nn.Sequential(nn.Flatten(), hidden, nn.ReLU(), last).eval()


@dataclass(frozen=True)
class ConvexResult:
    network: TwoLayer
    optimum: float  # the convex program's optimal value
    patterns: int
    solver: str
    status: str
    seconds: float
    dual_ratio: float | None  # standard program: max |λᵀ(Zu)_+| / β the pattern search found; <= 1: none improves


def features(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """[(x - μ)/σ, 1] in float64."""
    z = (x.reshape(len(x), -1).astype(np.float64) - mean) / scale
    return np.concatenate([z, np.ones((len(z), 1))], 1)


def _standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows flattened to float64, with the per-feature mean and standard deviation (1 where a feature is
    constant)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    scale = x.std(0)
    return x, x.mean(0), np.where(scale > 0, scale, 1.0)


def signs(y: np.ndarray, classes: int) -> np.ndarray:
    """±1 targets: one column (class 1 is +1) for two classes, one per class against the rest otherwise."""
    y = np.asarray(y)
    if classes == 2:
        return (2.0 * (y == 1) - 1.0)[:, None]
    return 2.0 * (y[:, None] == np.arange(classes)[None, :]) - 1.0


def hinge(out: np.ndarray, t: np.ndarray, slack: np.ndarray | float = 0.0) -> np.ndarray:
    return np.maximum(1.0 - t * out + slack, 0.0)


def sample_patterns(z: np.ndarray, count: int, seed: int, gates: np.ndarray | None = None) -> np.ndarray:
    """Distinct, non-empty sign patterns (n, P): the all-ones pattern, those of `gates` (rows: hidden weights of a
    trained network) and those of `count` Gaussian gates."""
    g = np.random.default_rng(seed).standard_normal((z.shape[1], count))
    if gates is not None:
        g = np.concatenate([gates.T, g], 1)
    d = np.concatenate([np.ones((len(z), 1)), (z @ g >= 0).astype(np.float64)], 1)
    return _unique(d)


def solve(x: np.ndarray, y: np.ndarray, classes: int, *, eps: float = 0.0, beta: float = 1e-3, patterns: int = 32,
          seed: int = 0, solver: str = "clarabel", warm: TwoLayer | None = None, rounds: int = 0,
          grow: int = 16) -> ConvexResult:
    """Globally optimal training of a two-layer ReLU network over the sampled patterns (robust when eps > 0) with
    cvxpy and a conic solver (Clarabel: interior point, accurate; SCS: first order, for larger problems). `warm`:
    a network trained on the same data whose neurons' patterns join the sampled ones, so that (two classes) the
    optimum is never worse than that network's objective: each of its neurons is a feasible block. `rounds` of
    pattern search (column generation on the standard program's dual) add up to `grow` patterns each; the standard
    program reports the largest dual ratio the search finds at its optimum."""
    require("cvxpy", "convex training")
    x, mean, scale = _standardisation(x)
    y = np.asarray(y)
    if not np.isfinite(x).all():
        raise InputError("convex training: the data holds NaN or infinite values")
    if classes < 2 or y.min() < 0 or y.max() >= classes:
        raise InputError(f"convex training needs labels in 0..{classes - 1} and at least 2 classes")
    if patterns < 1 or eps < 0 or beta <= 0 or rounds < 0:
        raise InputError(f"--patterns must be >= 1, eps >= 0, --reg (β) > 0 and --rounds >= 0, got {patterns}, "
                         f"{eps}, {beta}, {rounds}")
    if solver not in SOLVERS:
        raise InputError(f"--solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    z = features(x, mean, scale)
    d = sample_patterns(z, patterns, seed, None if warm is None else warm.u)
    size = 2 * d.size * z.shape[1] * (1 if classes == 2 else classes)  # nonzeros of the pattern constraints
    if size > 5e7:
        log.warning("the convex program has %.1e constraint nonzeros (%d rows, %d patterns): %s may take long; "
                    "fewer rows, --patterns or --warm, or --solver scs", size, len(z), d.shape[1], solver)
    t = signs(y, classes)
    e = np.concatenate([eps / scale, [0.0]])
    start = time.perf_counter()
    gap = None
    for r in range(rounds):
        *_, duals = _program(z, t, d, np.zeros_like(e), beta, solver)
        gates, gap = _improving_gates(z, duals, beta, grow, seed + r)
        if len(gates) == 0:
            break
        d = _unique(np.concatenate([d, (z @ gates.T >= 0).astype(np.float64)], 1))
    vs, ws, value, status, duals = _program(z, t, d, e, beta, solver)
    if eps == 0:
        gap = _improving_gates(z, duals, beta, grow, seed + rounds)[1]
    u, a = _recover(vs, ws)
    return ConvexResult(TwoLayer(u, a, mean, scale, classes), value, d.shape[1], solver, status,
                        time.perf_counter() - start, gap)


def _unique(d: np.ndarray) -> np.ndarray:
    d = d[:, d.any(0)]
    _, first = np.unique(d, axis=1, return_index=True)
    return d[:, np.sort(first)]


def _program(z: np.ndarray, t: np.ndarray, d: np.ndarray, e: np.ndarray, beta: float, solver: str,
             ) -> tuple[list[np.ndarray], list[np.ndarray], float, str, np.ndarray]:
    """Solve the (robust when e > 0) program on patterns d: the blocks v, w per output, the optimum, the status
    and the dual λ = -∂loss/∂ŷ (n, outputs)."""
    import cvxpy as cp

    n, p = d.shape
    sides = 2 * d - 1
    vs = [cp.Variable((p, z.shape[1])) for _ in range(t.shape[1])]
    ws = [cp.Variable((p, z.shape[1])) for _ in range(t.shape[1])]
    outs = [cp.Variable(n) for _ in range(t.shape[1])]
    terms, cons, links = [], [], []
    for c, (v, w, out) in enumerate(zip(vs, ws, outs, strict=True)):
        links.append(out == cp.sum(cp.multiply(d, z @ (v - w).T), axis=1))
        slack: Any = 0.0
        if e.any():
            pos = (t[:, c] > 0).astype(np.float64)
            l1v, l1w = cp.abs(v) @ e, cp.abs(w) @ e
            slack = cp.multiply(pos, d @ l1v + cp.sum(l1w)) + cp.multiply(1 - pos, d @ l1w + cp.sum(l1v))
        terms.append(cp.sum(cp.pos(1 - cp.multiply(t[:, c], out) + slack)) / n)
        terms.append(beta * (cp.sum(cp.norm(v, 2, axis=1)) + cp.sum(cp.norm(w, 2, axis=1))))
        cons += [cp.multiply(sides, z @ v.T) >= 0, cp.multiply(sides, z @ w.T) >= 0]
    problem = cp.Problem(cp.Minimize(cp.sum(terms)), cons + links)
    try:
        problem.solve(solver=solver.upper())
    except cp.error.SolverError as err:
        raise InputError(f"the {solver} solver failed ({err}); try --solver scs or fewer --patterns") from None
    if problem.status not in ("optimal", "optimal_inaccurate") or vs[0].value is None:
        raise InputError(f"the convex program ended {problem.status}; try another --solver")
    duals = np.stack([np.asarray(link.dual_value, dtype=np.float64).reshape(n) for link in links], 1)
    vv, wv = [np.asarray(v.value) for v in vs], [np.asarray(w.value) for w in ws]
    # the sign convention of the dual: an active block v satisfies λᵀ D Z v / ‖v‖ = +β at the optimum
    c, i = max(((c, int(np.linalg.norm(v, axis=1).argmax())) for c, v in enumerate(vv)),
               key=lambda ci: np.linalg.norm(vv[ci[0]][ci[1]]))
    if float(duals[:, c] @ (d[:, i] * (z @ vv[c][i]))) < 0:
        duals = -duals
    return vv, wv, float(problem.value), str(problem.status), duals


def _improving_gates(z: np.ndarray, duals: np.ndarray, beta: float, grow: int, seed: int,
                     starts: int = 256, steps: int = 200) -> tuple[np.ndarray, float]:
    """Directions u whose pattern would lower the objective: |λ_cᵀ (Z u)_+| > β‖u‖ (the optimality condition of
    the problem over every pattern, Pilanci & Ergen). Searched by gradient ascent on ±λ_cᵀ(Z u)_+ / ‖u‖ from random
    starts; returns up to `grow` of them (rows) and the largest ratio found (<= 1: no improving pattern found)."""
    zt = torch.from_numpy(z)
    g = torch.Generator().manual_seed(seed)
    found, best = [], 0.0
    for c in range(duals.shape[1]):
        for sign in (1.0, -1.0):
            lam = torch.from_numpy(sign * duals[:, c])
            u = torch.randn(z.shape[1], starts, generator=g, dtype=torch.float64).requires_grad_()
            opt = torch.optim.Adam([u], lr=0.05)
            for _ in range(steps):
                opt.zero_grad()
                score = lam @ torch.relu(zt @ u) / u.norm(dim=0)
                (-score.sum()).backward()
                opt.step()
            with torch.no_grad():
                score = (lam @ torch.relu(zt @ u) / u.norm(dim=0)).numpy() / beta
            best = max(best, float(score.max()))
            for j in np.argsort(-score)[:grow]:
                if score[j] > 1 + 1e-3:
                    found.append((score[j], u[:, j].detach().numpy()))
    found.sort(key=lambda sv: -sv[0])
    rows = [v for _, v in found[:grow]]
    return (np.stack(rows) if rows else np.zeros((0, z.shape[1]))), best


def _recover(vs: list[np.ndarray], ws: list[np.ndarray], tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Neurons u = v/√‖v‖ with α = √‖v‖ (and -√‖w‖ for w) on their output; blocks of norm <= tol dropped."""
    rows, heads = [], []
    for c, (v, w) in enumerate(zip(vs, ws, strict=True)):
        for block, sign in ((v, 1.0), (w, -1.0)):
            norms = np.linalg.norm(block, axis=1)
            for row, r in zip(block, norms, strict=True):
                if r > tol:
                    rows.append(row / np.sqrt(r))
                    head = np.zeros(len(vs))
                    head[c] = sign * np.sqrt(r)
                    heads.append(head)
    if not rows:
        return np.zeros((0, vs[0].shape[1])), np.zeros((0, len(vs)))
    return np.stack(rows), np.stack(heads)


def train_nonconvex(x: np.ndarray, y: np.ndarray, classes: int, *, width: int, beta: float = 1e-3, seed: int = 0,
                    steps: int = 3000, lr: float = 1e-2) -> TwoLayer:
    """The baseline the convex program is compared with: the same network and objective (hinge + β/2 weight
    decay, dense output layer) trained by full-batch Adam from a random start (float64)."""
    x, mean, scale = _standardisation(x)
    z = torch.from_numpy(features(x, mean, scale))
    t = torch.from_numpy(signs(y, classes))
    g = torch.Generator().manual_seed(seed)
    u = (torch.randn(width, z.shape[1], generator=g, dtype=torch.float64) / np.sqrt(z.shape[1])).requires_grad_()
    a = (torch.randn(width, t.shape[1], generator=g, dtype=torch.float64) / np.sqrt(width)).requires_grad_()
    opt = torch.optim.Adam([u, a], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        out = torch.relu(z @ u.T) @ a
        loss = torch.relu(1 - t * out).sum(1).mean() + beta / 2 * ((u ** 2).sum() + (a ** 2).sum())
        loss.backward()
        opt.step()
        sched.step()
    return TwoLayer(u.detach().numpy(), a.detach().numpy(), mean, scale, classes)
