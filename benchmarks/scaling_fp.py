"""Benign false positives of `scaling detect`'s bundled calibration, at three (image size -> model input) settings.

Thresholds: the default ones (`bundled_thresholds`: 128 crops of the bundled photographs, seed 0, 99.5th percentile,
Bonferroni over the 5 candidate scalers, rescaling and filtering thresholds x BUNDLED_MARGIN), and the earlier
default for comparison (64 crops, the 99.5th percentile for every scaler). Held out: 10 fresh crops of each of the
16 photographs (seed 1) and each whole photograph resized, none seen in calibration. Prints the share flagged per
detector and by the ensemble, and, for scale, how many attack images (one per vulnerable scaler, QP attack at 2 grey
levels) each flags.

    python benchmarks/scaling_fp.py
"""

from __future__ import annotations

import time

import numpy as np

from robustaudit.scaling import Thresholds, calibrate, scaling_attack, scores
from robustaudit.scaling.calibrate import BUNDLED_MARGIN, BUNDLED_N
from robustaudit.scaling.images import benign_images, bundled_photos
from robustaudit.scaling.scalers import VULNERABLE, Scaler
from robustaudit.types import Size

SETTINGS: list[tuple[Size, Size]] = [((256, 256), (64, 64)), ((512, 512), (128, 128)), ((448, 448), (224, 224))]


def held_out(shape: Size) -> np.ndarray:
    crops = benign_images(10 * len(bundled_photos()), shape, seed=1)
    whole = np.stack([Scaler("pillow", "area").resize(p, shape) for p in bundled_photos()])
    return np.concatenate([crops, whole])


def main() -> None:
    print(f"{'image -> input':<20}{'thresholds':<34}{'rescaling':>10}{'filtering':>10}{'spectrum':>10}"
          f"{'ensemble':>10}{'flagged':>9}{'attacks flagged':>17}")
    for shape, size in SETTINGS:
        start = time.perf_counter()
        cal = [scores(b, size, VULNERABLE) for b in benign_images(BUNDLED_N, shape, seed=0)]
        new = calibrate(cal, size, VULNERABLE)
        new = Thresholds(size=size, rescaling={k: v * BUNDLED_MARGIN for k, v in new.rescaling.items()},
                         filtering=new.filtering * BUNDLED_MARGIN, steganalysis=new.steganalysis)
        old_cal = cal[:64]
        old = calibrate(old_cal, size, VULNERABLE)
        old = Thresholds(size=size, rescaling={s.name: float(np.percentile([c.rescaling[s.name] for c in old_cal],
                                                                           99.5)) for s in VULNERABLE},
                         filtering=old.filtering, steganalysis=old.steganalysis)
        test = [scores(b, size, VULNERABLE) for b in held_out(shape)]
        sources, targets = benign_images(len(VULNERABLE), shape, seed=2), benign_images(len(VULNERABLE), size, seed=3)
        attacks = [scores(scaling_attack(s, t, sc, eps=[2]).image, size, VULNERABLE)
                   for s, t, sc in zip(sources, targets, VULNERABLE, strict=True)]
        now = f"now: {BUNDLED_N}, Bonferroni, x{BUNDLED_MARGIN}"
        for label, th in (("before: 64 crops, no correction", old), (now, new)):
            verdicts = [th.judge(s) for s in test]
            rates = {k: np.mean([v.flags[k] for v in verdicts]) for k in ("rescaling", "filtering", "steganalysis")}
            flagged = sum(v.attack for v in verdicts)
            caught = sum(th.judge(a).attack for a in attacks)
            sizes = f"{shape[0]}x{shape[1]} -> {size[0]}x{size[1]}"
            print(f"{sizes:<20}{label:<34}{rates['rescaling']:>10.3f}"
                  f"{rates['filtering']:>10.3f}{rates['steganalysis']:>10.3f}{flagged / len(verdicts):>10.3f}"
                  f"{f'{flagged}/{len(verdicts)}':>9}{f'{caught}/{len(attacks)}':>17}")
        print(f"  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
