"""Adaptive evaluation: three masked versions of an adversarially trained digits CNN (8-level input quantisation,
a softmax of 1000x the logits, Gaussian input noise) get, from the default audit, the robust accuracy the
unmasked model gets (quantisation: that of a BPDA reference attack written here), while the naive cascade
reports far more; every adversarial example is re-checked here by fresh forward passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import Counting
from torch import nn

import robustaudit
from robustaudit.masks import Noisy, Quantised, Saturated
from robustaudit.results import EvalRecord

EPS = 0.15  # the audit radius, a little beyond the training radius


@pytest.fixture(scope="module")
def test_set(digits8) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits8
    return x[1400:1560], y[1400:1560]


@pytest.fixture(scope="module")
def unmasked(robust_cnn, test_set) -> EvalRecord:
    return robustaudit.audit(robust_cnn, *test_set, eps=EPS)


def _verified(record: EvalRecord, model: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: int = 1) -> float:
    """The share of the examples reported broken that fresh passes misclassify (the majority of `draws`); all lie
    inside the ball and the bounds."""
    broken = torch.tensor([e.broken_by is not None for e in record.examples])
    xa = record.x_adv[broken]
    assert len(xa) and float((xa - x[broken]).abs().max()) <= EPS + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    with torch.no_grad():
        votes = torch.stack([model(xa).argmax(1) for _ in range(draws)])
    return float((votes.mode(0).values != y[broken]).float().mean())


def _bpda_reference(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The reference: PGD-100 (margin loss, two random starts) through round() replaced by the identity on the
    backward pass, as Athalye et al. (2018) attack input quantisation."""
    def forward(u: torch.Tensor) -> torch.Tensor:
        q = u * 7
        return net((q + (torch.round(q) - q).detach()) / 7)

    robust = forward(x).argmax(1) == y
    for start in range(2):
        g = torch.Generator().manual_seed(start)
        xa = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * EPS).clamp(0, 1)
        for _ in range(100):
            xa.requires_grad_(True)
            z = forward(xa)
            other = z.scatter(1, y[:, None], float("-inf")).amax(1)
            (grad,) = torch.autograd.grad((other - z.gather(1, y[:, None])[:, 0]).sum(), xa)
            xa = torch.minimum(torch.maximum(xa + EPS / 10 * grad.sign(), x - EPS), x + EPS).clamp(0, 1).detach()
        with torch.no_grad():
            robust &= Quantised(net)(xa).argmax(1) == y
    return float(robust.float().mean())


def test_an_unmasked_model_is_not_adapted(unmasked: EvalRecord) -> None:
    assert unmasked.adaptations == [] and unmasked.naive_robust_accuracy is None
    assert unmasked.flags == []
    assert 0.2 < unmasked.robust_accuracy < unmasked.clean_accuracy


def test_quantisation_is_attacked_through_bpda(robust_cnn, test_set, unmasked) -> None:
    x, y = test_set
    masked = Quantised(robust_cnn).eval()
    rec = robustaudit.audit(masked, x, y, eps=EPS)
    assert [a["name"] for a in rec.adaptations] == ["straight_through"]
    assert "round" in rec.adaptations[0]["detail"]
    reference = _bpda_reference(robust_cnn, x, y)
    assert abs(rec.robust_accuracy - reference) <= 0.05, (rec.robust_accuracy, reference)
    naive = robustaudit.audit(masked, x, y, eps=EPS, adaptive=False)
    assert naive.robust_accuracy >= rec.robust_accuracy + 0.3
    assert rec.naive_robust_accuracy == naive.robust_accuracy  # the same naive cascade ran first
    assert _verified(rec, masked, x, y) == 1.0


def test_saturated_probabilities_are_attacked_as_logits(robust_cnn, test_set, unmasked) -> None:
    x, y = test_set
    masked = Saturated(robust_cnn).eval()
    rec = robustaudit.audit(masked, x, y, eps=EPS)
    assert [a["name"] for a in rec.adaptations] == ["log_probabilities"]
    assert abs(rec.robust_accuracy - unmasked.robust_accuracy) <= 0.05
    naive = robustaudit.audit(masked, x, y, eps=EPS, adaptive=False)
    assert naive.robust_accuracy >= rec.robust_accuracy + 0.3
    assert _verified(rec, masked, x, y) == 1.0


def test_a_randomised_model_is_attacked_with_eot_and_judged_by_majority(robust_cnn, test_set, unmasked) -> None:
    x, y = test_set
    masked = Counting(Noisy(robust_cnn)).eval()
    rec = robustaudit.audit(masked, x, y, eps=EPS, eot=10)
    assert [a["name"] for a in rec.adaptations] == ["eot"] and rec.adaptations[0]["draws"] == 10
    assert abs(rec.robust_accuracy - unmasked.robust_accuracy) <= 0.05
    assert sum(e.queries for e in rec.examples) == masked.forward_rows  # every draw is counted
    torch.manual_seed(1)
    # a fresh majority of 21 draws confirms most successes; the others sit where the noise flips the label about
    # half the time, so any finite vote decides them by chance (measured: 85% confirmed)
    assert _verified(rec, masked, x, y, draws=21) >= 0.75


@pytest.mark.parametrize("mask", [Quantised, Saturated])
def test_every_adapted_attack_succeeds_when_eps_covers_the_box(robust_cnn, test_set, mask) -> None:
    x, y = test_set
    rec = robustaudit.audit(mask(robust_cnn).eval(), x[:16], y[:16], eps=1.0)
    assert rec.adaptations and rec.robust_accuracy == 0.0


def test_cli_adaptive_switch_and_report(robust_cnn, test_set, tmp_path) -> None:
    from typer.testing import CliRunner

    from robustaudit.cli import app

    x, y = test_set
    scripted = torch.jit.trace(Saturated(robust_cnn).eval(), x[:2])
    scripted.save(str(tmp_path / "saturated.pt"))
    np.savez(tmp_path / "d.npz", x=x[:48].numpy(), y=y[:48].numpy())
    args = ["evaluate", "--model", str(tmp_path / "saturated.pt"), "--data", str(tmp_path / "d.npz"), "--eps", "0.1"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "auto")])
    assert r.exit_code == 0, r.output
    assert "naive cascade alone reported" in r.output
    html = (tmp_path / "auto" / "report.html").read_text()
    assert "Adaptive evaluation" in html and "naive cascade alone reported" in html
    r = CliRunner().invoke(app, [*args, "--adaptive", "off", "--out", str(tmp_path / "off")])
    assert r.exit_code == 0 and "naive cascade" not in r.output
    r = CliRunner().invoke(app, [*args, "--adaptive", "maybe", "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and not (tmp_path / "bad").exists()


def test_score_access_attacks_log_scores_and_votes_on_a_randomised_model(robust_cnn, test_set) -> None:
    x, y = test_set[0][:24], test_set[1][:24]
    probs = Counting(Saturated(robust_cnn, scale=1.0)).eval()
    rec = robustaudit.audit(probs, x, y, eps=EPS, access="scores", attacks="square", budget=400)
    assert [a["name"] for a in rec.adaptations] == ["log_probabilities"]
    assert [a.name for a in rec.attacks] == ["square", "square+logp"]
    assert max(e.queries for e in rec.examples) <= 400 and sum(e.queries for e in rec.examples) == probs.forward_rows
    noisy = Counting(Noisy(robust_cnn)).eval()
    rec = robustaudit.audit(noisy, x, y, eps=EPS, access="labels", budget=300, eot=5)
    assert [a["name"] for a in rec.adaptations] == ["eot"]
    assert sum(e.queries for e in rec.examples) == noisy.forward_rows and max(e.queries for e in rec.examples) <= 300


def test_black_box_beating_white_box_adapts_the_survivors(robust_cnn, test_set) -> None:
    x, y = test_set[0][:48], test_set[1][:48]
    masked = Quantised(robust_cnn).eval()
    rec = robustaudit.audit(masked, x, y, eps=EPS, attacks=[robustaudit.attacks.PGD(steps=10),
                                                            robustaudit.attacks.Square(n_queries=300)], checks=False)
    assert "gradient_masking" in rec.flag_codes
    assert [(a["name"], a["reason"]) for a in rec.adaptations] == [("straight_through", "gradient_masking")]
    assert [a.name for a in rec.attacks] == ["pgd", "square", "pgd+bpda", "square+bpda"]
    assert rec.naive_robust_accuracy is not None and rec.robust_accuracy < rec.naive_robust_accuracy
    assert _verified(rec, masked, x, y) == 1.0
