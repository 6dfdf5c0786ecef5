"""Explicit, splittable randomness: every draw comes from a generator seeded by (seed, stream, example id).

Per-example draws make results independent of the batch size and of how a run was split into shards.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*keys: object) -> int:
    """A 63-bit seed mixed from any keys (seed, shard, attack name, example id...)."""
    h = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def generator(*keys: object) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(*keys))
    return g


def per_example_noise(
    kind: str, like: torch.Tensor, ids: torch.Tensor, *keys: object
) -> torch.Tensor:
    """Noise shaped like `like`, one independent stream per example id: kind 'uniform' (in [-1,1]) or 'normal'."""
    shape = like.shape[1:]
    rows = []
    for i in ids.tolist():
        g = generator(*keys, int(i))
        if kind == "uniform":
            rows.append(torch.rand(shape, generator=g) * 2 - 1)
        elif kind == "normal":
            rows.append(torch.randn(shape, generator=g))
        else:
            raise ValueError(f"unknown noise kind {kind!r}")
    if not rows:
        return torch.zeros_like(like)
    return torch.stack(rows).to(device=like.device, dtype=like.dtype)
