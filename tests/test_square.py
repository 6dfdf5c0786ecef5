"""Square Attack properties (spec test-oracles A.5)."""

from __future__ import annotations

import torch
from torch import nn

from robustaudit.attacks.score.square import Square, window_side
from robustaudit.models import TorchModel, as_score_only
from robustaudit.ops.rng import generator
from robustaudit.ops.schedules import square_p
from robustaudit.threat import ThreatModel
from robustaudit.types import Norm


def test_linf_proposal_changes_one_window_with_one_sign_per_channel() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, generator=g) * 0.5 + 0.25
    eps = 0.1
    best = (x + eps * (torch.randint(0, 2, x.shape, generator=g) * 2 - 1)).clamp(0, 1)
    gen = generator(0)
    for it in (0, 30, 300):
        p = square_p(it, 0.8)
        new = Square()._linf_proposal(x, best, p, eps, gen)
        new = torch.minimum(torch.maximum(new, x - eps), x + eps).clamp(0, 1)
        changed = (new != best).any(0).any(0)  # [H, W]
        rows, cols = changed.nonzero(as_tuple=True)
        s = window_side(Norm.LINF, p, 16, 16)
        assert int(rows.max() - rows.min()) < s and int(cols.max() - cols.min()) < s
        r0, c0 = int(rows.min()), int(cols.min())
        window = (new - x)[:, :, r0:r0 + s, c0:c0 + s]
        for ch in range(3):  # inside the window every pixel of a channel sits on the same vertex, x ± eps
            signs = window[:, ch].sign()
            assert bool((signs == signs[:, :1, :1]).all())
            assert torch.allclose(window[:, ch].abs(), torch.full_like(window[:, ch], eps), atol=1e-6)


class Constant(nn.Module):
    """Always predicts class 0: no perturbation can break it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([5.0, 0.0, -1.0]).expand(len(x), 3) + 0 * x.flatten(1)[:, :1]


def test_queries_are_one_per_iteration_plus_the_initial_point() -> None:
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(5, dtype=torch.long)
    res = Square(n_queries=37)(as_score_only(TorchModel(Constant())), x, y, ThreatModel(eps=0.3))
    assert not bool(res.success.any())
    assert res.queries.tolist() == [37 + 1] * 5  # + the clean check


def test_linf_iterates_sit_on_vertices(digits8, trained_cnn) -> None:
    x, y = digits8
    x, y = x[1600:1640], y[1600:1640]
    eps = 0.2
    res = Square(n_queries=300)(as_score_only(TorchModel(trained_cnn)), x, y, ThreatModel(eps=eps))
    ok = res.success
    assert bool(ok.any())
    d = (res.x_adv[ok] - x[ok]).abs()
    interior = ((x[ok] - eps) >= 0) & ((x[ok] + eps) <= 1)
    assert torch.allclose(d[interior], torch.full_like(d[interior], eps), atol=1e-6)


def test_l2_stays_in_the_ball_and_breaks_points(digits8, trained_cnn) -> None:
    x, y = digits8
    x, y = x[1600:1640], y[1600:1640]
    res = Square(n_queries=300)(as_score_only(TorchModel(trained_cnn)), x, y, ThreatModel(norm="l2", eps=1.5))
    assert bool(res.success.any())
    assert bool(((res.x_adv - x).flatten(1).norm(dim=1) <= 1.5 + 1e-5).all())
