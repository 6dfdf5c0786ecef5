"""Transfer attacks (MI/DI/TI), the transfer audit and online attacks on a stream (test-oracles A.11)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import Counting, linear_model, train_small_cnn
from torch import nn
from typer.testing import CliRunner

from robustaudit.attacks.transfer.iterative import TransferAttack
from robustaudit.cli import _spread, app
from robustaudit.errors import InputError
from robustaudit.models import TorchModel, as_label_only
from robustaudit.threat import ThreatModel
from robustaudit.transfer.audit import online_audit, transfer_audit
from robustaudit.transfer.online import (
    competitive_ratios,
    offline,
    optimistic,
    single_ref,
    virtual,
    virtual_plus,
)

runner = CliRunner()
LINF = ThreatModel(norm="linf", eps=0.2)


@pytest.fixture(scope="module")
def twins(digits8: tuple[torch.Tensor, torch.Tensor]) -> tuple[nn.Module, nn.Module]:
    """Two small CNNs of the same architecture, trained with different seeds."""
    return train_small_cnn(*digits8, seed=1), train_small_cnn(*digits8, seed=2)


@pytest.fixture(scope="module")
def test_digits(digits8: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits8
    return x[1300:1420], y[1300:1420]


@pytest.mark.parametrize("name", ["fgsm", "ifgsm", "mi", "di", "ti", "mi-di-ti"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_transfer_attacks_stay_in_the_ball(name: str, norm: str, trained_cnn: nn.Module,
                                           test_digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = test_digits
    threat = ThreatModel(norm=norm, eps=0.2 if norm == "linf" else 1.0)
    adv = TransferAttack.parse(name).craft([TorchModel(trained_cnn)], x, y, threat, seed=0)
    d = (adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert float(size.max()) <= threat.eps + 1e-5 and float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert TransferAttack.parse(name).name == name


def test_fgsm_on_a_linear_model_is_the_closed_form() -> None:
    lin = linear_model(5, 2, seed=3)
    x = torch.full((4, 5), 0.5)
    y = torch.tensor([0, 1, 0, 1])
    adv = TransferAttack.parse("fgsm").craft([TorchModel(lin)], x, y, ThreatModel(eps=0.1), seed=0)
    w = lin.weight.detach()
    away = torch.where(y[:, None] == 0, (w[1] - w[0]).sign(), (w[0] - w[1]).sign())  # sign of the CE gradient
    torch.testing.assert_close(adv, x + 0.1 * away)


def test_ensemble_of_copies_equals_one_model(trained_cnn: nn.Module,
                                             test_digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = test_digits
    m = TorchModel(trained_cnn)
    a = TransferAttack.parse("mi-ti")
    torch.testing.assert_close(a.craft([m, m, m], x, y, LINF), a.craft([m], x, y, LINF))


def test_transfer_attack_rejects_bad_requests(trained_cnn: nn.Module) -> None:
    with pytest.raises(InputError, match="unknown transfer attack"):
        TransferAttack.parse("mi-xi")
    with pytest.raises(InputError, match="images"):
        TransferAttack.parse("di").craft([TorchModel(linear_model(4, 3))], torch.rand(2, 4), torch.tensor([0, 1]),
                                         LINF)
    with pytest.raises(InputError, match="at least one"):
        TransferAttack.parse("mi").craft([], torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), LINF)


def test_self_transfer_equals_white_box_and_queries_are_exact(
        trained_cnn: nn.Module, test_digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = test_digits
    counting = Counting(trained_cnn)
    target = as_label_only(TorchModel(counting))
    surrogate = TorchModel(trained_cnn)
    rec = transfer_audit(target, {"self": surrogate}, ["mi", "ifgsm"], x, y, LINF, progress=False)
    with torch.no_grad():
        clean = trained_cnn(x).argmax(1) == y
    for pair in rec.pairs:
        adv = TransferAttack.parse(pair.attack).craft([surrogate], x, y, LINF)
        with torch.no_grad():
            white_box_robust = clean & (trained_cnn(adv).argmax(1) == y)
        assert torch.equal(pair.robust, white_box_robust)
    assert rec.matrix[0][0] <= float(clean.float().mean())
    # one clean query per example, then one per pair and one for the noise baseline for each clean-correct one
    expected = 1 + clean.long() * (len(rec.pairs) + 1)
    assert torch.equal(rec.target_queries, expected)
    assert counting.forward_rows == int(expected.sum()) and counting.backward_rows == 0


def test_twins_transfer_well_above_noise_and_worst_case_is_the_minimum(
        twins: tuple[nn.Module, nn.Module], test_digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = test_digits
    a, b = twins
    rec = transfer_audit(as_label_only(TorchModel(b)), {"twin": TorchModel(a), "itself": TorchModel(b)},
                         ["mi", "ti", "mi-ti"], x, y, LINF, progress=False)
    clean = float(rec.clean.float().mean())
    assert clean > 0.9
    assert rec.noise.robust_accuracy > clean - 0.1  # random signs of the same norm barely hurt
    twin_pairs = [p for p in rec.pairs if p.source == "twin"]
    assert max(p.robust_accuracy for p in twin_pairs) < rec.noise.robust_accuracy - 0.25
    worst = float(rec.worst_case.float().mean())
    assert worst <= min(p.robust_accuracy for p in rec.pairs)
    assert torch.equal(rec.worst_case, rec.clean & torch.stack([p.robust for p in rec.pairs]).all(0))
    assert [p.source for p in rec.pairs].count("ensemble") == 3
    assert rec.ranked()[0].robust_accuracy == min(p.robust_accuracy for p in rec.pairs)


def test_transfer_audit_rejects_bad_input(trained_cnn: nn.Module) -> None:
    m = TorchModel(trained_cnn)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    with pytest.raises(InputError, match="surrogate"):
        transfer_audit(m, {}, ["mi"], x, y, LINF)
    with pytest.raises(InputError, match="untargeted"):
        transfer_audit(m, {"m": m}, ["mi"], x, y, ThreatModel(eps=0.1, targeted=True))
    with pytest.raises(InputError):
        transfer_audit(m, {"m": m}, ["mi"], x * 3, y, LINF)


# Online attacks: toy streams whose values are known.

def test_offline_is_the_k_best() -> None:
    v = [0.3, 5.0, 1.0, 4.0, 2.0]
    assert offline(v, 2) == [1, 3]
    assert offline(v, 10) == [0, 1, 2, 3, 4]


def test_sampling_phase_and_budget_are_respected() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, k = int(rng.integers(5, 60)), int(rng.integers(1, 6))
        v = rng.random(n).tolist()
        t = math.floor(n / math.e)
        for rule in (virtual_plus, optimistic):
            s = rule(v, k)
            assert len(s) <= k and all(i > t for i in s) and s == sorted(set(s))
        assert len(virtual(v, k)) <= k and all(i > math.floor(0.38 * n) for i in virtual(v, k))
        assert len(single_ref(v, k)) <= k


def test_optimistic_drops_one_reference_per_pick() -> None:
    # sample (t = 3): 9, 8, 7, 6 -> reference top-3 = [9, 8, 7]; picks must beat 7, then 8 (one dropped), then 9
    v = [9, 8, 7, 6, 7.5, 7.6, 8.5, 8.2, 9.5]
    assert optimistic(v, 3, t=3) == [4, 6, 8]  # R[:-2] would raise the bar to 9 after the first pick


def test_competitive_ratios_match_the_theory() -> None:
    n = 100
    ranks = np.arange(n, dtype=float)
    means = {}
    for k in (1, 2, 3, 4):
        top = (ranks >= n - k).astype(float)  # the indicator ratio |S ∩ S*| / k
        r = competitive_ratios(ranks, top, k, permutations=1500, seed=k)
        means[k] = {s: float(v.mean()) for s, v in r.items()}
        tol = 3 * max(float(r["virtual"].std()), 0.3) / math.sqrt(1500)
        assert means[k]["virtual+"] >= means[k]["virtual"] - tol
        assert means[k]["virtual+"] >= means[k]["single-ref"] - tol
        assert means[k]["random"] == pytest.approx(k / n, abs=0.02)
    assert means[1]["virtual+"] == pytest.approx(1 / math.e, abs=0.04)
    assert means[4]["virtual+"] > means[1]["virtual+"] + 0.05


def test_online_audit_counts_one_query_per_item(trained_cnn: nn.Module,
                                               test_digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = test_digits
    counting = Counting(trained_cnn)
    rec = online_audit(as_label_only(TorchModel(counting)), TorchModel(trained_cnn), x, y, LINF, k=5,
                       permutations=50, progress=False)
    assert rec.target_queries == counting.forward_rows == len(x)
    r = rec.to_json()
    assert set(r["strategies"]) == {"virtual+", "virtual", "optimistic", "single-ref", "random"}
    for s in r["strategies"].values():
        assert 0 <= s["competitive_ratio"] <= 1 and s["permutations"] == 50
    with pytest.raises(InputError, match="k must be"):
        online_audit(TorchModel(trained_cnn), TorchModel(trained_cnn), x, y, LINF, k=0)


def test_cli_transfer_and_online(tmp_path: Path, twins: tuple[nn.Module, nn.Module],
                                 test_digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = test_digits
    paths = []
    for i, m in enumerate(twins):
        p = tmp_path / f"m{i}.pt2"
        torch.export.save(torch.export.export(m, (x[:4],), dynamic_shapes=({0: torch.export.Dim("batch")},)), str(p))
        paths.append(str(p))
    np.savez(tmp_path / "d.npz", x=x[:40].numpy(), y=y[:40].numpy())
    assert _spread(["transfer", "--surrogates", "a", "b", "--eps", "1"]) == [
        "transfer", "--surrogates", "a", "--surrogates", "b", "--eps", "1"]
    r = runner.invoke(app, ["transfer", "--target", paths[1], "--surrogates", paths[0], "--surrogates", paths[1],
                            "--attacks", "mi,ti", "--eps", "0.2", "--data", str(tmp_path / "d.npz"), "--out",
                            str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "worst case over all pairs" in r.output
    res = json.loads((tmp_path / "out" / "transfer.json").read_text())
    assert len(res["pairs"]) == 6 and res["matrix"]["sources"] == ["m0", "m1"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "data:image/png;base64" in html and "Worst-case robust accuracy" in html
    r = runner.invoke(app, ["online", "--target", paths[1], "--surrogate", paths[0], "--data",
                            str(tmp_path / "d.npz"), "--k", "3", "--eps", "0.2", "--permutations", "20", "--quiet",
                            "--out", str(tmp_path / "online")])
    assert r.exit_code == 0, r.output
    assert "virtual+" in r.output and json.loads((tmp_path / "online" / "online.json").read_text())["k"] == 3
    assert {"summary.md", "report.html"} <= {p.name for p in (tmp_path / "online").iterdir()}
    r = runner.invoke(app, ["online", "--target", paths[1], "--surrogate", paths[0], "--data",
                            str(tmp_path / "d.npz"), "--k", "3", "--eps", "0.2", "--strategy", "best"])
    assert r.exit_code == 2 and "unknown strategy" in r.output
