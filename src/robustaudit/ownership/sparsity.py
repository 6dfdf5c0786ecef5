"""Masks of a sparse model: which weights are prunable, global magnitude pruning, the 2-D projection of a layer's
mask (a kernel counts as on when any of its entries survives), and masks held fixed through any training loop."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

from robustaudit.errors import InputError

Masks = dict[str, torch.Tensor]  # parameter name -> bool tensor shaped like it


def prunable(module: nn.Module) -> dict[str, torch.Tensor]:
    """The weights pruning acts on: every parameter named `*weight` with two or more dimensions (the weights of
    convolutions of any dimension and of linear layers; biases and norms stay dense)."""
    found: dict[str, torch.Tensor] = {name: p for name, p in module.named_parameters()
                                      if name.split(".")[-1] == "weight" and p.dim() >= 2}
    if not found:
        raise InputError("the model has no convolution or linear weights to prune")
    return found


def masks_of(module: nn.Module) -> Masks:
    """The current masks: a weight is kept when it is non-zero."""
    return {name: p.detach() != 0 for name, p in prunable(module).items()}


def sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    """The fraction of prunable weights that are zero."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total


def magnitude_masks(module: nn.Module, target: float, keep: Mapping[str, torch.Tensor] | None = None) -> Masks:
    """Global unstructured L1 pruning: keep exactly round((1 - target) * total) prunable weights of largest
    magnitude over all layers (weights already zero go first). `keep` (optional) restricts the survivors to it."""
    if not 0.0 <= target < 1.0:
        raise InputError(f"the sparsity must lie in [0, 1), got {target}")
    params = prunable(module)
    flat = torch.cat([(p.detach().abs() * (keep[n] if keep is not None else 1)).flatten().cpu()
                      for n, p in params.items()])
    n_keep = round((1.0 - target) * flat.numel())
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.topk(flat, n_keep).indices] = True
    out: Masks = {}
    start = 0
    for name, p in params.items():
        out[name] = chosen[start:start + p.numel()].view(p.shape).to(p.device)
        start += p.numel()
    return out


def apply_masks(module: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the weights outside the masks, in place."""
    params = prunable(module)
    with torch.no_grad():
        for name, m in masks.items():
            params[name].mul_(m.to(params[name].device))


def project(mask: torch.Tensor) -> torch.Tensor:
    """The out × in connection matrix of a layer's mask: 1 where any entry of the kernel survives."""
    return mask.reshape(mask.shape[0], mask.shape[1], -1).any(dim=2)


class _Fixed(nn.Module):
    """W -> W·mask, and on the signature's entries |W| held at least `floor` (their sign kept)."""

    mask: torch.Tensor
    floor: torch.Tensor

    def __init__(self, mask: torch.Tensor, floor: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))
        self.register_buffer("floor", floor if floor is not None else torch.zeros(0))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        w = w * self.mask
        if self.floor.numel() == 0:
            return w
        sign = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
        return torch.where(self.floor > 0, sign * torch.maximum(w.abs(), self.floor), w)


@contextmanager
def fixed_masks(module: nn.Module, masks: Mapping[str, torch.Tensor],
                floors: Mapping[str, torch.Tensor] | None = None) -> Iterator[nn.Module]:
    """Hold the masks (and the signature's magnitude floors) through any training loop run inside the block, as a
    parametrization of each weight; on exit the weights are made plain again, exactly zero outside the masks."""
    done: list[tuple[nn.Module, str]] = []
    try:
        for name, mask in masks.items():
            owner_name, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_name)
            floor = None if floors is None or name not in floors else floors[name]
            parametrize.register_parametrization(owner, attr, _Fixed(mask, floor), unsafe=True)
            done.append((owner, attr))
        yield module
    finally:
        for owner, attr in done:
            parametrize.remove_parametrizations(owner, attr, leave_parametrized=True)
