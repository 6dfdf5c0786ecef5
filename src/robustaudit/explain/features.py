"""Interpretable features: which input elements move together when an explainer switches a feature off.

A mask is an integer tensor shaped like one input (C×H×W or D) holding each element's feature id 0..F-1:
"pixels" (all channels of a pixel together; a table's columns one each), "patches:K" (K×K squares),
"superpixels[:N]" (scikit-image SLIC, about N segments, per image).
"""

from __future__ import annotations

import torch

from robustaudit.errors import InputError
from robustaudit.extras import require


def feature_mask(x: torch.Tensor, kind: str = "pixels") -> torch.Tensor:
    """The feature mask of one input `x` (no batch dimension)."""
    name, _, arg = kind.partition(":")
    if x.dim() != 3:  # a table (or any flat input): one feature per element
        if name not in ("pixels", "columns"):
            raise InputError(f"features {kind!r} need image inputs (C×H×W); tables use pixels (columns)")
        return torch.arange(x.numel()).reshape(x.shape)
    c, h, w = x.shape
    if name == "pixels":
        ids = torch.arange(h * w).reshape(1, h, w)
    elif name == "patches":
        k = _whole(arg, 4, kind)
        if k < 1:
            raise InputError(f"patches:K needs K >= 1, got {k}")
        rows, cols = torch.arange(h)[:, None] // k, torch.arange(w)[None, :] // k
        ids = (rows * ((w + k - 1) // k) + cols)[None]
    elif name == "superpixels":
        segmentation = require("skimage.segmentation", "superpixel features")
        n = _whole(arg, 50, kind)
        img = x.detach().cpu().permute(1, 2, 0).double().numpy()
        seg = segmentation.slic(img, n_segments=n, compactness=0.1 if c == 1 else 10.0, start_label=0,
                                channel_axis=-1)
        ids = torch.as_tensor(seg, dtype=torch.long)[None]
        ids = torch.unique(ids, return_inverse=True)[1]  # consecutive ids
    else:
        raise InputError(f"unknown features {kind!r}: use pixels, patches:K or superpixels[:N]")
    return ids.expand(c, h, w).clone()


def _whole(arg: str, default: int, kind: str) -> int:
    try:
        return int(arg) if arg else default
    except ValueError:
        raise InputError(f"features {kind!r}: the number after ':' must be a whole number") from None


def group_sizes(mask: torch.Tensor) -> torch.Tensor:
    """Per element, the number of elements in its feature."""
    return torch.bincount(mask.flatten())[mask]


def per_feature(attr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A feature's attribution: the sum over its elements."""
    n = int(mask.max()) + 1
    return torch.zeros(n, dtype=attr.dtype).index_add_(0, mask.flatten(), attr.flatten().cpu())
