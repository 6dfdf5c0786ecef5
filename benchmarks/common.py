"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import torch
from torch import nn


class Frozen(nn.Module):
    """Hides a module from peers' `model.eval()` calls (a torch.export program refuses them); same outputs."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self._inner = [inner]  # not registered as a child, so train()/eval() do not reach it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._inner[0](x)


def peer_module(path: str) -> nn.Module:
    """The model as a user hands it to a peer library: its own copy, in the default (contiguous) memory layout.

    Our TorchModel moves conv weights to channels-last itself; the peers run the module as given.
    """
    from robustaudit import load_model
    from robustaudit.models import TorchModel
    from robustaudit.models.torch import set_memory_format

    model = load_model(path)
    if not isinstance(model, TorchModel):
        raise SystemExit(f"{path} should be a torch model")
    set_memory_format(model.module, torch.contiguous_format)
    return Frozen(model.module)


def robust_accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((net(x).argmax(1) == y) & (net(x_adv).argmax(1) == y)).float().mean())
