"""The black-box watermark (scheme 3): a secret trigger set of noise inputs with random labels trained into the
model. The labels are drawn uniformly and independently of any model, so a model made without the key matches each
with probability 1/K whatever it predicts: the number of matches is exactly Binomial(n, 1/K) under that null."""

from __future__ import annotations

import math
from typing import Any

import torch

from robustaudit.models.base import LabelModel
from robustaudit.oracle import Oracle
from robustaudit.stats import binomial_tail
from robustaudit.types import Bounds


def make_trigger(shape: tuple[int, ...], n: int, classes: int, bounds: Bounds, seed: int) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    """n inputs drawn uniformly in the bounds and labels uniform over the classes, from the key's seed. Images
    (C×H×W) are block noise, an 8×8 grid of uniform values per channel upsampled to H×W: abstract patterns a
    network memorises in a few epochs and keeps through fine-tuning, where pixel noise needs the paper's hundred."""
    gen = torch.Generator().manual_seed(seed)
    if len(shape) == 3 and min(shape[1:]) >= 8:
        grid = torch.rand((n, shape[0], 8, 8), generator=gen)
        u = torch.nn.functional.interpolate(grid, size=shape[1:], mode="nearest")
    else:
        u = torch.rand((n, *shape), generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    return bounds.low + (bounds.high - bounds.low) * u, y


def with_trigger(x: torch.Tensor, y: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
                 share: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set with the trigger set repeated until it is about `share` of it."""
    if len(tx) == 0:
        return x, y
    reps = max(1, math.ceil(share * len(x) / len(tx)))
    return torch.cat([x, tx.repeat(reps, *[1] * (tx.dim() - 1))]), torch.cat([y, ty.repeat(reps)])


def check_trigger(model: LabelModel, tx: torch.Tensor, ty: torch.Tensor, classes: int,
                  batch_size: int = 256) -> dict[str, Any]:
    """The suspect's top-1 labels on the trigger set through a counted oracle (one query per trigger input):
    accuracy, and the exact p-value of that many matches under an independent model."""
    oracle = Oracle(model, len(tx))
    device = getattr(model, "device", torch.device("cpu"))
    hits = 0
    for idx in torch.arange(len(tx)).split(batch_size):
        hits += int((oracle.labels(tx[idx].to(device), idx).cpu() == ty[idx]).sum())
    return {"trigger_accuracy": hits / len(tx), "trigger_hits": hits, "trigger_size": len(tx),
            "chance": 1.0 / classes, "p_value": binomial_tail(hits, len(tx), 1.0 / classes),
            "queries": int(oracle.queries.sum())}
