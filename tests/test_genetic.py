"""The microbial GA: exact budgets, vertices of the Linf ball, and a free surrogate that makes it cheaper."""

from __future__ import annotations

import torch
from test_square import Constant

from robustaudit.attacks.score.genetic import Genetic
from robustaudit.models import TorchModel, as_score_only
from robustaudit.threat import ThreatModel


def test_budget_and_cost_per_generation() -> None:
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(6, dtype=torch.long)
    res = Genetic(n_queries=30)(as_score_only(TorchModel(Constant())), x, y, ThreatModel(eps=0.1))
    spent = res.queries - 1  # minus the clean check
    assert not bool(res.success.any())
    assert bool((spent <= 30).all()) and bool((spent >= 29).all())  # stops only when a generation can't be paid


def test_surrogate_seeding_is_free_and_helps(digits8, trained_cnn) -> None:
    x, y = digits8
    x, y = x[1600:1660], y[1600:1660]
    target = as_score_only(TorchModel(trained_cnn))
    threat = ThreatModel(eps=0.15, max_queries=20)
    seeded = Genetic(n_queries=20, surrogate=TorchModel(trained_cnn))(target, x, y, threat, seed=0)
    random = Genetic(n_queries=20)(target, x, y, threat, seed=0)
    assert int(seeded.gradients.sum()) == 0  # surrogate passes are never charged to the target
    assert int(seeded.success.sum()) > int(random.success.sum())
    assert int(seeded.queries.max()) <= 20 + 2
    d = (seeded.x_adv - x).abs()[seeded.success]
    inside = ((x - 0.15 >= 0) & (x + 0.15 <= 1))[seeded.success]
    assert torch.allclose(d[inside], torch.full_like(d[inside], 0.15), atol=1e-6)  # every pixel at x ± eps
