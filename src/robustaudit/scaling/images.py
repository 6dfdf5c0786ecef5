"""Image files and the bundled benign photographs (scikit-image and scikit-learn ship them; no download)."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from robustaudit.errors import InputError
from robustaudit.extras import require
from robustaudit.types import Size

LOSSLESS = (".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
_SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
                   "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket")


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB, HxWx3."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{p} is not an image Pillow can read ({e})") from None


def lossless(path: str | Path) -> Path:
    """The path, if its format is lossless: a lossy one would destroy the pixel-exact attack."""
    p = Path(path)
    if p.suffix.lower() not in LOSSLESS:
        raise InputError(f"{p}: write the attack image in a lossless format ({', '.join(LOSSLESS)}); JPEG would "
                         "undo the pixel-exact changes")
    return p


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write the image in a lossless format."""
    p = lossless(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(p)


def image_files(paths: list[Path]) -> list[Path]:
    """Expand folders into the image files they hold (sorted), keep files as given."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.suffix.lower() in LOSSLESS + (".jpg", ".jpeg", ".webp"))
        elif p.is_file():
            found.append(p)
        else:
            raise InputError(f"{p} does not exist")
    if not found:
        raise InputError(f"no image files in {', '.join(map(str, paths))}")
    return found


@functools.cache
def bundled_photos() -> tuple[np.ndarray, ...]:
    """The 16 real photographs bundled with scikit-image and scikit-learn, as uint8 RGB."""
    from skimage import data

    load_sample_images = require("sklearn.datasets", "the bundled photographs", extra="scaling").load_sample_images

    photos = [getattr(data, name)() for name in _SKIMAGE_PHOTOS] + list(load_sample_images().images)
    return tuple(np.ascontiguousarray(np.repeat(p[:, :, None], 3, axis=2) if p.ndim == 2 else p[:, :, :3])
                 for p in photos)


def benign_images(n: int, shape: Size = (512, 512), seed: int = 0, photos: list[int] | None = None) -> np.ndarray:
    """n distinct benign images of `shape`: random square-ish crops (40-100% of the short side) of the bundled
    photographs, mirrored at random, resized with area interpolation. `photos` restricts the source photographs
    (indices into bundled_photos()), e.g. to split calibration and test sets by photograph."""
    pool = bundled_photos()
    chosen = list(range(len(pool))) if photos is None else photos
    rng = np.random.default_rng(seed)
    out = np.empty((n, *shape, 3), dtype=np.uint8)
    for i in range(n):
        p = pool[chosen[i % len(chosen)]]
        h, w = p.shape[:2]
        side = rng.uniform(0.4, 1.0) * min(h, w)
        ch = int(min(h, side * rng.uniform(0.8, 1.25) * shape[0] / shape[1]))
        cw = int(min(w, side))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = p[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = cv2.resize(np.ascontiguousarray(crop), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return out
