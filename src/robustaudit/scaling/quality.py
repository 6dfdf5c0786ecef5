"""Image similarity in the units of the scaling spec: uint8 pixels, data range 255."""

from __future__ import annotations

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio

_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
_RADIUS = 5  # scikit-image's Gaussian window for sigma 1.5: int(3.5 * 1.5 + 0.5)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Decamouflage's MSE: squared error summed over the channels, divided by H·W."""
    d = a.astype(np.float64) - b.astype(np.float64)
    return float((d**2).sum() / (a.shape[0] * a.shape[1]))


def psnr(reference: np.ndarray, image: np.ndarray) -> float:
    """PSNR in dB (infinite for identical images)."""
    if np.array_equal(reference, image):
        return float("inf")
    return float(peak_signal_noise_ratio(reference.astype(np.float64), image.astype(np.float64), data_range=255))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean-over-channels SSIM, Gaussian window sigma 1.5, sample covariance, data range 255 (spec §4): the value
    scikit-image's structural_similarity gives with those settings, computed with OpenCV's separable filter:
    `benchmarks/libraries.py` measures skimage's 5x slower on 512x512x3 (25 ms vs 124 ms), and detection computes
    it for every image, so it stays hand-written (a test checks it equals skimage's to 1e-5)."""
    x, y = a.astype(np.float32), b.astype(np.float32)  # float32: within 1e-5 of float64, 3x faster

    def blur(v: np.ndarray) -> np.ndarray:
        return np.asarray(cv2.GaussianBlur(v, (2 * _RADIUS + 1, 2 * _RADIUS + 1), 1.5))

    n = (2 * _RADIUS + 1) ** 2
    ux, uy = blur(x), blur(y)
    vx = (blur(x * x) - ux * ux) * n / (n - 1)
    vy = (blur(y * y) - uy * uy) * n / (n - 1)
    vxy = (blur(x * y) - ux * uy) * n / (n - 1)
    s = ((2 * ux * uy + _C1) * (2 * vxy + _C2)) / ((ux * ux + uy * uy + _C1) * (vx + vy + _C2))
    return float(s[_RADIUS:-_RADIUS, _RADIUS:-_RADIUS].mean())
