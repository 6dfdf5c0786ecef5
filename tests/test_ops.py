"""Losses, schedules, projections: closed forms and the specs' tabulated values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog, minimize

from robustaudit.attacks.score.square import Square, window_side
from robustaudit.errors import InputError
from robustaudit.ops import losses
from robustaudit.ops.lp import ops_for
from robustaudit.ops.planes import step_onto_plane
from robustaudit.ops.schedules import apgd_checkpoints, pma_step, square_p
from robustaudit.types import Bounds, Norm


def test_apgd_checkpoints_match_spec() -> None:
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1000) == [220, 410, 570, 700, 800, 870, 930, 990]


def test_pma_steps_match_spec() -> None:
    table = {0: 1.998, 1: 2.000, 2: 1.998, 25: 1.063, 49: 0.008, 50: 0.002, 51: 2.000, 52: 1.998, 75: 1.063,
             99: 0.008}
    for i, v in table.items():
        assert round(pma_step(i, 100, 1.0), 3) == v


def test_square_window_sides_match_spec() -> None:
    phases = [5, 30, 100, 300, 700, 1500, 3000, 4999]
    assert [window_side(Norm.LINF, square_p(i, 0.8), 32, 32) for i in phases] == [29, 20, 14, 10, 7, 5, 4, 3]
    assert [window_side(Norm.L2, square_p(i, 0.8), 32, 32) for i in phases] == [29, 21, 15, 11, 7, 5, 5, 3]
    assert [window_side(Norm.LINF, square_p(i, 0.8), 224, 224) for i in phases] == [200, 142, 100, 71, 50, 35,
                                                                                       25, 18]
    # rescaled to a 10,000-query schedule: iteration 99 of 100 reads as 9,900
    assert square_p(0, 0.8, n_iters=100) == 0.8 and square_p(99, 0.8, n_iters=100) == 0.8 / 2**9
    assert Square().n_queries == 5001


def _rand_logits(seed: int, n: int = 64, k: int = 10) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def test_pm_properties() -> None:
    z = _rand_logits(0)
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    pm = losses.pm(z, y)
    assert torch.equal(pm.sign(), (-losses.margin(z, y)).sign())
    assert torch.allclose(losses.pm(z + 5.0, y), pm)
    assert bool((pm > -1).all() and (pm < 1).all())
    assert not torch.allclose(losses.pm(2 * z, y), pm)


def test_pm_gradient_identity() -> None:
    z = _rand_logits(2).requires_grad_(True)
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(3))
    p = z.softmax(1).detach()
    m = p.scatter(1, y[:, None], -1).argmax(1)
    (g_pm,) = torch.autograd.grad(losses.pm(z, y).sum(), z)
    (g_ce,) = torch.autograd.grad(losses.ce(z, y).sum(), z)
    (g_lm,) = torch.autograd.grad(torch.log_softmax(z, 1).gather(1, m[:, None]).sum(), z)
    py, pm = p.gather(1, y[:, None]), p.gather(1, m[:, None])
    assert (g_pm - (py * g_ce + pm * g_lm)).abs().max() < 1e-6


def test_dlr_invariance_and_guards() -> None:
    z = _rand_logits(4)
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(5))
    t = (y + 1) % 10
    assert torch.allclose(losses.dlr(3 * z + 2, y), losses.dlr(z, y))
    assert torch.allclose(losses.dlr_targeted(3 * z + 2, y, t), losses.dlr_targeted(z, y, t))
    assert torch.equal(losses.dlr(z, y) > 0, z.argmax(1) != y)
    assert bool((losses.dlr(z, y) >= -1 - 1e-9).all())
    with pytest.raises(InputError):
        losses.dlr(z[:, :2], y.clamp(max=1))
    with pytest.raises(InputError):
        losses.dlr_targeted(z[:, :3], y.clamp(max=2), t.clamp(max=2))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["linf", "l2"]), st.floats(0.01, 2.0))
def test_projection_inside_ball_and_bounds(seed: int, norm: str, eps: float) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(8, 3, 5, 5, generator=g)
    u = x + torch.randn(8, 3, 5, 5, generator=g) * 3
    ops = ops_for(Norm(norm))
    p = ops.project(u, x, eps, Bounds())
    assert bool((p >= 0).all() and (p <= 1).all())
    assert bool((ops.distance(p.double(), x.double()) <= eps + 1e-6).all())
    # a point already inside both is unchanged
    inside = ops.project(x + 0.5 * (p - x), x, eps, Bounds())
    assert torch.allclose(inside, x + 0.5 * (p - x), atol=1e-6)


@pytest.mark.parametrize("norm", [Norm.LINF, Norm.L2])
def test_plane_step_is_the_minimal_norm_step_inside_the_box(norm: Norm) -> None:
    g = torch.Generator().manual_seed(0)
    d = 6
    for _ in range(20):
        u = torch.rand(1, d, generator=g, dtype=torch.float64)
        w = torch.randn(1, d, generator=g, dtype=torch.float64)
        w[0, 0] = 0.0  # a free coordinate that must not move
        b = (w * torch.rand(1, d, generator=g, dtype=torch.float64)).sum(1)  # the plane meets the box
        step = step_onto_plane(u, w, b, Bounds(), norm)[0].numpy()
        un, wn, bn = u[0].numpy(), w[0].numpy(), float(b)
        assert abs(wn @ (un + step) - bn) < 1e-9
        assert np.all(un + step >= -1e-12) and np.all(un + step <= 1 + 1e-12)
        assert step[0] == 0.0
        if norm == Norm.LINF:  # LP: min t s.t. -t <= d_i <= t, <w, u + d> = b, 0 <= u + d <= 1
            c = np.r_[np.zeros(d), 1.0]
            a_ub = np.block([[np.eye(d), -np.ones((d, 1))], [-np.eye(d), -np.ones((d, 1))]])
            res = linprog(c, A_ub=a_ub, b_ub=np.zeros(2 * d), A_eq=np.r_[wn, 0.0][None], b_eq=[bn - wn @ un],
                          bounds=[(-ui, 1 - ui) for ui in un] + [(0, None)])
            assert abs(np.abs(step).max() - res.fun) < 1e-7
        else:
            def on_plane(v: np.ndarray, wn: np.ndarray = wn, un: np.ndarray = un, bn: float = bn) -> float:
                return float(wn @ (un + v) - bn)

            res = minimize(lambda v: v @ v, np.zeros(d), constraints=[{"type": "eq", "fun": on_plane}],
                           bounds=[(-ui, 1 - ui) for ui in un], method="SLSQP", options={"ftol": 1e-14})
            assert abs(np.linalg.norm(step) - np.sqrt(res.fun)) < 1e-5


def test_plane_missing_the_box_goes_to_the_nearest_corner() -> None:
    u = torch.full((1, 3), 0.5, dtype=torch.float64)
    w = torch.ones(1, 3, dtype=torch.float64)
    step = step_onto_plane(u, w, torch.tensor([10.0], dtype=torch.float64), Bounds(), Norm.LINF)
    assert torch.allclose(u + step, torch.ones(1, 3, dtype=torch.float64))
