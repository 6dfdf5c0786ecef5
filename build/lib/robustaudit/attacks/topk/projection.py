"""QuadAttack's quadratic program (spec gradient-attacks.md §8.2): project features h onto the polyhedron of
features whose logits W z + b rank the targets t_1 > ... > t_K first, in order, above every other class, by a
margin m. Solved exactly per example with OSQP (set up once per example, only h changes between iterations).

    z* = argmin ½||z − h||²   s.t.  C (W z + b) >= m
    rows of C: e_{t_i} − e_{t_{i+1}} (i < K) and e_{t_K} − e_c (c not in T): N − 1 constraints
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from robustaudit.extras import require


def order_constraints(targets: list[int], n_classes: int) -> np.ndarray:
    """C, (N−1)×N: the logit differences that must be >= the margin for this ordered target list."""
    rest = [c for c in range(n_classes) if c not in targets]
    c = np.zeros((n_classes - 1, n_classes))
    for i in range(len(targets) - 1):
        c[i, targets[i]], c[i, targets[i + 1]] = 1.0, -1.0
    for j, other in enumerate(rest, start=len(targets) - 1):
        c[j, targets[-1]], c[j, other] = 1.0, -1.0
    return c


class TopKProjection:
    """One OSQP problem per example (fixed W, b, targets); `project(h)` re-solves with new features."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor, margin: float = 0.2) -> None:
        osqp = require("osqp", "QuadAttack's projection (topk)", extra="topk")
        self._solved = {int(osqp.SolverStatus.OSQP_SOLVED), int(osqp.SolverStatus.OSQP_SOLVED_INACCURATE)}
        w, b = weight.detach().cpu().double().numpy(), bias.detach().cpu().double().numpy()
        self.dim = w.shape[1]
        self.solvers: list[Any] = []
        for t in targets.tolist():
            c = order_constraints(t, w.shape[0])
            s = osqp.OSQP()
            s.setup(sp.identity(self.dim, format="csc"), np.zeros(self.dim), sp.csc_matrix(c @ w),
                    margin - c @ b, np.full(len(c), np.inf), verbose=False, polishing=False, eps_abs=1e-6,
                    eps_rel=1e-6, max_iter=10000)
            self.solvers.append(s)

    def project(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z*, solved) per example; where the QP is infeasible or unsolved, z* = h and solved = False."""
        hs = h.detach().cpu().double().numpy()
        z = hs.copy()
        solved = np.zeros(len(hs), dtype=bool)
        for i, s in enumerate(self.solvers):
            s.update(q=-hs[i])
            r = s.solve(raise_error=False)
            if r.info.status_val in self._solved:
                z[i], solved[i] = r.x, True
        return torch.from_numpy(z).to(h), torch.from_numpy(solved)
