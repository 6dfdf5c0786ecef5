"""Image-scaling attacks and their detection (Decamouflage), on real photographs; all in one run.

Benign images: crops and rescales (512x512) of the 16 photographs bundled with scikit-image and scikit-learn,
split by photograph: thresholds are calibrated (benign percentile, no attack seen) on the images of 8 photographs
and tested on those of the other 8, plus attack images crafted from the test half. Targets (128x128): real
handwritten digits (scikit-learn) and crops of the photographs. Attacks: the QP attack against OpenCV nearest,
bilinear, bicubic and Pillow nearest (512 -> 128).

- white-box: the detector knows the attacked scaler (rescaling uses it; thresholds calibrated with it);
- black-box: it does not (rescaling checks every vulnerable scaler, each with its own threshold).

Prints accuracy, false-positive and false-negative rates per detector and for the ensemble (2 of 3 and any),
then the runtime per 512x512 image of each detector.

    python benchmarks/scaling.py [--n 160] [--percentile 99.5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import cv2
import numpy as np
from sklearn.datasets import load_digits

from robustaudit.scaling import Scaler, Thresholds, calibrate, scaling_attack, scores
from robustaudit.scaling.detect import DETECTORS, Scores, centred_spectrum_points, filtering, rescaling
from robustaudit.scaling.images import benign_images, bundled_photos
from robustaudit.scaling.scalers import VULNERABLE

SIZE = (128, 128)
ATTACKED = (Scaler("opencv", "nearest"), Scaler("opencv", "bilinear"), Scaler("opencv", "bicubic"),
            Scaler("pillow", "nearest"))


def targets(n: int, seed: int) -> np.ndarray:
    """Half real digits (8x8 upscaled, dark on light), half photograph crops, all 128x128 RGB."""
    digits = load_digits().images
    photos = benign_images(n, SIZE, seed=seed + 1)
    rng = np.random.default_rng(seed)
    out = photos.copy()
    for i in range(0, n, 2):
        d = (255 - digits[rng.integers(len(digits))] * 255 / 16).astype(np.uint8)
        out[i] = np.repeat(cv2.resize(d, SIZE, interpolation=cv2.INTER_NEAREST)[:, :, None], 3, axis=2)
    return out


def rates(benign: list[bool], attacks: list[bool]) -> str:
    fp, fn = np.mean(benign), 1 - np.mean(attacks)
    acc = (len(benign) * (1 - fp) + len(attacks) * (1 - fn)) / (len(benign) + len(attacks))
    return f"accuracy {100 * acc:6.2f}%  FPR {100 * fp:5.2f}%  FNR {100 * fn:5.2f}%"


def table(title: str, th: dict[str, Thresholds], benign: dict[str, list[Scores]],
          attacks: list[tuple[str, Scores]]) -> None:
    print(f"\n{title}: {sum(len(b) for b in benign.values())} benign scorings, {len(attacks)} attacks")
    b_verdicts = [th[s].judge(x) for s, xs in benign.items() for x in xs]
    a_verdicts = [th[s].judge(x) for s, x in attacks]
    for d in DETECTORS:
        print(f"  {d:13s} {rates([v.flags[d] for v in b_verdicts], [v.flags[d] for v in a_verdicts])}")
    for vote in (2, 1):
        name = "ensemble 2/3" if vote == 2 else "ensemble any"
        line = rates([sum(v.flags.values()) >= vote for v in b_verdicts],
                     [sum(v.flags.values()) >= vote for v in a_verdicts])
        print(f"  {name:13s} {line}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=160, help="benign images per half (and attack images)")
    ap.add_argument("--percentile", type=float, default=99.5)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    half = len(bundled_photos()) // 2
    calib = benign_images(args.n, seed=0, photos=list(range(0, 2 * half, 2)))
    test = benign_images(args.n, seed=1, photos=list(range(1, 2 * half, 2)))
    tg = targets(args.n, seed=2)

    t0 = time.perf_counter()
    crafted = []
    for i in range(args.n):
        s = ATTACKED[i % len(ATTACKED)]
        r = scaling_attack(test[i], tg[i], s)
        crafted.append((s, r))
    secs = time.perf_counter() - t0
    print(f"crafted {args.n} attack images in {secs:.0f} s ({secs / args.n:.2f} s each)")
    for s in ATTACKED:
        rs = [r for a, r in crafted if a == s]
        print(f"  {s.name:16s} success {np.mean([r.success for r in rs]):.0%}  max |scale(A)-T| "
              f"{max(r.target_linf for r in rs):.0f} (bound {rs[0].bound:.2f})  PSNR(A, source) "
              f"{np.median([r.source_psnr for r in rs]):.1f} dB median  PSNR(scale(A), target) "
              f"{np.median([r.target_psnr for r in rs]):.1f} dB median")

    failed = sum(not r.success for _, r in crafted)
    crafted = [(s, r) for s, r in crafted if r.success]
    print(f"detection is measured on the {len(crafted)} successful attack images ({failed} failed ones left out: "
          "their downscale missed the target or they no longer look like the source)")
    white = {s.name: calibrate(calib, SIZE, [s], percentile=args.percentile) for s in ATTACKED}
    table("white-box (detector knows the scaler)", white,
          {s.name: [scores(b, SIZE, [s]) for b in test] for s in ATTACKED},
          [(s.name, scores(r.image, SIZE, [s])) for s, r in crafted])
    black = {"any": calibrate(calib, SIZE, VULNERABLE, percentile=args.percentile)}
    table("black-box (scaler unknown)", black, {"any": [scores(b, SIZE, VULNERABLE) for b in test]},
          [("any", scores(r.image, SIZE, VULNERABLE)) for _, r in crafted])

    print("\nruntime per 512x512 image (mean over 50, 1 process):")
    imgs = test[:50]
    timed: list[tuple[str, Callable[[np.ndarray], object]]] = [
                     ("rescaling (known scaler)", lambda im: rescaling(im, SIZE, ATTACKED[1])),
                     ("filtering", filtering), ("steganalysis", centred_spectrum_points),
                     ("ensemble (known scaler)", lambda im: scores(im, SIZE, [ATTACKED[1]])),
                     ("ensemble (unknown scaler)", lambda im: scores(im, SIZE, VULNERABLE))]
    for name, fn in timed:
        t = time.perf_counter()
        for im in imgs:
            fn(im)
        print(f"  {name:27s} {1000 * (time.perf_counter() - t) / len(imgs):6.1f} ms")


if __name__ == "__main__":
    main()
