"""Data sources. `.npz` with `x` (float32, N×C×H×W or N×D, inside the bounds) and `y` (integer labels)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from robustaudit.errors import InputError


def load_npz(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read x and y from an .npz file, with errors that say how to fix the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"data file {p} does not exist")
    try:
        with np.load(p, allow_pickle=False) as f:
            keys = set(f.files)
            if not {"x", "y"} <= keys:
                raise InputError(f"{p} must hold arrays 'x' and 'y', found {sorted(keys) or 'none'}")
            x, y = f["x"], f["y"]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{p} is not a readable .npz file ({e}); save it with numpy.savez(path, x=x, y=y)") from None
    if x.dtype != np.float32:
        raise InputError(f"'x' in {p} must be float32, got {x.dtype}; convert with x.astype(np.float32)")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"'y' in {p} must hold integer labels, got {y.dtype}")
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))
