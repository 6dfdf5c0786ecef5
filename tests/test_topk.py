"""Ordered top-K attacks: the QP against a direct solve, the success test, and QuadAttack on real digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import linear_model
from scipy.optimize import minimize
from torch import nn
from typer.testing import CliRunner

from robustaudit.attacks.topk import CWK, AdversarialDistillation, FeatureSplit, QuadAttack, ordered_topk_success
from robustaudit.attacks.topk.projection import TopKProjection, order_constraints
from robustaudit.cli import app
from robustaudit.errors import InputError
from robustaudit.run.topk import load_targets, random_targets, topk_audit

runner = CliRunner()


def test_constraint_rows_follow_the_spec_example() -> None:
    c = order_constraints([5, 2, 6], 8)
    assert c.shape == (7, 8)
    assert c[0].tolist() == [0, 0, -1, 0, 0, 1, 0, 0] and c[1].tolist() == [0, 0, 1, 0, 0, 0, -1, 0]
    others = {tuple(np.flatnonzero(r)) for r in c[2:]}
    assert others == {(0, 6), (1, 6), (3, 6), (4, 6), (6, 7)}


def test_projection_matches_a_direct_solve_on_a_linear_model() -> None:
    """features = input: the QP's answer equals SLSQP's on the same problem, and satisfies the constraints."""
    lin = linear_model(12, 6, seed=4)
    w, b = lin.weight.detach().double(), lin.bias.detach().double()
    h = torch.randn(3, 12, generator=torch.Generator().manual_seed(1)).double()
    targets = torch.tensor([[3, 1], [0, 5], [2, 4]])
    z, solved = TopKProjection(w, b, targets, margin=0.2).project(h)
    assert bool(solved.all())
    for i, t in enumerate(targets.tolist()):
        c = order_constraints(t, 6)
        a, rhs = c @ w.numpy(), 0.2 - c @ b.numpy()
        ref = minimize(lambda v, h0=h[i].numpy(): 0.5 * ((v - h0) ** 2).sum(), h[i].numpy(), method="SLSQP",
                       constraints=[{"type": "ineq", "fun": lambda v, a=a, rhs=rhs: a @ v - rhs}],
                       options={"ftol": 1e-12, "maxiter": 500}).x
        np.testing.assert_allclose(z[i].numpy(), ref, atol=1e-4)
        logits = w @ z[i] + b
        assert logits.argsort(descending=True)[:2].tolist() == t
        assert float((torch.from_numpy(c) @ logits).min()) >= 0.2 - 1e-4


def test_infeasible_qps_are_failures_never_successes() -> None:
    """Two classes with identical weight rows can never be separated: every QP is infeasible."""
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight[1] = lin.weight[0]
        lin.bias[1] = lin.bias[0]
    split = FeatureSplit(nn.Sequential(lin))
    x = torch.rand(5, 4)
    r = QuadAttack(steps=10)(split, x, torch.tensor([[0, 1]] * 5))
    assert not bool(r.success.any()) and bool((r.unsolved == 10).all())
    assert torch.equal(r.x_adv, x)


def test_success_needs_the_exact_order() -> None:
    z = torch.tensor([[5.0, 4.0, 3.0, 0.0], [4.0, 5.0, 3.0, 0.0], [5.0, 4.0, 4.0, 0.0]])
    t = torch.tensor([[0, 1], [0, 1], [0, 1]])
    assert ordered_topk_success(z, t).tolist() == [True, False, False]  # wrong order; a tie with the rest


def test_split_finds_the_final_linear_layer_and_checks_it(trained_cnn: nn.Module) -> None:
    split = FeatureSplit(trained_cnn)
    h, z = split.features_and_logits(torch.rand(3, 1, 8, 8))
    assert h.shape == (3, 128) and z.shape == (3, 10)
    split.check(torch.rand(3, 1, 8, 8))
    with pytest.raises(InputError, match="no nn.Linear"):
        FeatureSplit(nn.Sequential(nn.Flatten()))
    bad = FeatureSplit(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)))
    with pytest.raises(InputError, match="not W h"):
        bad.check(torch.rand(2, 4))


def test_quadattack_beats_the_baselines_on_digits(digits8: tuple[torch.Tensor, torch.Tensor],
                                                  trained_cnn: nn.Module) -> None:
    x, y = digits8
    x, y = x[1500:1530], y[1500:1530]
    attacks = [cls(steps=40, lr=0.05) for cls in (QuadAttack, CWK, AdversarialDistillation)]
    r = topk_audit(trained_cnn, x, y, [1, 5], attacks, progress=False)
    rate = {(row["attack"], row["k"]): row["success_rate"] for row in r["results"]}
    assert rate[("quad", 1)] >= 0.9
    assert rate[("quad", 5)] >= max(rate[("cwk", 5)], rate[("ad", 5)])
    assert rate[("quad", 5)] >= 0.9
    for row in r["results"]:
        assert row["gradients_per_example"] == 40
    # every reported success really has the ordered top-K, and stays in the bounds
    split = FeatureSplit(trained_cnn)
    targets = random_targets(y, 5, 10, seed=0)
    res = QuadAttack(steps=40, lr=0.05)(split, x, targets)
    with torch.no_grad():
        assert torch.equal(ordered_topk_success(trained_cnn(res.x_adv), targets), res.success)
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1


def test_targets_random_and_from_file(tmp_path: Path) -> None:
    y = torch.tensor([0, 3, 9])
    t = random_targets(y, 4, 10, seed=1)
    assert t.shape == (3, 4) and all(int(y[i]) not in t[i].tolist() and len(set(t[i].tolist())) == 4
                                     for i in range(3))
    assert torch.equal(t, random_targets(y, 4, 10, seed=1))
    np.save(tmp_path / "t.npy", t.numpy())
    assert torch.equal(load_targets(tmp_path / "t.npy", 3), t)
    with pytest.raises(InputError, match="shape"):
        load_targets(tmp_path / "t.npy", 4)
    with pytest.raises(InputError, match="between 1 and 9"):
        random_targets(y, 10, 10)


def test_cli_topk(tmp_path: Path, digits8: tuple[torch.Tensor, torch.Tensor], trained_cnn: nn.Module) -> None:
    x, y = digits8
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(trained_cnn, (x[:4],), dynamic_shapes=({0: torch.export.Dim("batch")},)),
                      str(path))
    np.savez(tmp_path / "d.npz", x=x[1500:1510].numpy(), y=y[1500:1510].numpy())
    r = runner.invoke(app, ["topk", "--model", str(path), "--data", str(tmp_path / "d.npz"), "--k", "1,3,20",
                            "--attacks", "quad,cwk", "--budget", "1x20", "--out", str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "out" / "topk.json").read_text())
    assert {(row["attack"], row["k"]) for row in res["results"]} == {("quad", 1), ("quad", 3), ("cwk", 1),
                                                                       ("cwk", 3)}  # K = 20 > 9 is skipped
    r = runner.invoke(app, ["topk", "--model", str(path), "--data", str(tmp_path / "d.npz"), "--attacks", "pgd",
                            "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "unknown top-K attack" in r.output
