"""Randomized smoothing against closed forms (test-oracles A.12)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn
from typer.testing import CliRunner

from robustaudit.certify.run import certify_dataset
from robustaudit.certify.smoothing import ABSTAIN, Smoothed, lower_confidence_bound, radius
from robustaudit.cli import app
from robustaudit.errors import AccessError, InputError
from robustaudit.models import TorchModel, as_label_only
from robustaudit.oracle import Oracle
from robustaudit.stats import clopper_pearson

runner = CliRunner()


class HalfSpace(nn.Module):
    """Two classes split by the hyperplane x_0 = 0.5 (class 1 above): the distance of x is |x_0 - 0.5|."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1)[:, :1] - 0.5
        return torch.cat([-s, s], 1)


def test_clopper_pearson_bound_and_the_largest_radius() -> None:
    p = lower_confidence_bound(100_000, 100_000, 0.001)
    assert p == pytest.approx(0.999931, abs=1e-6)
    assert radius(p, 1.0) == pytest.approx(3.811, abs=1e-3)
    assert radius(lower_confidence_bound(10_000, 10_000, 0.001), 1.0) == pytest.approx(3.20, abs=0.01)
    for n_a, n in [(7, 10), (950, 1000), (5000, 10_000)]:
        assert lower_confidence_bound(n_a, n, 0.001) == pytest.approx(clopper_pearson(n_a, n, 1 - 0.002)[0])
    assert lower_confidence_bound(0, 10, 0.001) == 0.0


def test_linear_model_radius_matches_the_closed_form() -> None:
    """p_A = Phi(d / sigma): with many samples the certified radius approaches d from below."""
    sigma, d = 0.25, 0.2
    x = torch.full((1, 4), 0.5)
    x[0, 0] += d
    oracle = Oracle(as_label_only(TorchModel(HalfSpace())), 1)
    s = Smoothed(oracle, sigma, batch_size=5000, seed=0)
    label, r = s.certify(x[0], 0, n0=100, n=100_000, alpha=0.001)
    assert label == 1
    p_a = norm.cdf(d / sigma)
    assert r <= d and r == pytest.approx(d, abs=0.02)
    assert r == pytest.approx(sigma * norm.ppf(lower_confidence_bound(round(p_a * 100_000), 100_000, 0.001)),
                              abs=0.01)
    assert int(oracle.queries[0]) == 100 + 100_000


def test_abstain_rules() -> None:
    oracle = Oracle(as_label_only(TorchModel(HalfSpace())), 2)
    s = Smoothed(oracle, 0.5, seed=1)
    on_plane = torch.full((3,), 0.5)  # p_A = 1/2: p_lo < 1/2, and the two classes are not told apart
    assert s.certify(on_plane, 0, 100, 2000, 0.001) == (ABSTAIN, 0.0)
    assert s.predict(on_plane, 0, 2000, 0.001) == ABSTAIN
    far = torch.tensor([1.0, 0.5, 0.5])  # p_A = Phi(1) ≈ 0.84
    assert s.predict(far, 1, 2000, 0.001) == 1
    label, r = s.certify(far, 1, 100, 2000, 0.001)
    assert label == 1 and 0 < r < 0.5


def test_wrong_certificates_are_rarer_than_alpha() -> None:
    """Over many seeds, the certified radius exceeds the true distance in at most about an alpha share of runs."""
    sigma, d, alpha, runs = 0.5, 0.3, 0.05, 300
    x = torch.tensor([0.5 + d, 0.0])
    oracle = Oracle(as_label_only(TorchModel(HalfSpace())), runs)
    wrong = 0
    for seed in range(runs):
        label, r = Smoothed(oracle, sigma, batch_size=500, seed=seed).certify(x, seed, 20, 500, alpha)
        wrong += label == 1 and r > d
    assert wrong / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_certified_accuracy_uses_radius_at_least_r() -> None:
    x = torch.tensor([[0.9, 0.0], [0.6, 0.0], [0.5, 0.0], [0.2, 0.0]])
    y = torch.tensor([1, 1, 1, 0])
    rec = certify_dataset(as_label_only(TorchModel(HalfSpace())), x, y, sigma=0.25, n0=50, n=2000, alpha=0.001,
                          progress=False)
    assert rec.predictions[2] == ABSTAIN and rec.radii[2] == 0
    assert rec.certified_accuracy(0.0) == 0.75
    r = float(rec.radii[1])
    assert rec.certified_accuracy(r) >= 0.5 and rec.certified_accuracy(r + 1e-9) < rec.certified_accuracy(0)
    assert torch.equal(rec.queries, torch.full((4,), 2050))
    j = rec.to_json()
    assert j["certified_accuracy"]["0"]["certified_accuracy"] == 0.75 and j["abstained"] == 1  # type: ignore[index]


# Zeroth-order estimators (test-oracles A.13) and ZO-AE-DS.

def _quadratic() -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    return a @ a.T + torch.eye(6, dtype=torch.float64), torch.randn(2, 6, generator=g, dtype=torch.float64), []


def test_estimators_on_a_quadratic() -> None:
    from robustaudit.ops.rng import generator
    from robustaudit.ops.zo import coordinate_gradient, random_gradient

    a, z, calls = _quadratic()

    def loss(probes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        calls.append(len(probes))
        return 0.5 * ((probes @ a) * probes).sum(1)

    true = z @ a
    idx = torch.arange(2)
    central, value = coordinate_gradient(loss, z, idx, 1e-3)
    torch.testing.assert_close(central, true, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(value, 0.5 * ((z @ a) * z).sum(1), atol=1e-5, rtol=1e-5)
    assert calls[-1] == 2 * 2 * 6  # 2d per example
    forward, _ = coordinate_gradient(loss, z, idx, 1e-3, central=False)
    bias = (forward - true).abs().max()
    assert 1e-5 < float(bias) < 1e-2 and calls[-1] == 2 * 7  # O(mu) bias, d + 1 per example
    cos = []
    for q in (2, 20, 200):
        g, _ = random_gradient(loss, z, idx, q, 1e-4, generator(0, q))
        assert calls[-1] == 2 * (q + 1)
        cos.append(float(torch.nn.functional.cosine_similarity(g, true).mean()))
    assert cos[0] < cos[1] < cos[2] and cos[2] > 0.8


def test_zo_trained_denoiser_improves_the_black_box_certificate(digits8: tuple[torch.Tensor, torch.Tensor],
                                                               trained_cnn: nn.Module) -> None:
    from robustaudit.certify.denoise import ZOAEDS, Composed
    from robustaudit.models import as_score_only

    x, y = digits8
    model = TorchModel(trained_cnn)
    xte, yte = x[1500:1600], y[1500:1600]
    plain = certify_dataset(as_label_only(model), xte, yte, sigma=0.25, n0=50, n=500, progress=False)
    settings = ZOAEDS(estimator="rge", q=20, epochs=10, latent=16, pretrain_denoiser=False)
    front, stats = settings.train(as_score_only(model), x[:600], progress=False)
    # pseudo-labels once per example, then (q + 1) queries per example per step
    assert stats["training_queries"] == 600 + 10 * 600 * 21 and settings.queries_per_example_step() == 21
    robust = certify_dataset(Composed(front, as_label_only(model)), xte, yte, sigma=0.25, n0=50, n=500,
                             progress=False)
    assert robust.certified_accuracy(0.25) > plain.certified_accuracy(0.25)
    assert robust.certified_accuracy(0.5) > plain.certified_accuracy(0.5) + 0.05
    with pytest.raises(AccessError, match="gradients"):
        ZOAEDS(estimator="fo", epochs=1).train(as_score_only(model), x[:64], progress=False)
    with pytest.raises(InputError, match="multiples of 4"):
        ZOAEDS(epochs=1).train(as_score_only(model), torch.rand(8, 1, 6, 6), progress=False)


def test_cli_robustify_then_certify(tmp_path: Path, digits8: tuple[torch.Tensor, torch.Tensor],
                                    trained_cnn: nn.Module) -> None:
    x, y = digits8
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(trained_cnn, (x[:4],), dynamic_shapes=({0: torch.export.Dim("batch")},)),
                      str(path))
    np.savez(tmp_path / "train.npz", x=x[:128].numpy(), y=y[:128].numpy())
    np.savez(tmp_path / "test.npz", x=x[1500:1510].numpy(), y=y[1500:1510].numpy())
    r = runner.invoke(app, ["robustify", "--target", str(path), "--sigma", "0.25", "--estimator", "cge-forward",
                            "--latent", "8", "--epochs", "1", "--pretrain-epochs", "2", "--data",
                            str(tmp_path / "train.npz"), "--out", str(tmp_path / "front.pt"), "--quiet"])
    assert r.exit_code == 0, r.output
    stats = json.loads((tmp_path / "front.pt.json").read_text())
    assert stats["training_queries"] == 128 + 128 * 9
    r = runner.invoke(app, ["certify", "--model", str(path), "--denoiser", str(tmp_path / "front.pt"), "--sigma",
                            "0.25", "--n0", "20", "--n", "200", "--data", str(tmp_path / "test.npz"), "--out",
                            str(tmp_path / "cert"), "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "cert" / "certify.json").read_text())
    assert res["queries_total"] == 10 * 220 and res["training_queries"] == stats["training_queries"]
    assert "data:image/png;base64" in (tmp_path / "cert" / "report.html").read_text()
    r = runner.invoke(app, ["certify", "--model", str(path), "--sigma", "0", "--data", str(tmp_path / "test.npz"),
                            "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "sigma" in r.output
