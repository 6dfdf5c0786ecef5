"""The image-scaling (camouflage) attack, strong form: Xiao et al., USENIX Security 2019, Algorithm 2, solved as
Quiring et al. (USENIX Security 2020) do, one quadratic program per column and then per row (spec §1.2).

Threat model: the attacker controls the full-size image fed to a pipeline that downscales it with a known
library and interpolation; no access to the model. Goal: A close to the source S while scale(A) is close to T.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import osqp
import scipy.sparse as sp

from robustaudit.errors import InputError
from robustaudit.scaling.quality import psnr, ssim
from robustaudit.scaling.scalers import Scaler, as_image, considered_share

_SOLVED = {osqp.SolverStatus.OSQP_SOLVED, osqp.SolverStatus.OSQP_SOLVED_INACCURATE}
# Above this share of pixels changed by more than 2 grey levels, A is another image, not the source with a
# hidden layer (spec §2: 6-70% for the vulnerable scalers, 96-98% for area scaling).
MAX_CHANGED = 0.9


@dataclass(frozen=True)
class ScalingAttackResult:
    """The attack image and how well it does both jobs."""

    image: np.ndarray  # uint8, the source's shape
    scaled: np.ndarray  # the scaler's own output for `image`
    target_linf: float  # max |scale(A) - T| in grey levels
    target_psnr: float
    source_psnr: float
    source_ssim: float
    changed: float  # share of pixels changed by more than 2 grey levels
    bound: float  # the spec's bound on target_linf when every QP was solved
    unsolved: int  # columns/rows whose QP had no solution at any eps (solved with a penalty instead)
    considered: float  # share of source pixels the scaler reads
    success: bool
    message: str

    def to_json(self) -> dict[str, float | int | bool | str]:
        keys = ("target_linf", "target_psnr", "source_psnr", "source_ssim", "changed", "bound", "unsolved",
                "considered", "success", "message")
        return {k: getattr(self, k) for k in keys}


class _LineQP:
    """min ½||a − s||²  s.t.  |C a − t| <= eps,  0 <= a <= 255, for many (s, t) sharing C: set up once, updated."""

    def __init__(self, c: np.ndarray) -> None:
        self.c = c
        k = c.shape[1]
        self.box_lo, self.box_hi = np.zeros(k), np.full(k, 255.0)
        self.solver = osqp.OSQP()
        self.solver.setup(sp.identity(k, format="csc"), np.zeros(k),
                          sp.vstack([sp.csc_matrix(c), sp.identity(k)], format="csc"),
                          np.concatenate([np.full(c.shape[0], -np.inf), self.box_lo]),
                          np.concatenate([np.full(c.shape[0], np.inf), self.box_hi]),
                          verbose=False, polishing=False, eps_abs=1e-4, eps_rel=1e-4, max_iter=20000)
        self._penalty: osqp.OSQP | None = None

    def solve(self, s: np.ndarray, t: np.ndarray, eps: Sequence[float]) -> tuple[np.ndarray, bool]:
        for e in eps:
            self.solver.update(q=-s, l=np.concatenate([t - e, self.box_lo]), u=np.concatenate([t + e, self.box_hi]))
            r = self.solver.solve(raise_error=False)
            if r.info.status_val in {int(v) for v in _SOLVED}:
                return np.asarray(r.x), True
        return self._closest(s, t), False

    def _closest(self, s: np.ndarray, t: np.ndarray, weight: float = 100.0) -> np.ndarray:
        """No eps works: min ½||a − s||² + (w/2)||C a − t||² in the box, to report how close the attack gets."""
        k = self.c.shape[1]
        if self._penalty is None:
            self._penalty = osqp.OSQP()
            p = sp.identity(k, format="csc") + weight * sp.csc_matrix(self.c.T @ self.c)
            self._penalty.setup(sp.triu(p, format="csc"), np.zeros(k), sp.identity(k, format="csc"), self.box_lo,
                                self.box_hi, verbose=False, polishing=False, eps_abs=1e-4, eps_rel=1e-4)
        self._penalty.update(q=-s - weight * self.c.T @ t)
        return np.asarray(self._penalty.solve(raise_error=False).x)


def _solve_lines(lines: np.ndarray, c: np.ndarray, targets: np.ndarray, eps: Sequence[float]) -> tuple[np.ndarray, int]:
    """Solve one QP per column of `lines` (against the same column of `targets`); rounded to integers."""
    qp = _LineQP(c)
    out = np.empty_like(lines)
    failed = 0
    for j in range(lines.shape[1]):
        out[:, j], ok = qp.solve(lines[:, j], targets[:, j], eps)
        failed += not ok
    return np.clip(np.round(out), 0, 255), failed


def scaling_attack(source: np.ndarray, target: np.ndarray, scaler: Scaler, *,
                   eps: float | Sequence[float] = 1.0, max_changed: float = MAX_CHANGED) -> ScalingAttackResult:
    """Craft A ≈ `source` with scaler.resize(A, target size) ≈ `target` (uint8 images, HxW or HxWxC).

    `eps` (grey levels) may be a list of increasing tolerances, tried in turn per column/row. The result reports
    success only if the scaled image is within the spec's bound of the target and at most `max_changed` of the
    pixels moved by more than 2 grey levels; otherwise its message says why (e.g. a scaler that reads every
    source pixel is not vulnerable).
    """
    s, t = as_image(source, "source").astype(np.float64), as_image(target, "target").astype(np.float64)
    tol = sorted([float(eps)] if isinstance(eps, int | float) else [float(e) for e in eps])
    if not tol or tol[0] < 0:
        raise InputError(f"eps must be one or more non-negative grey-level tolerances, got {eps!r}")
    if s.ndim == 3 and t.ndim == 2:
        t = np.repeat(t[:, :, None], s.shape[2], axis=2)
    if s.ndim != t.ndim or (s.ndim == 3 and s.shape[2] != t.shape[2]):
        raise InputError(f"source {s.shape} and target {t.shape} must have the same number of channels")
    (m, n), (mp, nq) = s.shape[:2], t.shape[:2]
    if mp > m or nq > n or (mp, nq) == (m, n):
        raise InputError(f"the target ({mp}x{nq}) must be smaller than the source ({m}x{n}): the attack hides it "
                         "in a downscale")
    cl, cr = scaler.matrices((m, n), (mp, nq))
    s3, t3 = (s, t) if s.ndim == 3 else (s[:, :, None], t[:, :, None])
    attack = np.empty_like(s3)
    unsolved = 0
    for ch in range(s3.shape[2]):
        vertical, f1 = _solve_lines(s3[:, :, ch] @ cr, cl, t3[:, :, ch], tol)  # m × n': columns of the half-scaled
        rows, f2 = _solve_lines(s3[:, :, ch].T, cr.T, vertical.T, tol)  # then each row of S towards it
        attack[:, :, ch] = rows.T
        unsolved += f1 + f2
    image = attack.astype(np.uint8).reshape(source.shape)
    scaled = scaler.resize(image, (mp, nq))
    diff = np.abs(scaled.astype(np.float64) - t.reshape(scaled.shape))
    lcl, lcr = np.abs(cl).sum(axis=1).max(), np.abs(cr).sum(axis=0).max()
    bound = float(lcl * (tol[-1] + lcr / 2) + tol[-1] + lcl / 2 + 0.5)
    share = considered_share(cl, cr)
    target_linf, target_psnr = float(diff.max()), psnr(t.reshape(scaled.shape), scaled)
    source_psnr = psnr(s.reshape(image.shape), image)
    reached = unsolved == 0 and target_linf <= bound
    moved = np.abs(image.astype(np.float64) - s.reshape(image.shape)) > 2
    changed = float((moved.any(axis=2) if moved.ndim == 3 else moved).mean())
    hidden = changed <= max_changed
    why = f"{scaler.name} reads {share:.0%} of the source pixels when scaling {m}x{n} to {mp}x{nq}"
    if reached and hidden:
        message = f"attack succeeded: {why}"
    elif not reached:
        message = (f"{scaler.name} is not vulnerable here: {unsolved} column/row programs had no solution within "
                   f"eps={tol[-1]:g}; {why}; the closest attack image scales to "
                   f"{target_psnr:.1f} dB PSNR of the target")
    else:
        message = (f"{scaler.name} is not vulnerable here: reaching the target changes {changed:.0%} of the pixels "
                   f"({source_psnr:.1f} dB PSNR to the source), so the attack image is another image; {why}")
    return ScalingAttackResult(image=image, scaled=scaled, target_linf=target_linf, target_psnr=target_psnr,
                               source_psnr=source_psnr, source_ssim=ssim(s.reshape(image.shape), image),
                               changed=changed, bound=bound, unsolved=unsolved, considered=share,
                               success=reached and hidden, message=message)
