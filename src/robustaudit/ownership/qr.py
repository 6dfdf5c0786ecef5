"""The signature: a QR code (error correction H) made with segno, its function patterns (fixed for every code of a
version, so never embedded), and decoding with OpenCV's QR detector."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robustaudit.errors import InputError
from robustaudit.extras import require

MAX_VERSION = 6  # versions 1-6 have at most one alignment pattern and no version-information blocks


@dataclass(frozen=True)
class Code:
    """A QR code as an n×n 0/1 matrix (1 = dark) and the mask of its function patterns (1 = fixed module)."""

    version: int
    bits: np.ndarray
    function: np.ndarray

    @property
    def size(self) -> int:
        return int(self.bits.shape[0])


def function_patterns(version: int) -> np.ndarray:
    """Finder patterns with their separators (three 8×8 corners), timing row and column 6, the alignment pattern
    (versions 2-6: the 5×5 block centred at n-7) and the dark module: the modules every code of `version` shares."""
    n = 17 + 4 * version
    f = np.zeros((n, n), dtype=np.uint8)
    f[:8, :8] = f[:8, n - 8:] = f[n - 8:, :8] = 1
    f[6, :] = f[:, 6] = 1
    if version >= 2:
        f[n - 9:n - 4, n - 9:n - 4] = 1
    f[n - 8, 8] = 1
    return f


def make_code(text: str, max_size: int | None = None) -> Code:
    """The smallest QR code (level H, version <= 6) holding `text`; InputError when it is empty, too long, or the
    code would be larger than `max_size` modules."""
    segno = require("segno", "the ownership signature (a QR code)")
    if not text:
        raise InputError("the signature text is empty")
    try:
        qr = segno.make(text, error="h", micro=False, boost_error=False)
    except Exception as e:  # noqa: BLE001 - segno's DataOverflowError and friends: the text does not fit
        raise InputError(f"the signature {text!r} does not fit a QR code ({e})") from None
    version = int(qr.version)
    if version > MAX_VERSION:
        raise InputError(f"the signature {text!r} needs QR version {version}; at most {MAX_VERSION} "
                         f"({17 + 4 * MAX_VERSION}x{17 + 4 * MAX_VERSION} modules) is supported: shorten it")
    bits = np.array([list(row) for row in qr.matrix], dtype=np.uint8)
    if max_size is not None and len(bits) > max_size:
        raise InputError(f"the signature {text!r} needs a {len(bits)}x{len(bits)} QR code but the largest layer "
                         f"mask has room for {max_size}x{max_size}: shorten the signature (21x21 holds about 7 "
                         "characters at error correction H) or pick a wider layer")
    return Code(version, bits, function_patterns(version))


def decode(bits: np.ndarray) -> str | None:
    """The text of a QR matrix (1 = dark) read by OpenCV's detector, or None when it does not decode."""
    cv2 = require("cv2", "decoding the ownership QR code", extra="ownership")
    img = np.pad(1 - bits.astype(np.uint8), 4, constant_values=1) * 255  # white quiet zone of 4 modules
    img = np.kron(img, np.ones((8, 8), dtype=np.uint8))
    text, _points, _ = cv2.QRCodeDetector().detectAndDecode(img)
    return text or None
