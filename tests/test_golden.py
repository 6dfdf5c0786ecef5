"""The golden case (shared/golden): standard must match the reference AutoAttack's 0.222 robust accuracy
(within the one or two examples its randomness moves), and `fast` must reach standard's figure at no more
than a third of its cost. Without the shared folder the relative checks run on the demo model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustaudit import ThreatModel, evaluate, load_model
from robustaudit.results import EvalRecord

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"
REFERENCE_AA = 0.222


def cost(rec: EvalRecord) -> float:
    """Compute in gradient units: a forward-only pass costs about half a forward+backward pass."""
    grads = sum(a.gradients for a in rec.attacks)
    forwards = sum(a.forwards for a in rec.attacks) - grads
    return grads + 0.5 * forwards


@pytest.fixture(scope="module")
def case(demo_paths) -> tuple[str, torch.Tensor, torch.Tensor, bool]:
    if (GOLDEN / "digits_cnn.pt").is_file():
        model, data, golden = str(GOLDEN / "digits_cnn.pt"), GOLDEN / "digits_test.npz", True
    else:
        model, data, golden = demo_paths[0], Path(demo_paths[1]), False
    d = np.load(data)
    return model, torch.from_numpy(d["x"]), torch.from_numpy(d["y"]).long(), golden


@pytest.mark.slow
def test_fast_matches_standard_at_a_third_of_the_cost(case) -> None:
    model_path, x, y, golden = case
    model = load_model(model_path)
    threat = ThreatModel(norm="linf", eps=0.1)
    standard = evaluate(model, x, y, threat, "standard", seed=0)
    fast = evaluate(model, x, y, threat, "fast", seed=0)
    one = 1 / len(x)
    if golden:
        assert standard.robust_accuracy <= REFERENCE_AA + 2 * one + 1e-9
        assert fast.robust_accuracy <= REFERENCE_AA + 2 * one + 1e-9
    assert fast.robust_accuracy <= standard.robust_accuracy + one + 1e-9
    assert cost(fast) <= cost(standard) / 3
    assert standard.flags == [] and fast.flags == []


@pytest.mark.slow
def test_fast_matches_standard_on_an_adversarially_trained_model(robust_cnn, digits8) -> None:
    """Where many examples survive (PGD-AT), `fast`'s fewer APGD-T targets must not cost strength."""
    x, y = digits8
    x, y = x[1400:1520], y[1400:1520]
    threat = ThreatModel(norm="linf", eps=0.1)
    standard = evaluate(robust_cnn, x, y, threat, "standard", seed=0)
    fast = evaluate(robust_cnn, x, y, threat, "fast", seed=0)
    assert 0.2 < standard.robust_accuracy < 0.9  # examples survive: the comparison means something
    assert fast.robust_accuracy <= standard.robust_accuracy + 1 / len(x) + 1e-9
    assert cost(fast) <= cost(standard) / 3
