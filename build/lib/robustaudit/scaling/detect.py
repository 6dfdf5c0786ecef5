"""Decamouflage's three detectors of image-scaling attacks (Kim et al., arXiv 2010.03735; spec §4), and a
pre-filter for a model's input pipeline.

Threat model: the defender sees the full-size image before the pipeline resizes it; the attacker crafted it with
the scaling attack against the pipeline's scaler (white-box) or the defender does not know which scaler
(black-box). Each detector gives a score per image; higher means more suspicious.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from PIL import Image, ImageFilter

from robustaudit.errors import InputError
from robustaudit.scaling.quality import mse, ssim
from robustaudit.scaling.scalers import Scaler, as_image
from robustaudit.types import Size

DETECTORS = ("rescaling", "filtering", "steganalysis")
SPECTRUM_THRESHOLD = 250  # on 20·ln|F| of a 512×512 image; other sizes are normalised to it
_REFERENCE_PIXELS = 512 * 512


def _uint8(image: np.ndarray) -> np.ndarray:
    """uint8, HxW (grey) or HxWx3: extra channels (alpha) are dropped."""
    a = as_image(image)
    a = np.round(a).astype(np.uint8) if a.dtype != np.uint8 else a
    if a.ndim == 3:
        a = a[:, :, 0] if a.shape[2] < 3 else a[:, :, :3]
    return np.ascontiguousarray(a)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf))


def _round_trip(image: np.ndarray, size: Size, scaler: Scaler) -> tuple[float, float, np.ndarray]:
    """(ratio, MSE, the round-tripped image): down with the scaler and up again, against the same with an area
    downscale (which an attack cannot steer)."""
    a = _uint8(image)
    back = scaler.resize(scaler.resize(a, size), a.shape[:2])
    reference = scaler.resize(scaler.area.resize(a, size), a.shape[:2])
    error = mse(a, back)
    return (error + 1) / (mse(a, reference) + 1), error, back


def rescaling(image: np.ndarray, size: Size, scaler: Scaler) -> tuple[float, float, float]:
    """(ratio, MSE, SSIM) of the image against its downscale-then-upscale with the pipeline's scaler both ways.

    MSE and SSIM are Decamouflage's scores. The ratio divides that MSE by the MSE of the same round trip with an
    area downscale: for a benign image both lose the same detail, whatever its texture, so the ratio stays near
    1; an attack image downscales to its hidden target, so the ratio is large."""
    ratio, error, back = _round_trip(image, size, scaler)
    return ratio, error, ssim(_uint8(image), back)


def filtering(image: np.ndarray) -> tuple[float, float]:
    """(MSE, SSIM) between the image and its 3×3 minimum filter, through a JPEG round trip (quality 75)."""
    a = _uint8(image)
    filtered = _jpeg(np.asarray(Image.fromarray(a).filter(ImageFilter.MinFilter(3))), 75)
    return mse(a, filtered), ssim(a, filtered)


def centred_spectrum_points(image: np.ndarray, threshold: float = SPECTRUM_THRESHOLD) -> int:
    """Steganalysis: the number of bright peaks (contours) in the centred log spectrum. Benign: 1 (the DC term);
    the grid of pixels a scaling attack rewrites adds periodic peaks. The spectrum is shifted by ln(512²/(H·W)) so
    one threshold serves every image size (|F| grows with the pixel count)."""
    a = _uint8(image)
    grey = a if a.ndim == 2 else cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    with np.errstate(divide="ignore"):
        spectrum = 20 * (np.log(np.abs(np.fft.fftshift(np.fft.fft2(grey)))) + np.log(_REFERENCE_PIXELS / grey.size))
    m8 = np.clip(np.round(np.nan_to_num(spectrum, neginf=0.0)), 0, 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", m8, [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = np.asarray(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))
    peaks = np.where(decoded > threshold, 255, 0).astype(np.uint8)
    blurred = cv2.GaussianBlur(cv2.medianBlur(peaks, 3), (21, 21), 0)
    contours, _ = cv2.findContours(blurred, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    return len(contours)


@dataclass(frozen=True)
class Scores:
    """The detectors' scores for one image. `rescaling` (the ratio, per candidate scaler), `filtering_mse` and
    `csp` decide; the rescaling MSE and SSIM (of the scaler with the highest ratio) and the filtering SSIM are
    Decamouflage's other scores, reported."""

    rescaling: dict[str, float]
    rescaling_mse: float
    rescaling_ssim: float
    filtering_mse: float
    filtering_ssim: float
    csp: int

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def scores(image: np.ndarray, size: Size, scalers: Sequence[Scaler]) -> Scores:
    """All three detectors on one image. `size` is the model's input size; `scalers` the pipeline's scaler, or
    every candidate when it is unknown (e.g. VULNERABLE)."""
    if not scalers:
        raise InputError("give at least one scaler the pipeline may use")
    trips = {s.name: _round_trip(image, size, s) for s in scalers}
    ratio, error, back = max(trips.values(), key=lambda r: r[0])  # SSIM only for the most suspicious scaler
    f = filtering(image)
    return Scores(rescaling={name: r[0] for name, r in trips.items()}, rescaling_mse=error,
                  rescaling_ssim=ssim(_uint8(image), back), filtering_mse=f[0], filtering_ssim=f[1],
                  csp=centred_spectrum_points(image))
