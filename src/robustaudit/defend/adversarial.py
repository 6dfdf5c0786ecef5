"""The training losses of the white-box defences, one function per paper.

PGD-AT (Madry et al., ICLR 2018):  min_θ E[ max_{δ ∈ B_eps} CE(f_θ(x + δ), y) ]
    the inner max by `steps` of PGD from a uniform random start, step 2.5·eps/steps (the paper's rule).
TRADES (Zhang et al., ICML 2019):  min_θ E[ CE(f_θ(x), y) + β · max_{δ ∈ B_eps} KL(f_θ(x) ‖ f_θ(x + δ)) ]
    the inner max of the KL from x + 0.001·N(0, I), the same steps; β = 6 in the paper.
Both take any norm's projection and direction from `ops.lp`, so they share the attacks' mechanics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustaudit.models.torch import set_eval
from robustaudit.ops.lp import ops_for
from robustaudit.threat import ThreatModel
from robustaudit.types import Norm


def _kl(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_clean ‖ p_adv), summed over classes, averaged over the batch."""
    return F.kl_div(F.log_softmax(adv_logits, 1), F.log_softmax(clean_logits, 1), reduction="batchmean",
                    log_target=True)


def inner_max(net: nn.Module, x: torch.Tensor, start: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor],
              threat: ThreatModel, steps: int) -> torch.Tensor:
    """`steps` of projected steepest ascent on `objective(net(x'))` from `start`, in eval mode (batch-norm
    statistics untouched), step 2.5·eps/steps; the module's mode is restored."""
    ops = ops_for(threat.norm)
    mode = net.training
    set_eval(net)
    adv = ops.project(start, x, threat.eps, threat.bounds).detach()
    for _ in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(net(adv)), adv)
        adv = ops.project(adv + 2.5 * threat.eps / steps * ops.direction(grad), x, threat.eps, threat.bounds).detach()
    net.train(mode)
    return adv


def pgd_at_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int,
                gen: torch.Generator) -> torch.Tensor:
    """Madry's loss: cross-entropy at the PGD point found from a random start in the ball."""
    adv = inner_max(net, x, random_start(x, threat, gen), lambda z: F.cross_entropy(z, y, reduction="sum"), threat,
                    steps)
    return F.cross_entropy(net(adv), y)


def random_start(x: torch.Tensor, threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
    """PGD's random start in the ball: uniform noise (Linf), Gaussian (L2), drawn on the CPU by `gen`."""
    linf = threat.norm is Norm.LINF
    raw = torch.rand(x.shape, generator=gen) * 2 - 1 if linf else torch.randn(x.shape, generator=gen)
    return ops_for(threat.norm).sample_in_ball(x, threat.eps, raw.to(x.device), threat.bounds)


def trades_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int,
                gen: torch.Generator, beta: float = 6.0) -> torch.Tensor:
    """TRADES: natural cross-entropy plus β times the KL between the clean and the worst-case predictions."""
    with torch.no_grad():
        set_eval(net)
        clean = net(x).detach()
        net.train()
    start = x + 0.001 * torch.randn(x.shape, generator=gen).to(x.device)
    adv = inner_max(net, x, start, lambda z: _kl(clean, z) * len(x), threat, steps)
    logits = net(x)
    return F.cross_entropy(logits, y) + beta * _kl(logits, net(adv))
