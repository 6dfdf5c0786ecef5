"""Sparse (L0, pixels) audits: the L0 geometry, the exact minimum on a linear model as the oracle of fgbb and
Sparse-RS, exact counts and budgets, the search's invariants on images, the CLI at --norm l0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import Counting, demo_subset, small_cnn

import robustaudit
from robustaudit.attacks.score.fgbb import FGBB
from robustaudit.attacks.score.sparse_rs import SparseRS
from robustaudit.attacks.whitebox.pgd import PGDL0
from robustaudit.errors import InputError
from robustaudit.models import TorchModel, as_score_only
from robustaudit.ops.lp import ops_for, pixels
from robustaudit.threat import ThreatModel
from robustaudit.types import Bounds, Norm

L0 = ops_for(Norm.L0)


def test_l0_counts_pixels_and_projects_onto_the_largest_changes() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 5, 5, generator=g)
    u = x.clone()
    u[:, 1, 0, 0] += 0.1  # one channel of pixel (0, 0)
    u[:, :, 2, 3] = 0.0  # every channel of pixel (2, 3)
    assert torch.equal(L0.distance(u, x), torch.full((4,), 2.0))
    v = x + torch.randn(4, 3, 5, 5, generator=g)
    for k in (0, 1, 7, 25):
        p = L0.project(v, x, k, Bounds(0.0, 1.0))
        assert bool((L0.distance(p, x) <= k).all()) and bool((p >= 0).all() and (p <= 1).all())
        # the kept pixels are the k largest changes after clipping, kept whole
        change = pixels(v.clamp(0, 1) - x).pow(2).sum(1)
        kept = (pixels(p - x) != 0).any(1)
        for i in range(4):
            if 0 < k < 25:
                assert float(change[i][kept[i]].min()) >= float(change[i][~kept[i]].max())
        assert torch.allclose(pixels(p - x)[kept[:, None].expand(-1, 3, -1)],
                              pixels(v.clamp(0, 1) - x)[kept[:, None].expand(-1, 3, -1)])
    with pytest.raises(InputError, match="whole"):
        ThreatModel(norm="l0", eps=2.5)


def linear_two_class(d: int, bias: float, n: int, seed: int) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor,
                                                                       np.ndarray]:
    """A 2-class linear model on [0, 1]^d, inputs, labels and each input's exact minimum L0: the logit margin m
    must be crossed, pixel i can take off at most g_i = |Δw_i| times its distance to the helpful bound, so the
    minimum is the fewest largest g_i whose sum exceeds m (greedy is exact: one constraint, separable gains)."""
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Linear(d, 2)
    with torch.no_grad():
        net.weight.copy_(torch.randn(2, d, generator=g))
        net.bias.copy_(torch.tensor([bias, 0.0]))
        x = torch.rand(n, d, generator=g)
        y = net(x).argmax(1)
        dw = net.weight[y] - net.weight[1 - y]
        m = (dw * x).sum(1) + net.bias[y] - net.bias[1 - y]
        gain = torch.where(dw > 0, dw * x, dw * (x - 1)).sort(1, descending=True).values.cumsum(1)
    minimum = ((gain < m[:, None]).sum(1) + 1).numpy()
    return net, x, y, np.where(gain[:, -1] > m, minimum, 10**9)


def test_fgbb_and_sparse_rs_against_the_exact_minimum_of_a_linear_model() -> None:
    net, x, y, minimum = linear_two_class(48, 12.0, 16, seed=1)
    assert 5 <= np.median(minimum) <= 10
    counted = Counting(net)
    budget = 1000
    res = FGBB(max_queries=budget)(as_score_only(TorchModel(counted)), x, y,
                                   ThreatModel(norm="l0", eps=48), seed=0)
    found = L0.distance(res.x_adv, x).numpy()
    with torch.no_grad():
        assert bool((net(res.x_adv).argmax(1) != y).all())
    assert (found >= minimum).all()  # never below the exact minimum
    assert (found - minimum <= 1).mean() >= 0.75, (found, minimum)  # and at it (within 1 pixel) on most
    assert res.min_distance is not None and np.array_equal(res.min_distance.numpy(), found)
    # the attack's own budget, plus the clean check and the verification of its point
    assert int(res.queries.sum()) == counted.forward_rows and int(res.queries.max()) <= budget + 2
    # Sparse-RS at a fixed eps: never fooled below the minimum, fooled at the minimum (+1) on most
    for eps in (int(np.median(minimum)) - 1, int(np.median(minimum)) + 1):
        counted = Counting(net)
        r = SparseRS(n_queries=1000)(as_score_only(TorchModel(counted)), x, y, ThreatModel(norm="l0", eps=eps), seed=0)
        s = r.success.numpy()
        assert not s[minimum > eps].any()
        if (minimum <= eps).any():
            assert s[minimum <= eps].mean() >= 0.6
        assert bool((L0.distance(r.x_adv, x) <= eps).all())
        assert int(r.queries.sum()) == counted.forward_rows


@pytest.mark.parametrize("player2", ["cooperative", "adversarial", "random"])
def test_fgbb_on_images_returns_verified_minimal_points_and_a_monotone_curve(digits8, trained_cnn,
                                                                             player2: str) -> None:
    x, y = digits8
    x, y = x[1500:1506], y[1500:1506]
    counted = Counting(trained_cnn)
    res = FGBB(max_queries=150, player2=player2)(as_score_only(TorchModel(counted)), x, y,
                                                 ThreatModel(norm="l0", eps=6), seed=0)
    assert int(res.queries.sum()) == counted.forward_rows and int(res.queries.max()) <= 150 + 2
    assert res.min_distance is not None and res.distance_at is not None
    with torch.no_grad():
        pred = trained_cnn(res.x_adv).argmax(1)
    # success at eps: misclassified and differing in exactly the reported number of pixels
    assert torch.equal(res.success, (pred != y) & res.attacked)
    d = L0.distance(res.x_adv, x)
    assert bool((d[res.success] <= 6).all())
    assert torch.equal(d[res.success], res.min_distance[res.success].to(d.dtype))
    curve = [res.distance_at[b] for b in sorted(res.distance_at)]
    for a, b in zip(curve, curve[1:], strict=False):  # best L0 never grows with more queries
        assert bool((b <= a).all())


def test_fgbb_budget_is_exact_and_never_exceeded(trained_cnn, digits8) -> None:
    x, y = digits8
    x, y = x[1510:1514], y[1510:1514]
    for budget in (1, 2, 17):
        counted = Counting(trained_cnn)
        res = FGBB()(as_score_only(TorchModel(counted)), x, y, ThreatModel(norm="l0", eps=4, max_queries=budget))
        assert int(res.queries.max()) <= budget  # the threat's budget: everything included
        assert int(res.queries.sum()) == counted.forward_rows


def test_pgd_l0_reaches_a_closed_form_point_on_a_linear_model() -> None:
    net, x, y, minimum = linear_two_class(48, 12.0, 16, seed=1)
    eps = int(np.median(minimum)) + 1
    res = PGDL0()(TorchModel(net), x, y, ThreatModel(norm="l0", eps=eps), seed=0)
    s = res.success.numpy()
    assert not s[minimum > eps].any() and s[minimum <= eps].mean() >= 0.6  # a heuristic projection: not exact
    assert bool((L0.distance(res.x_adv, x) <= eps).all())


def test_audit_at_l0_shows_l0_per_example_and_refuses_labels(tmp_path: Path) -> None:
    net = small_cnn(seed=3)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    rec = robustaudit.audit(net, x, None, eps=3, norm="l0", access="scores", budget=120,
                            out=tmp_path / "r")
    assert [a.name for a in rec.attacks] == ["sparse-rs", "fgbb"]
    for e in rec.examples:
        assert (e.extra["l0"] == 0) if e.robust else (1 <= e.extra["l0"] <= 3)
        assert e.queries <= 120
    assert (tmp_path / "r" / "curves.json").is_file()
    with pytest.raises(InputError, match="l0"):
        robustaudit.audit(net, x, None, eps=3, norm="l0", access="labels")
    with pytest.raises(InputError, match="player2"):
        robustaudit.audit(net, x, None, eps=3, norm="l0", attacks="fgbb", player2="friendly")


def test_evaluate_cli_at_l0(demo_paths, tmp_path: Path) -> None:
    data = demo_subset(demo_paths, tmp_path, 6)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "robustaudit", "evaluate", "--model", demo_paths[0], "--data", str(data), "--norm",
         "l0", "--eps", "20", "--access", "scores", "--attacks", "fgbb", "--player2", "random", "--budget", "150",
         "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["threat"]["norm"] == "l0" and res["threat"]["eps"] == 20
    adv, x = np.load(out / "adversarial.npz")["x_adv"], np.load(data)["x"]
    for e in res["examples"]:
        changed = int((adv[e["index"]] != x[e["index"]]).reshape(adv.shape[1], -1).any(0).sum())
        assert e["l0"] == changed and changed <= 20 and e["queries"] <= 150
    curves = json.loads((out / "curves.json").read_text())["fgbb"]
    assert set(curves["examples"]) == {str(e["index"]) for e in res["examples"] if e["clean_prediction"] == e["label"]}
    for e in res["examples"]:  # each example's curve: best L0 within 100 queries, then within its budget of 150
        c = curves["examples"].get(str(e["index"]))
        if c is not None:
            assert list(c) == ["100"] and (c["100"] is None or c["100"] >= e["min_distance"])


def test_lipschitz_estimate_is_exact_for_a_linear_layer_and_bounds_a_cnn() -> None:
    from robustaudit.certify.lipschitz import estimate_lipschitz

    lin = torch.nn.Linear(12, 5)
    L, how = estimate_lipschitz(lin, torch.rand(1, 12))
    assert pytest.approx(float(torch.linalg.matrix_norm(lin.weight.detach(), 2)), rel=1e-4) == L
    assert "estimate" in how
    net = small_cnn(seed=2)
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    L, _ = estimate_lipschitz(net, x)
    exported = torch.export.export(net, (x[:1],)).module()
    assert estimate_lipschitz(exported, x)[0] == pytest.approx(L, rel=1e-3)  # the graph walk agrees
    with torch.no_grad():  # no pair of inputs moves the scores more than L allows
        d = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(2))
        ratio = (net(x + d) - net(x)).norm(dim=1) / d.flatten(1).norm(dim=1)
    assert float(ratio.max()) <= L

    class Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(6, 6)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return v + self.a(v)

    with pytest.raises(InputError, match="feed-forward"):
        estimate_lipschitz(torch.export.export(Residual(), (torch.rand(1, 6),)).module(), torch.rand(1, 6))
    with pytest.raises(InputError, match="LayerNorm"):
        estimate_lipschitz(torch.nn.Sequential(torch.nn.LayerNorm(6), torch.nn.Linear(6, 2)), torch.rand(1, 6))


def test_safety_never_certifies_a_region_with_an_adversarial_example(tmp_path: Path) -> None:
    """On the linear model the exact minimum L0 is known: the certified-safe pixels stay below it."""
    from robustaudit.commands import safety

    net, x, y, minimum = linear_two_class(48, 5.0, 16, seed=1)
    L = float(torch.linalg.matrix_norm(net.weight.detach(), 2))
    r = safety(net, x, y, lipschitz=L, norm="l0", eps=1, out=tmp_path / "s")
    safe = np.array([p["safe"] for p in r["per_example"]])
    assert (safe < minimum).all() and r["queries_total"] == len(x) and r["lipschitz_source"] == "given"
    # L2: the certified radius is below the exact distance to the boundary, |m| / ||Δw||, and within √2·||W|| / ||Δw||
    dw = (net.weight[0] - net.weight[1]).detach().norm()
    exact = np.array([p["margin"] for p in r["per_example"]]) / float(dw)
    radius = np.array([p["radius_l2"] for p in r["per_example"]])
    assert (radius <= exact + 1e-9).all() and (radius >= exact * float(dw) / (2**0.5 * L) - 1e-9).all()
    assert {"safety.json", "summary.md", "report.html"} <= {p.name for p in (tmp_path / "s").iterdir()}


def test_safety_cli_beside_the_attacks_catches_a_wrong_constant(tmp_path: Path) -> None:
    net = small_cnn(seed=3)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = net(x).argmax(1)
    data = tmp_path / "d.npz"
    np.savez(data, x=x.numpy(), y=y.numpy())
    model = tmp_path / "m.pt"
    torch.jit.script(net).save(str(model))
    robustaudit.audit(net, x, y, eps=2, norm="l0", out=tmp_path / "ev")
    base = [sys.executable, "-m", "robustaudit", "safety", "--model", str(model), "--data", str(data), "--eps", "2",
            "--results", str(tmp_path / "ev")]
    ok = subprocess.run(base + ["--lipschitz", "10", "--out", str(tmp_path / "a")], capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr
    r = json.loads((tmp_path / "a" / "safety.json").read_text())
    assert r["beside"]["broken_but_certified"] == [] and "attack_robust" in r["per_example"][0]
    # a constant far too small certifies everything, including the examples the attacks broke: exit 1
    broken = json.loads((tmp_path / "ev" / "results.json").read_text())["robust_accuracy"] < 1
    bad = subprocess.run(base + ["--lipschitz", "1e-9", "--out", str(tmp_path / "b")], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == (1 if broken else 0), bad.stderr
    if broken:
        assert "too small" in bad.stderr
    est = subprocess.run(base + ["--lipschitz", "estimate", "--out", str(tmp_path / "c")], capture_output=True,
                         text=True, timeout=300)  # TorchScript: the layers at the input's size, an upper bound
    assert est.returncode == 0, est.stderr
    from robustaudit.certify.lipschitz import estimate_lipschitz

    script = json.loads((tmp_path / "c" / "safety.json").read_text())
    assert script["lipschitz"] >= estimate_lipschitz(net, x)[0] * (1 - 1e-4)
    assert "estimate" in script["lipschitz_source"] and script["caveats"]
