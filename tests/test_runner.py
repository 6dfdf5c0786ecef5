"""The evaluation cascade: monotone robust accuracy, exact accounting, the ensemble property, diagnostics."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import Counting
from torch import nn

from robustaudit import ThreatModel, evaluate
from robustaudit.attacks.registry import get, resolve
from robustaudit.attacks.score.square import Square
from robustaudit.errors import AccessError, InputError
from robustaudit.models import TorchModel, as_score_only
from robustaudit.stats import clopper_pearson


@pytest.fixture(scope="module")
def data(digits8):
    x, y = digits8
    return x[1400:1460].clone(), y[1400:1460].clone()


def quick(*names: str):
    params = {"pgd": {"steps": 10}, "apgd-ce": {"n_iter": 10}, "apgd-t": {"n_iter": 10, "n_targets": 3},
              "pma": {"steps": 10}, "fab-t": {"n_iter": 10, "n_targets": 2}}
    return [dataclasses.replace(get(n), **params.get(n, {})) for n in names]


def test_counts_equal_what_the_model_saw(trained_cnn, data) -> None:
    x, y = data
    counted = Counting(trained_cnn)
    rec = evaluate(TorchModel(counted), x, y, ThreatModel(eps=0.1), quick("pma", "apgd-t"), batch_size=16)
    assert sum(e.queries for e in rec.examples) == counted.forward_rows
    assert sum(e.gradients for e in rec.examples) == counted.backward_rows
    assert all(e.queries >= 1 for e in rec.examples)
    # per attack: forwards and gradients add up to the per-example totals outside the clean pass and checks
    assert sum(a.gradients for a in rec.attacks) <= counted.backward_rows


def test_record_fields_and_monotone_cascade(trained_cnn, data) -> None:
    x, y = data
    rec = evaluate(TorchModel(trained_cnn), x, y, ThreatModel(eps=0.1), quick("fgsm", "pgd", "apgd-t"))
    assert rec.n == len(x)
    n_correct = round(rec.clean_accuracy * rec.n)
    broken = 0
    for a in rec.attacks:  # each attack receives exactly the examples still robust
        assert a.attacked == n_correct - broken
        broken += a.broken
    assert round(rec.robust_accuracy * rec.n) == n_correct - broken
    assert rec.robust_accuracy_ci95 == clopper_pearson(n_correct - broken, rec.n)
    for e in rec.examples:
        clean_ok = e.clean_prediction == e.label
        assert e.robust == (clean_ok and e.broken_by is None)
        if not clean_ok:  # never attacked: only the clean pass and, maybe, the probe checks
            assert e.gradients <= 1 + 10 and e.broken_by is None
        if e.broken_by:
            assert e.linf <= 0.1 + 1e-6
        else:
            assert e.linf == 0 and torch.equal(rec.x_adv[e.index], x[e.index])


def test_ensemble_is_never_weaker_than_its_members(trained_cnn, data) -> None:
    x, y = data
    threat = ThreatModel(eps=0.08)
    members = ["fgsm", "pgd", "pma", "apgd-ce"]
    alone = [evaluate(TorchModel(trained_cnn), x, y, threat, quick(m), checks=False).robust_accuracy
             for m in members]
    together = evaluate(TorchModel(trained_cnn), x, y, threat, quick(*members), checks=False)
    assert together.robust_accuracy <= min(alone)
    assert together.robust_accuracy < max(alone) or min(alone) == max(alone)


def test_same_seed_same_result_and_batch_size_invariance(trained_cnn, data) -> None:
    x, y = data
    threat = ThreatModel(norm="l2", eps=0.8)
    a = evaluate(TorchModel(trained_cnn), x, y, threat, quick("pma", "apgd-ce"), seed=5, batch_size=60)
    b = evaluate(TorchModel(trained_cnn), x, y, threat, quick("pma", "apgd-ce"), seed=5, batch_size=7)
    assert [e.broken_by for e in a.examples] == [e.broken_by for e in b.examples]
    assert torch.allclose(a.x_adv, b.x_adv, atol=1e-5)


def test_presets_resolve_in_the_reference_order() -> None:
    assert [a.name for a in resolve("standard")] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert [a.name for a in resolve("fast")] == ["pma", "apgd-t"]
    assert [a.name for a in resolve("strongest")] == ["pma", "apgd-ce", "apgd-t", "fab-t", "square"]
    assert isinstance(resolve("standard")[3], Square) and resolve("standard")[3].n_queries == 5001
    # standard and attacks named one by one keep the reference's 9 APGD-T targets; only `fast` narrows them
    assert [getattr(a, "n_targets", None) for a in resolve("standard")] == [None, 9, 9, None]
    assert getattr(resolve("fast")[1], "n_targets", None) == 4 and resolve("pma, apgd-t")[1].n_targets == 9
    with pytest.raises(InputError):
        resolve("pgd,nope")


def test_bad_inputs_raise_input_errors(trained_cnn, data) -> None:
    x, y = data
    m = TorchModel(trained_cnn)
    t = ThreatModel(eps=0.1)
    for bad_x, bad_y in [
        (x.double(), y), (x[:, 0, 0], y[:1]), (x * 2, y), (x.masked_fill(x > 0.5, float("nan")), y),
        (x[0], y), (x, y.float()),
    ]:
        with pytest.raises(InputError):
            evaluate(m, bad_x, bad_y, t, "fgsm")
    with pytest.raises(InputError):
        evaluate(m, x, y + 10, t, "fgsm")
    with pytest.raises(AccessError):
        evaluate(as_score_only(m), x, y, t, "fast")
    for kwargs in ({"eps": 0}, {"eps": -1}, {"eps": float("nan")}, {"bounds": (1, 0)}, {"norm": "l7"},
                   {"max_queries": 0}):
        with pytest.raises(InputError):
            ThreatModel(**kwargs)


class Noisy(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + 0.05 * torch.randn_like(x))


class Quantized(nn.Module):
    """Rounds its input: zero gradients everywhere (masked), yet as breakable as the network inside."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


def _codes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks) -> set[str]:
    return {f.code for f in evaluate(TorchModel(model), x, y, ThreatModel(eps=0.1), attacks).flags}


def test_diagnostics_flag_what_they_should(trained_cnn, data, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = data
    assert _codes(trained_cnn, x, y, quick("fgsm")) == set()
    with monkeypatch.context() as mp:  # a randomised model may not confirm a success: counted, not raised
        mp.setenv("ROBUSTAUDIT_STRICT", "0")
        assert "randomized" in _codes(Noisy(trained_cnn), x, y, quick("pgd"))
    assert "probability_outputs" in _codes(nn.Sequential(trained_cnn, nn.Softmax(1)), x, y, quick("fgsm"))
    trained_cnn.train()
    try:
        assert "training_mode" in _codes(trained_cnn, x, y, quick("fgsm"))
    finally:
        trained_cnn.eval()
    masked = _codes(Quantized(trained_cnn), x[:20], y[:20], quick("pgd") + [Square(n_queries=300)])
    assert {"zero_gradients", "not_broken_at_large_eps", "gradient_masking"} <= masked

    class Detached(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return trained_cnn(x.detach())

    assert "non_differentiable" in _codes(Detached(), x, y, [Square(n_queries=20)])


def test_query_statistics_per_attack(trained_cnn, data) -> None:
    x, y = data
    rec = evaluate(as_score_only(TorchModel(trained_cnn)), x, y, ThreatModel(eps=0.15), [Square(n_queries=150)],
                   checks=False)
    (sq,) = rec.attacks
    assert sq.broken > 0 and sq.queries_successful_median is not None and sq.queries_successful_mean is not None
    assert 1 <= sq.queries_successful_median <= 150 and 1 <= sq.queries_successful_mean <= 150
    assert list(sq.success_curve) == ["10", "100", "1000"]
    rates = list(sq.success_curve.values())
    assert rates == sorted(rates) and rates[-1] == sq.broken / sq.attacked


def test_the_budget_holds_per_example_across_the_cascade(trained_cnn, data) -> None:
    from robustaudit.attacks.score.nes import NES

    x, y = data
    counted = Counting(trained_cnn)
    budget = 40
    rec = evaluate(as_score_only(TorchModel(counted)), x, y, ThreatModel(eps=0.05, max_queries=budget),
                   [Square(n_queries=30), NES(n_queries=1000, samples=6)], checks=False)
    assert rec.attacks[1].attacked > 0
    # the budget is the total: clean pass, both attacks and their verifications
    assert max(e.queries for e in rec.examples) <= budget
    assert any(e.queries > 30 + 2 for e in rec.examples)  # NES did use what Square left
    assert sum(e.queries for e in rec.examples) == counted.forward_rows
