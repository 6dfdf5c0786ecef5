"""Input validation shared by the Python API and the CLI: one sentence that says how to fix it."""

from __future__ import annotations

import torch

from robustaudit.errors import InputError
from robustaudit.types import Bounds


def check_inputs(x: torch.Tensor, y: torch.Tensor, bounds: Bounds) -> None:
    """x float32 N×C×H×W or N×D, finite, inside the bounds; y integer labels, one per row of x."""
    if not torch.is_tensor(x) or not torch.is_tensor(y):
        raise InputError("x and y must be tensors (or numpy arrays given to the CLI)")
    if x.dtype != torch.float32:
        got = str(x.dtype).replace("torch.", "")
        raise InputError(f"x must be float32, got {got}; convert with x.astype('float32')")
    if x.dim() not in (2, 4):
        raise InputError(f"x must be N×D (tables) or N×C×H×W (images), got shape {tuple(x.shape)}")
    if len(x) == 0:
        raise InputError("x holds no examples")
    if y.dim() != 1 or len(y) != len(x):
        raise InputError(f"y must hold one label per example: x has {len(x)} rows, y has shape {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
        raise InputError(f"y must hold integer class labels, got {str(y.dtype).replace('torch.', '')}")
    if not bool(torch.isfinite(x).all()):
        raise InputError("x contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < bounds.low or hi > bounds.high:
        raise InputError(
            f"x has values in [{lo:.4g}, {hi:.4g}], outside the bounds [{bounds.low}, {bounds.high}]; "
            "scale the data into the bounds (normalisation belongs inside the model) or pass other bounds"
        )
    if bool((y < 0).any()):
        raise InputError(f"labels must be >= 0, found {int(y.min())}")


def check_labels(y: torch.Tensor, num_classes: int) -> None:
    if int(y.max()) >= num_classes:
        raise InputError(f"label {int(y.max())} is outside the model's {num_classes} classes (0..{num_classes - 1})")
