"""A pre-filter for a model's input pipeline: resize full-size images as the pipeline does, refusing the ones
the Decamouflage ensemble flags as image-scaling attacks."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from robustaudit.errors import InputError
from robustaudit.scaling.calibrate import Thresholds, Verdict
from robustaudit.scaling.scalers import Scaler


class ScalingAttackDetected(Exception):
    """The image looks like an image-scaling attack; `verdict` holds the scores and flags."""

    def __init__(self, verdict: Verdict) -> None:
        flagged = ", ".join(k for k, v in verdict.flags.items() if v)
        super().__init__(f"image-scaling attack suspected (flagged by {flagged})")
        self.verdict = verdict


class ScalingGuard:
    """`guard(image)` returns the image resized to the model's input size, or raises ScalingAttackDetected.

    `scaler` is the pipeline's resize; it defaults to the thresholds' scaler when they were calibrated for one."""

    def __init__(self, thresholds: Thresholds, scaler: Scaler | None = None) -> None:
        if scaler is None:
            if len(thresholds.scalers) != 1:
                raise InputError("these thresholds cover several scalers: name the pipeline's scaler")
            scaler = thresholds.scalers[0]
        self.thresholds, self.scaler = thresholds, scaler

    def __call__(self, image: np.ndarray) -> np.ndarray:
        verdict = self.thresholds.check(image)
        if verdict.attack:
            raise ScalingAttackDetected(verdict)
        return self.scaler.resize(np.asarray(image), self.thresholds.size)

    def screen(self, images: Iterable[np.ndarray]) -> list[Verdict]:
        """The verdict for each image, without resizing."""
        return [self.thresholds.check(im) for im in images]
