"""MI-FGSM on a surrogate (Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018).

Surrogate passes are free: they never go through the target's oracle. Spec gradient-attacks.md §7.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustaudit.models.base import GradModel
from robustaudit.types import Bounds


def mi_fgsm(
    surrogate: GradModel,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    center: torch.Tensor,
    eps: float,
    steps: int = 10,
    step: float = 0.01,
    decay: float = 1.0,
    targeted: bool = False,
    bounds: Bounds | None = None,
) -> torch.Tensor:
    """Linf MI-FGSM from x inside the eps-box around `center`: ascend CE to `labels` (descend it when targeted).

    g_{t+1} = decay·g_t + ∇/||∇||_1 (per example); x_{t+1} = clip(x_t ± step·sign(g_{t+1})).
    """
    b = bounds or Bounds()
    sign = -1.0 if targeted else 1.0
    g = torch.zeros_like(x)
    xc = x.detach().clone()
    for _ in range(steps):
        xg = xc.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(surrogate.logits(xg), labels.to(surrogate.device), reduction="sum")
            (grad,) = torch.autograd.grad(loss, xg)
        grad = grad.to(x.device)
        g = decay * g + grad / grad.abs().flatten(1).sum(1).clamp_min(1e-12).reshape(-1, *([1] * (x.dim() - 1)))
        xc = xc + sign * step * g.sign()
        xc = torch.minimum(torch.maximum(xc, center - eps), center + eps).clamp(b.low, b.high)
    return xc
