"""Three classic ways a defence masks gradients, as wrappers around any classifier (Athalye et al. 2018): the
test beds of adaptive evaluation (tests, benchmarks/adaptive.py) and a way for users to check that an audit
sees through them."""

from __future__ import annotations

import torch
from torch import nn


class Quantised(nn.Module):
    """Input quantisation to `levels` grey levels in front of `net`: zero gradients almost everywhere."""

    def __init__(self, net: nn.Module, levels: int = 8) -> None:
        super().__init__()
        self.net, self.steps = net, levels - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * self.steps) / self.steps)


class Saturated(nn.Module):
    """Probabilities of `scale` times the logits: saturated to 0 and 1 in float32 (distillation-style masking)."""

    def __init__(self, net: nn.Module, scale: float = 1000.0) -> None:
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x) * self.scale, dim=1)


class Noisy(nn.Module):
    """Gaussian input noise of standard deviation `sigma` at every call (a randomised defence)."""

    def __init__(self, net: nn.Module, sigma: float = 0.1) -> None:
        super().__init__()
        self.net, self.sigma = net, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + self.sigma * torch.randn_like(x))


def adversarially_trained(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, epochs: int = 8,
                          steps: int = 5, seed: int = 0) -> nn.Module:
    """`net` trained with PGD adversarial training (Madry et al. 2018): Linf `eps`, `steps` steps of eps·0.3
    from a random start, Adam 3e-3, batches of 64; seeded, in eval mode when done."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            xb, yb = x[idx], y[idx]
            delta = (torch.rand(xb.shape, generator=g) * 2 - 1) * eps
            for _ in range(steps):
                delta.requires_grad_(True)
                loss = nn.functional.cross_entropy(net((xb + delta).clamp(0, 1)), yb)
                (grad,) = torch.autograd.grad(loss, delta)
                delta = (delta + 0.3 * eps * grad.sign()).clamp(-eps, eps).detach()
            opt.zero_grad()
            nn.functional.cross_entropy(net((xb + delta).clamp(0, 1)), yb).backward()
            opt.step()
    return net.eval()
