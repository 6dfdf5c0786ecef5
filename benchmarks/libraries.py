"""Hand-written code versus the library that could replace it, side by side in one run: SSIM (ours on OpenCV's
separable Gaussian vs scikit-image's structural_similarity) and Clopper-Pearson (scipy's binomtest vs beta.ppf).

    python benchmarks/libraries.py
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import numpy as np
from scipy.stats import beta
from skimage.metrics import structural_similarity

from robustaudit.scaling.quality import ssim
from robustaudit.stats import clopper_pearson


def per_call(fn: Callable[[], object], repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'what':<34}{'ours (ms)':>10}{'library (ms)':>14}{'library / ours':>16}")
    for shape in [(64, 64, 3), (256, 256, 3), (512, 512, 3)]:
        a = rng.integers(0, 256, shape).astype(np.uint8)
        b = np.clip(a.astype(int) + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)
        ours = per_call(functools.partial(ssim, a, b), 10)
        lib = per_call(functools.partial(structural_similarity, a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=True, data_range=255), 10)
        print(f"{'ssim ' + 'x'.join(map(str, shape)):<34}{ours * 1e3:>10.2f}{lib * 1e3:>14.2f}{lib / ours:>16.1f}")
    lib = per_call(lambda: clopper_pearson(37, 200), 200)
    ours = per_call(lambda: (beta.ppf(0.025, 37, 164), beta.ppf(0.975, 38, 163)), 200)
    print(f"{'clopper-pearson (binomtest / beta)':<34}{ours * 1e3:>10.3f}{lib * 1e3:>14.3f}{lib / ours:>16.1f}")


if __name__ == "__main__":
    main()
