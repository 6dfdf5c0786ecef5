"""One contract, every registered attack: ball and bounds, verified success, exact counts, budgets,
determinism, batch independence, untouched inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import Counting, small_cnn
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from robustaudit.attacks.base import Attack
from robustaudit.attacks.registry import available, get
from robustaudit.errors import AccessError
from robustaudit.models import TorchModel, as_label_only, as_score_only
from robustaudit.ops.lp import ops_for
from robustaudit.threat import ThreatModel
from robustaudit.types import Norm

# Small settings so the contract runs in seconds; the defaults are exercised by the golden test.
SMALL = {"pgd": {"steps": 5}, "apgd-ce": {"n_iter": 8}, "apgd-dlr": {"n_iter": 8},
         "apgd-t": {"n_iter": 8, "n_targets": 3}, "fab-t": {"n_iter": 8, "n_targets": 3}, "pma": {"steps": 8},
         "square": {"n_queries": 40}, "nes": {"n_queries": 60, "samples": 10}, "spsa": {"n_queries": 60, "pairs": 4},
         "genetic": {"n_queries": 60}, "hsja": {"iterations": 2, "init_evals": 10},
         "cgba": {"iterations": 2, "n0": 8}, "cgba-h": {"iterations": 2, "n0": 8}, "rays": {"max_queries": 40},
         "surfree": {"steps": 3}, "adv2": {"steps": 5}, "sparse-rs": {"n_queries": 40}, "fgbb": {"max_queries": 40},
         "pgd-l0": {"steps": 5, "restarts": 1}}
IMAGE_ONLY = {"adv2"}  # hooks a convolutional layer


def small(name: str) -> Attack:
    return dataclasses.replace(get(name), **SMALL.get(name, {}))


def threat_for(name: str, eps: float, dim: int = 64, **kw: object) -> ThreatModel:
    """Linf at eps where the attack has it, else L2 at the eps of the same corner (eps·√dim), else L0 at
    eps·dim pixels (the sparse attacks)."""
    norms = get(name).norms
    if Norm.LINF in norms:
        return ThreatModel(eps=eps, **kw)  # type: ignore[arg-type]
    if Norm.L2 in norms:
        return ThreatModel(norm="l2", eps=eps * dim**0.5, **kw)  # type: ignore[arg-type]
    return ThreatModel(norm="l0", eps=max(1, round(eps * dim)), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def setup(digits8: tuple[torch.Tensor, torch.Tensor], trained_cnn: torch.nn.Module):
    x, y = digits8
    return x[1500:1524].clone(), y[1500:1524].clone(), trained_cnn


@pytest.mark.parametrize("norm,eps", [("linf", 0.15), ("l2", 1.0), ("l0", 8)])
@pytest.mark.parametrize("name", available())
def test_contract(setup, name: str, norm: str, eps: float) -> None:
    x, y, net = setup
    counted = Counting(net)
    model = TorchModel(counted)
    threat = ThreatModel(norm=norm, eps=eps)
    attack = small(name)
    if threat.norm not in attack.norms:
        pytest.skip(f"{name} is defined for {sorted(attack.norms)} only")
    x0 = x.clone()
    res = attack(model, x, y, threat, seed=3)
    assert torch.equal(x, x0), "inputs were mutated"
    # inside the ball and the bounds, and untouched where not successful
    d = ops_for(threat.norm).distance(res.x_adv.double(), x.double())
    assert bool((d <= eps + 1e-6).all())
    assert bool((res.x_adv >= 0).all() and (res.x_adv <= 1).all())
    assert torch.equal(res.x_adv[~res.success], x[~res.success])
    # success agrees with the model
    with torch.no_grad():
        pred = net(res.x_adv).argmax(1)
    assert torch.equal(res.success, (pred != y) & res.attacked)
    assert not bool((res.success & ~res.attacked).any())
    # counts are exactly what the model saw
    assert int(res.queries.sum()) == counted.forward_rows
    assert int(res.gradients.sum()) == counted.backward_rows
    if attack.requires.name == "GRADIENTS":
        assert int(res.gradients.sum()) > 0
    # determinism with a seed
    again = attack(TorchModel(net), x, y, threat, seed=3)
    assert torch.equal(again.success, res.success) and torch.equal(again.x_adv, res.x_adv)


@pytest.mark.parametrize("name", available())
def test_budget_is_never_exceeded(setup, name: str) -> None:
    x, y, net = setup
    budget = 7
    counted = Counting(net)
    res = small(name)(TorchModel(counted), x, y, threat_for(name, 0.15, max_queries=budget))
    # the clean check and the verification pass are outside the attack's budget: at most 2 more
    assert int(res.queries.max()) <= budget + 2
    assert int(res.queries.sum()) == counted.forward_rows


@pytest.mark.parametrize("name", [n for n in available() if n not in ("square", "genetic")])
def test_batch_independence(setup, name: str) -> None:
    """Per-example randomness: attacking in two halves gives the result of one batch. (Square shares one window
    per iteration across the batch, as AutoAttack does, and the GA draws its pairings per batch.)"""
    x, y, net = setup
    threat = threat_for(name, 0.15)
    attack, model = small(name), TorchModel(net)
    whole = attack(model, x, y, threat, seed=1)
    ids = torch.arange(len(x))
    a = attack(model, x[:10], y[:10], threat, seed=1, ids=ids[:10])
    b = attack(model, x[10:], y[10:], threat, seed=1, ids=ids[10:])
    assert torch.equal(torch.cat([a.success, b.success]), whole.success)
    assert torch.allclose(torch.cat([a.x_adv, b.x_adv]), whole.x_adv, atol=1e-5)


def test_white_box_attack_refuses_black_box_model(setup) -> None:
    x, y, net = setup
    with pytest.raises(AccessError):
        get("pgd")(as_score_only(TorchModel(net)), x, y, ThreatModel(eps=0.1))
    with pytest.raises(AccessError):
        get("square")(as_label_only(TorchModel(net)), x, y, ThreatModel(eps=0.1))


def test_square_runs_on_a_score_only_model(setup) -> None:
    x, y, net = setup
    res = small("square")(as_score_only(TorchModel(net)), x, y, ThreatModel(eps=0.3))
    assert int(res.gradients.sum()) == 0 and bool(res.success.any())


def test_clean_misclassified_examples_are_never_attacked(setup) -> None:
    x, y, net = setup
    wrong = (y + 1) % 10
    counted = Counting(net)
    res = small("pgd")(TorchModel(counted), x, wrong, ThreatModel(eps=0.15))
    with torch.no_grad():
        correct = net(x).argmax(1) == wrong
    assert torch.equal(res.attacked, correct)
    assert bool((res.queries[~correct] == 1).all()) and bool((res.gradients[~correct] == 0).all())


def test_tabular_inputs_and_two_classes() -> None:
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    x = torch.rand(16, 5, generator=g)
    with torch.no_grad():
        y = net(x).argmax(1)
    for name in available():
        if name in IMAGE_ONLY:
            with pytest.raises(AccessError, match="image classifier"):
                small(name)(TorchModel(net), x, y, threat_for(name, 0.5, dim=5))
            continue
        res = small(name)(TorchModel(net), x, y, threat_for(name, 0.5, dim=5))
        assert res.x_adv.shape == x.shape
    notes = small("apgd-t")(TorchModel(net), x, y, ThreatModel(eps=0.5)).notes
    assert any("targeted cross-entropy" in n for n in notes)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    k=st.integers(2, 12), seed=st.integers(0, 10_000), name=st.sampled_from(available()),
    norm=st.sampled_from(["linf", "l2", "l0"]), eps=st.floats(0.02, 0.5), tabular=st.booleans(),
)
def test_random_models_keep_the_contract(k: int, seed: int, name: str, norm: str, eps: float, tabular: bool) -> None:
    """Untrained CNNs and MLPs with 2..12 classes: ball, bounds, verified success, exact counts."""
    assume(Norm(norm) in small(name).norms and not (tabular and name in IMAGE_ONLY))
    g = torch.Generator().manual_seed(seed)
    if tabular:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net: torch.nn.Module = torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.ReLU(), torch.nn.Linear(16, k))
        x = torch.rand(6, 7, generator=g)
    else:
        net = small_cnn(k=k, seed=seed)
        x = torch.rand(6, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = net(x).argmax(1)
    y[0] = (y[0] + 1) % k  # one clean-misclassified example: never attacked
    if norm == "l0":
        eps = float(max(1, round(eps * 14)))  # 1..7 pixels
    counted = Counting(net)
    threat = ThreatModel(norm=norm, eps=eps)
    res = small(name)(TorchModel(counted), x, y, threat, seed=seed)
    assert bool((ops_for(threat.norm).distance(res.x_adv.double(), x.double()) <= eps + 1e-6).all())
    assert bool((res.x_adv >= 0).all() and (res.x_adv <= 1).all())
    assert torch.equal(res.x_adv[~res.success], x[~res.success])
    with torch.no_grad():
        assert torch.equal(res.success, (net(res.x_adv).argmax(1) != y) & res.attacked)
    assert not bool(res.attacked[0]) and int(res.queries[0]) == 1 and int(res.gradients[0]) == 0
    assert int(res.queries.sum()) == counted.forward_rows and int(res.gradients.sum()) == counted.backward_rows


@pytest.mark.parametrize("name", ["pgd", "pma", "fab-t"])
def test_early_stopping_changes_cost_not_result(setup, name: str) -> None:
    x, y, net = setup
    threat = ThreatModel(eps=0.12)
    on = small(name)(TorchModel(net), x, y, threat, seed=2)
    off = dataclasses.replace(small(name), early_stop=False)(TorchModel(net), x, y, threat, seed=2)
    assert torch.equal(on.success, off.success)
    if name != "fab-t":  # FAB without early stop keeps shrinking the norm, so its point may move
        assert torch.equal(on.x_adv, off.x_adv)
    assert int(off.gradients.sum()) > int(on.gradients.sum())


@pytest.mark.parametrize("name", available())
def test_targeted_success_means_reaching_the_target(setup, name: str) -> None:
    x, y, net = setup
    target = (y + 1) % 10
    threat = threat_for(name, 0.3, targeted=True)
    res = small(name)(TorchModel(net), x, y, threat, target=target, seed=0)
    with torch.no_grad():
        pred = net(res.x_adv).argmax(1)
    assert torch.equal(res.success, (pred == target) & res.attacked)
    if name not in ("fgsm", "square", "nes", "spsa", "genetic"):
        assert bool(res.success.any())
