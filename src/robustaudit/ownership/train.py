"""Training inside the ownership pipeline: Adam on cross-entropy with the masks held (`sparsity.fixed_masks`)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from robustaudit.models.torch import set_eval


def fit(module: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float = 1e-3, batch: int = 64,
        seed: int = 0, what: str = "training", bar: Progress | None = None) -> None:
    """`epochs` of Adam over shuffled batches, in place, on the module's device; one step of `bar` per epoch."""
    device = next(module.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    task = None if bar is None else bar.add_task(what, total=epochs)
    with contextlib.suppress(NotImplementedError):  # a torch.export program trains in the mode it was exported in
        module.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            opt.zero_grad()
            F.cross_entropy(module(x[idx].to(device)), y[idx].to(device)).backward()
            opt.step()
        if bar is not None and task is not None:
            bar.advance(task)
    set_eval(module)
