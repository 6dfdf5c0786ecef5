"""Orthonormal 2-D DCT-II and its inverse on the last two axes, as matrix products (device-agnostic).

Decision-based attacks draw their random directions among low spatial frequencies (CGBA, GeoDA, SurFree).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import torch


def dct_matrix(n: int, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """C with C[k, j] = s_k·cos(π(2j+1)k/(2n)), s_0 = √(1/n), s_k = √(2/n): orthonormal, so C⁻¹ = Cᵀ (scipy's
    orthonormal DCT-II of the identity's columns)."""
    return torch.from_numpy(scipy.fft.dct(np.eye(n), type=2, norm="ortho", axis=0)).to(device=device, dtype=dtype)


def dct2(t: torch.Tensor) -> torch.Tensor:
    """2-D DCT-II (orthonormal) over the last two axes."""
    ch, cw = dct_matrix(t.shape[-2], device=t.device, dtype=t.dtype), dct_matrix(t.shape[-1], device=t.device,
                                                                               dtype=t.dtype)
    return ch @ t @ cw.T


def idct2(t: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of `dct2`. With `size` = (H, W), t holds only the top-left (lowest-frequency) block of an H×W
    coefficient array whose other coefficients are zero: the result is H×W, without building the zeros."""
    h, w = size if size is not None else (t.shape[-2], t.shape[-1])
    ch = dct_matrix(h, device=t.device, dtype=t.dtype)[: t.shape[-2]]
    cw = dct_matrix(w, device=t.device, dtype=t.dtype)[: t.shape[-1]]
    return ch.T @ t @ cw


def as_image(shape: torch.Size | tuple[int, ...]) -> tuple[int, int, int]:
    """The (C, H, W) view of one input: images as they are, a vector of D features as a 1×1×D image."""
    if len(shape) == 3:
        return int(shape[0]), int(shape[1]), int(shape[2])
    if len(shape) == 2:
        return 1, int(shape[0]), int(shape[1])
    return 1, 1, math.prod(int(s) for s in shape)
