"""The identity of what was audited: sha256 of model files and weights, and of the examples' values."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from robustaudit.models.base import LabelModel
from robustaudit.run.data import ArraySource, Source


def fingerprint_file(path: str | Path | None) -> str | None:
    """sha256 of a file; for a folder, of its files' names and sizes; None when it is not a local path."""
    if path is None or not Path(path).exists():
        return None
    h = hashlib.sha256()
    if Path(path).is_dir():
        for entry in sorted(p for p in Path(path).rglob("*") if p.is_file()):
            h.update(f"{entry.relative_to(path)}:{entry.stat().st_size}\n".encode())
        return h.hexdigest()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_model(model: str | Path | nn.Module | LabelModel) -> str | None:
    """The model's identity: its file's sha256, or the sha256 of an nn.Module's parameters and buffers."""
    if isinstance(model, str | Path):
        return fingerprint_file(model)
    module = model if isinstance(model, nn.Module) else getattr(model, "module", None)
    if isinstance(module, nn.Module):
        return sha256_tensors(*module.state_dict().values())
    return None


def fingerprint_data(source: Source, data: object) -> str | None:
    """sha256 of the examples' values (the same for an .npz file and the same arrays given in Python); of the
    files of a folder or Parquet source."""
    if isinstance(source, ArraySource):
        return sha256_tensors(source.x, *(() if source.y is None else (source.y,)))
    return fingerprint_file(data) if isinstance(data, str | Path) else None


def sha256_tensors(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
