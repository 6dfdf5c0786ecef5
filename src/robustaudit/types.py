"""Small shared vocabulary: norms, access levels, bounds."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from robustaudit.errors import InputError


class Norm(enum.StrEnum):
    """The Lp norm of a threat model; distances are measured in input space (inside the bounds)."""

    LINF = "linf"
    L2 = "l2"
    L0 = "l0"  # the number of pixels changed (all channels of a pixel count once), each to any value in the bounds

    @classmethod
    def parse(cls, value: str | Norm) -> Norm:
        try:
            return cls(str(value.value if isinstance(value, Norm) else value).lower())
        except ValueError:
            raise InputError(f"unknown norm {value!r}: use one of {[n.value for n in cls]}") from None


class Access(enum.IntEnum):
    """How much of a model an auditor sees. Ordered: a higher level offers everything a lower one does."""

    LABELS = 1
    SCORES = 2
    GRADIENTS = 3


@dataclass(frozen=True)
class Bounds:
    """The valid input range [low, high] of every feature."""

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise InputError(f"bounds must be finite, got [{self.low}, {self.high}]")
        if not self.low < self.high:
            raise InputError(f"bounds must satisfy low < high, got [{self.low}, {self.high}]")

    @property
    def width(self) -> float:
        return self.high - self.low


def parse_number(value: str | float, what: str = "eps") -> float:
    """A number written as papers write it: `0.03`, `8/255`, `1e-3`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        if "/" in text:
            num, den = text.split("/")
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"{what} must be a number or a fraction such as 8/255, got {value!r}") from None


def parse_numbers(text: str, what: str = "eps") -> list[float]:
    """Comma-separated numbers or fractions: `2/255,4/255,0.05`."""
    return [parse_number(v, what) for v in text.split(",")]


Size = tuple[int, int]  # (height, width)


def parse_size(text: str) -> Size:
    """'224x224' (HEIGHTxWIDTH) -> (224, 224)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"size must be HxW, e.g. 224x224, got {text!r}") from None
    if h < 1 or w < 1:
        raise InputError(f"size must be positive, got {text!r}")
    return h, w


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    """How image folders and Parquet are read (ignored for arrays and .npz)."""

    size: tuple[int, int] | None = None
    channels: int = 3
    crop: bool = False
    image_column: str = "image"
    label_column: str = "label"
    classes: str | Path | Mapping[str, int] | None = None  # image folders: folder name -> the model's class index

    def to_json(self) -> dict[str, object]:
        return {"size": self.size, "channels": self.channels, "crop": self.crop, "image_column": self.image_column,
                "label_column": self.label_column,
                "classes": dict(self.classes) if isinstance(self.classes, Mapping) else
                None if self.classes is None else str(self.classes)}
