"""Target classes for a targeted audit: one given class, the second most likely class, or a seeded random one."""

from __future__ import annotations

import torch

from robustaudit.errors import InputError
from robustaudit.models.base import LabelModel
from robustaudit.ops.rng import generator
from robustaudit.oracle import Oracle
from robustaudit.types import Access


def choose_targets(
    how: str, model: LabelModel, x: torch.Tensor, y: torch.Tensor, *, seed: int, num_classes: int | None = None,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(target per example, queries spent per example choosing it).

    how: a class index N (every example aims at N; examples of class N are not attacked), "second" (the
    second most likely class: one score query per example, so the model must offer scores), or "random" (a
    class other than the label, uniform, from the seed; the number of classes is the model's when it shows
    scores, else `num_classes`, else the largest label + 1).
    """
    n = len(y)
    oracle = Oracle(model, n)
    if how == "second":
        if Access(model.access) < Access.SCORES:
            raise InputError("--target second needs one score query per example, but the model offers only labels; "
                             "give --target-class N or --target random")
        z = torch.cat([oracle.scores(xb.to(model.device), idx).cpu()
                       for xb, idx in zip(x.split(batch_size), torch.arange(n).split(batch_size), strict=True)])
        return z.topk(2, dim=1).indices[:, 1], oracle.queries
    if how == "random":
        k = num_classes
        if k is None and Access(model.access) >= Access.SCORES:
            k = int(oracle.scores(x[:1].to(model.device), torch.zeros(1, dtype=torch.long)).shape[1])
        k = k if k is not None else int(y.max()) + 1
        if k < 2:
            raise InputError("a random target needs at least 2 classes")
        shift = torch.randint(1, k, (n,), generator=generator(seed, "targets"))
        return (y + shift) % k, oracle.queries
    try:
        cls = int(how)
    except ValueError:
        raise InputError(f"--target must be a class index, 'second' or 'random', got {how!r}") from None
    if cls < 0:
        raise InputError(f"the target class must be >= 0, got {cls}")
    return torch.full((n,), cls, dtype=torch.long), oracle.queries
