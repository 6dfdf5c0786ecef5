"""ADV²-style joint attack on a classifier + interpreter pair (Zhang et al., "Interpretable Deep Learning under
Fire", USENIX Security 2020; spec gradient-attacks.md §9): fool the classifier while keeping the Grad-CAM map
close to the benign one, so a person checking the map sees nothing wrong.

White box; Linf or L2. Per step (one forward + one backward, counted by the oracle):

    m(x) = ReLU(Σ_k α_k A_k(x)) / ||·||      A = activations of the map layer; α_k = mean ∂z_c/∂A_k
    x ← P_ε( x + a·dir ∇[ CE(f(x), y) − λ·||m(x) − m(x₀)||² ] )     (−CE to the target class when targeted)

m(x) is the Grad-CAM map of the class the attack heads for (the target, or the best wrong class), with the weights
α taken at the current iterate and held fixed, which makes the map differentiable in x — the surrogate trick ADV²
uses for interpreters whose own gradient vanishes; m(x₀) is the benign map of the true class. Among the
adversarial iterates, the one with the closest map is kept. Cost per example: 1 + steps forward passes and
1 + 2·steps backward passes (the Grad-CAM weights take one per step). The maps a user is shown are measured with
captum (`interpret.maps`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustaudit.attacks.base import Attack, Context
from robustaudit.errors import AccessError
from robustaudit.interpret.maps import conv_layer


class _Activations:
    """Forward hook keeping a layer's output, and (when it is part of a backward pass) its gradient."""

    def __init__(self, layer: nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self.grad: torch.Tensor | None = None
        self.handle = layer.register_forward_hook(self._forward)

    def _forward(self, _: nn.Module, __: object, out: torch.Tensor) -> None:
        self.value = out
        if out.requires_grad:
            out.register_hook(self._backward)

    def _backward(self, g: torch.Tensor) -> None:
        self.grad = g


def _cam(acts: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    m = F.relu((alpha[:, :, None, None] * acts).sum(1)).flatten(1)
    return m / m.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass(frozen=True, kw_only=True)
class JointInterpretation(Attack):
    """Joint classifier + Grad-CAM attack (ADV²-style). Needs a local PyTorch model with a Conv2d layer."""

    name = "adv2"
    steps: int = 50
    rel_stepsize: float = 2.5  # a = rel_stepsize * eps / steps
    map_weight: float = 5.0  # λ
    layer: str | None = None  # default: the last Conv2d

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        module = getattr(ctx.oracle.model, "module", None)
        if not isinstance(module, nn.Module) or x.dim() != 4:
            raise AccessError("adv2 needs a local PyTorch image classifier (it hooks a convolutional layer)")
        acts = _Activations(conv_layer(module, self.layer)[1])
        try:
            return self._attack(ctx, x, y, acts)
        finally:
            acts.handle.remove()

    def _attack(self, ctx: Context, x: torch.Tensor, y: torch.Tensor,
                acts: _Activations) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(len(x), device=x.device)
        ctx.oracle.value_and_grad(x, idx, lambda z: z.gather(1, y[:, None]).squeeze(1))  # the benign map
        if acts.value is None or acts.grad is None:
            raise AccessError("adv2: the map layer took no part in the model's forward pass (name it with layer=)")
        benign = _cam(acts.value.detach(), acts.grad.mean((2, 3)).detach())
        labels, sign = y, 1.0
        if ctx.threat.targeted and ctx.target is not None:
            labels, sign = ctx.target, -1.0  # towards the target class
        gap = torch.zeros(len(x), device=x.device)

        def objective(z: torch.Tensor) -> torch.Tensor:
            """sign·CE − λ·||m(x) − m(x₀)||², m = the normalised Grad-CAM map of the class the attack heads for (the
            target, or the best wrong class); its weights come from this forward pass, detached."""
            if acts.value is None:
                raise AccessError("adv2: the map layer took no part in the model's forward pass")
            heading = labels if sign < 0 else z.detach().scatter(1, y[:, None], float("-inf")).argmax(1)
            (da,) = torch.autograd.grad(z.gather(1, heading[:, None]).sum(), acts.value, retain_graph=True)
            ctx.oracle.extra_backward(idx)
            distance = ((_cam(acts.value, da.mean((2, 3)).detach()) - benign) ** 2).sum(1)
            gap.copy_(distance.detach())
            return sign * F.cross_entropy(z, labels, reduction="none") - self.map_weight * distance

        step = self.rel_stepsize * ctx.threat.eps / self.steps
        best, best_gap = x.clone(), torch.full((len(x),), float("inf"), device=x.device)
        success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        xi = x.clone()
        for _ in range(self.steps):
            if not bool(ctx.oracle.affordable(idx).all()):
                break
            z, _, g = ctx.oracle.value_and_grad(xi, idx, objective)
            fooled = ctx.success(z, y, idx)
            better = fooled & (gap < best_gap)
            best[better], best_gap[better] = xi[better], gap[better]
            success |= fooled
            xi = ctx.project(xi + step * ctx.ops.direction(g), x)
        return best, success
