"""Closed form: on a linear model the minimal perturbation is known, so attacks must break exactly the
examples whose minimal distance is below eps (and, by verification, never one above it)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import linear_model

from robustaudit.attacks.registry import get
from robustaudit.attacks.whitebox.fab import FABT
from robustaudit.models import TorchModel
from robustaudit.threat import ThreatModel

D, K = 20, 10


def minimal_distance(lin: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
    """min over k != y of (z_y - z_k) / ||w_y - w_k||_dual: exact while the box does not bind."""
    w, z = lin.weight.double(), lin(x).double()
    zy = z.gather(1, y[:, None])
    dw = w[y][:, None, :] - w[None]  # [N, K, D]
    dual = dw.abs().sum(2) if norm == "linf" else dw.norm(dim=2)
    ratio = (zy - z) / dual
    ratio.scatter_(1, y[:, None], float("inf"))
    return ratio.min(1).values


def make_problem(k: int) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    lin = linear_model(D, k, seed=1)
    with torch.no_grad():  # boundaries through the middle of the data, so distances straddle eps
        lin.bias -= lin.weight.sum(1) * 0.5
    x = 0.3 + 0.4 * torch.rand(300, D, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = lin(x).argmax(1)
    return lin, x, y


@pytest.fixture(scope="module")
def problem():
    return make_problem(K)


ATTACKS = [("pgd", {"steps": 20}), ("apgd-ce", {"n_iter": 30}), ("apgd-t", {"n_iter": 30}), ("pma", {"steps": 30}),
           ("fab-t", {"n_iter": 20})]


@pytest.mark.parametrize("name,params", ATTACKS)
@pytest.mark.parametrize("k", [2, K])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_breaks_exactly_the_examples_below_eps(k: int, name: str, params: dict, norm: str) -> None:
    """Two classes: every attack must reach the boundary (3% slack: L2 PGD approaches it geometrically). Ten
    classes: untargeted cross-entropy
    spreads its ascent over all classes and can stop short near the boundary (a property of the loss, seen in
    the reference too), so only the margin-type attacks (PMA, APGD-T, FAB-T) are held to 3%."""
    if k == K and name in ("pgd", "apgd-ce"):
        pytest.skip("cross-entropy ascent is not boundary-exact with many classes")
    lin, x, y = make_problem(k)
    with torch.no_grad():
        d = minimal_distance(lin, x, y, norm)
    eps = float(d.median())
    # the box [0,1] never binds: every minimal perturbation stays within 0.3 of x in each coordinate
    assert eps < 0.3
    res = dataclasses.replace(get(name), **params)(TorchModel(lin), x, y, ThreatModel(norm=norm, eps=eps))
    below, above = d < 0.97 * eps, d > eps
    assert int(below.sum()) > 10 and int(above.sum()) > 10
    assert bool(res.success[below].all()), f"{name} missed {int((~res.success[below]).sum())} breakable examples"
    assert not bool(res.success[above].any())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_reaches_the_closed_form_boundary(problem, norm: str) -> None:
    """FAB-T is a minimum-norm attack. Its first target (the 2nd most likely class) succeeds for every
    example, so later targets never run (AutoAttack's semantics): its point must lie within 2% of the
    distance to that class's boundary, and never below the true minimal distance."""
    lin, x, y = problem
    with torch.no_grad():
        d = minimal_distance(lin, x, y, norm)
        z = lin(x).double()
        t = z.sort(1, descending=True).indices[:, 1]
        dw = lin.weight.double()[y] - lin.weight.double()[t]
        dual = dw.abs().sum(1) if norm == "linf" else dw.norm(dim=1)
        d_t = (z.gather(1, y[:, None])[:, 0] - z.gather(1, t[:, None])[:, 0]) / dual
    sel = d_t < 0.25
    res = FABT(n_iter=30, early_stop=False)(TorchModel(lin), x[sel], y[sel], ThreatModel(norm=norm, eps=1.0))
    delta = (res.x_adv - x[sel]).double()
    dist = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bool(res.success.all())
    assert bool((dist <= d_t[sel] * 1.02 + 1e-6).all()), float((dist / d_t[sel]).max())
    assert bool((dist >= d[sel] * (1 - 1e-4)).all())
