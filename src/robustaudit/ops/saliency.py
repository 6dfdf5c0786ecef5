"""The feature-guided saliency distribution of Wicker, Huang & Kwiatkowska (TACAS 2018): SIFT keypoints of the
image, each an isotropic Gaussian over pixels, weighted by its response (spec feature-guided-testing.md §1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robustaudit.extras import require
from robustaudit.types import Bounds


@dataclass
class Saliency:
    """Keypoints as (row, col) centres and σ in pixels, their weights (the mutable categorical distribution), the
    image size, and where they came from: "sift", "grid" (SIFT found none) or "features" (a table's columns)."""

    centres: np.ndarray
    sigmas: np.ndarray
    weights: np.ndarray
    height: int
    width: int
    source: str

    def sample(self, k: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` pixel indices (row·width + col) drawn from keypoint k's Gaussian, clipped to the image and
        rounded down (SafeCV's `visit_helper`); a table's feature k is itself."""
        if self.source == "features":
            return np.full(count, k, dtype=np.int64)
        pts = rng.normal(self.centres[k], self.sigmas[k], size=(count, 2))
        r = np.clip(np.floor(pts[:, 0]), 0, self.height - 1).astype(np.int64)
        c = np.clip(np.floor(pts[:, 1]), 0, self.width - 1).astype(np.int64)
        return r * self.width + c


def sift_saliency(image: torch.Tensor, bounds: Bounds, *, sigma_constant: float = 15.0,
                  inflation: int | None = None) -> Saliency:
    """SIFT (OpenCV) on the grey image scaled to 0-255; an image whose larger side is under 100 pixels is first
    enlarged by `inflation` (default 15, SafeCV's constant) and the keypoints mapped back. Weights = response /
    Σ response; σ = (size + `sigma_constant`) / inflation. No keypoint: a 3×3 grid of pseudo-keypoints with
    σ = side / 4 and equal weights (the spec's fallback). A non-image input (tables): one feature per column, equal
    weights, so the game learns which columns matter."""
    if image.dim() != 3:
        n = image.numel()
        centres = np.stack([np.zeros(n), np.arange(n, dtype=np.float64)], 1)
        return Saliency(centres, np.zeros(n), np.full(n, 1 / n), 1, n, "features")
    cv2 = require("cv2", "the feature-guided attack's SIFT keypoints")
    _, h, w = image.shape
    grey = ((image.double().mean(0) - bounds.low) / bounds.width * 255).clamp(0, 255).round().byte().cpu().numpy()
    f = inflation if inflation is not None else (15 if max(h, w) < 100 else 1)
    big = cv2.resize(grey, (w * f, h * f), interpolation=cv2.INTER_LINEAR) if f > 1 else grey
    points = [kp for kp in cv2.SIFT_create().detect(big, None) if kp.response >= 0]
    if points:
        centres = np.array([[kp.pt[1] / f, kp.pt[0] / f] for kp in points])
        sigmas = np.array([(kp.size + sigma_constant) / f for kp in points])
        resp = np.array([kp.response for kp in points], dtype=np.float64)
        weights = resp / resp.sum() if resp.sum() > 0 else np.full(len(points), 1 / len(points))
        return Saliency(centres, sigmas, weights, h, w, "sift")
    rows, cols = np.meshgrid((np.arange(3) + 0.5) * h / 3, (np.arange(3) + 0.5) * w / 3, indexing="ij")
    centres = np.stack([rows.ravel(), cols.ravel()], 1)
    return Saliency(centres, np.full(9, max(h, w) / 4), np.full(9, 1 / 9), h, w, "grid")
