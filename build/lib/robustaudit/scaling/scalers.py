"""The image scalers of OpenCV and Pillow, and their linear model scale(A) = CL · A · CR (scaling-attacks spec §1.1).

Threat model: the attacker knows which library and interpolation the pipeline resizes with, and nothing else.
Images are uint8 (or float in [0, 255]), HxW or HxWxC, one channel at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from robustaudit.errors import InputError
from robustaudit.types import Size

LIBRARIES = ("opencv", "pillow")
METHODS = ("nearest", "bilinear", "bicubic", "area", "lanczos")
_CV = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
       "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
_PIL = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC, "area": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}



def as_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Check that `image` is HxW or HxWxC with pixel values in [0, 255] and no NaN."""
    a = np.asarray(image)
    if a.ndim not in (2, 3) or min(a.shape[:2]) < 1 or (a.ndim == 3 and not 1 <= a.shape[2] <= 4):
        raise InputError(f"{what} must be HxW or HxWxC with 1 to 4 channels, got shape {a.shape}")
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise InputError(f"{what} must hold numbers (uint8 or float in [0, 255]), got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise InputError(f"{what} contains NaN or infinite pixels")
    if a.min() < 0 or a.max() > 255:
        raise InputError(f"{what} pixels must lie in [0, 255], got [{a.min():g}, {a.max():g}]")
    return a


@dataclass(frozen=True)
class Scaler:
    """One library's resize with one interpolation, e.g. Scaler('opencv', 'bilinear')."""

    library: str = "opencv"
    method: str = "bilinear"

    def __post_init__(self) -> None:
        if self.library not in LIBRARIES:
            raise InputError(f"library must be one of {', '.join(LIBRARIES)}, got {self.library!r}")
        if self.method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")

    @property
    def name(self) -> str:
        return f"{self.library}-{self.method}"

    @classmethod
    def from_name(cls, name: str) -> Scaler:
        """'opencv-bilinear' -> Scaler('opencv', 'bilinear')."""
        library, _, method = name.partition("-")
        return cls(library, method)

    @property
    def area(self) -> Scaler:
        """The same library's area (box) scaler: every source pixel counts, so it cannot be attacked."""
        return Scaler(self.library, "area")

    def resize(self, image: np.ndarray, size: Size) -> np.ndarray:
        """The library's own resize to `size` (H, W). uint8 in, uint8 out (the library rounds); else float32."""
        a = np.asarray(image)
        h, w = size
        if a.ndim == 3:
            return np.stack([self.resize(a[:, :, c], size) for c in range(a.shape[2])], axis=2)
        if self.library == "opencv":
            src = a if a.dtype == np.uint8 else a.astype(np.float32)
            return np.asarray(cv2.resize(src, (w, h), interpolation=_CV[self.method]))
        if a.dtype == np.uint8:
            return np.asarray(Image.fromarray(a, mode="L").resize((w, h), _PIL[self.method]))
        return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((w, h), _PIL[self.method]))

    def matrices(self, shape: Size, size: Size) -> tuple[np.ndarray, np.ndarray]:
        """(CL, CR) with resize(A, size) = CL @ A @ CR for one channel of shape `shape`, recovered by resizing
        identity matrices with the library itself (float path; rows of CL and columns of CR sum to 1)."""
        (m, n), (mp, nq) = shape, size
        cl = self.resize(np.eye(m, dtype=np.float32) * 255, (mp, m)).astype(np.float64) / 255
        cr = self.resize(np.eye(n, dtype=np.float32) * 255, (n, nq)).astype(np.float64) / 255
        return cl / cl.sum(axis=1, keepdims=True), cr / cr.sum(axis=0, keepdims=True)


# The scalers the attack works against (spec §2); a detector that does not know the pipeline's scaler tries them all.
VULNERABLE = (Scaler("opencv", "nearest"), Scaler("opencv", "bilinear"), Scaler("opencv", "bicubic"),
              Scaler("opencv", "lanczos"), Scaler("pillow", "nearest"))


def considered_share(cl: np.ndarray, cr: np.ndarray) -> float:
    """Share of source pixels that influence the scaled image (Quiring et al.'s 'considered pixels')."""
    rows = (np.abs(cl) > 1e-12).any(axis=0).mean()
    cols = (np.abs(cr) > 1e-12).any(axis=1).mean()
    return float(rows * cols)
