"""Thresholds for the Decamouflage detectors (spec §4.1): from benign images alone (black-box mode, a
percentile of each score) or from a labelled set with attacks (white-box mode, the accuracy-maximising cut).
Thresholds are tied to the input size and the scaler(s) they were calibrated for, and saved with them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from robustaudit.errors import InputError
from robustaudit.paths import cache_dir
from robustaudit.scaling.detect import DETECTORS, Scores, scores
from robustaudit.scaling.images import benign_images
from robustaudit.scaling.scalers import Scaler
from robustaudit.types import Size

DEFAULT_PERCENTILE = 99.5
BUNDLED_N = 128  # bundled benign crops behind the default thresholds
# The bundled photographs are not the user's: the default thresholds keep this margin over their percentiles
# (benign rescaling ratios stay under ~2 for smooth scalers and ~3 for nearest; attacks give 2.6-10).
BUNDLED_MARGIN = 1.25
_CACHE_VERSION = 2  # bump when the detectors or the calibration change
BUNDLED_MAX_SIDE = 512  # the bundled photographs are mostly 300-640 px: larger images would be upsampled crops


@dataclass(frozen=True)
class Verdict:
    """One image: its scores, which detectors flag it, and the ensemble's decision (at least `vote` flags)."""

    scores: Scores
    flags: dict[str, bool]
    attack: bool

    def to_json(self) -> dict[str, object]:
        return {"attack": self.attack, "flags": self.flags, "scores": self.scores.to_json()}


@dataclass(frozen=True)
class Thresholds:
    """A score above its threshold flags the image; the ensemble flags at `vote` of the three detectors.
    `rescaling` holds one threshold per scaler the pipeline may use (one when the scaler is known); the rescaling
    detector flags when any of them is exceeded."""

    size: Size
    rescaling: dict[str, float]
    filtering: float
    steganalysis: float
    vote: int = 2
    provenance: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.rescaling:
            raise InputError("thresholds need at least one scaler")
        for name in self.rescaling:
            Scaler.from_name(name)
        if not 1 <= self.vote <= len(DETECTORS):
            raise InputError(f"vote must be 1 to {len(DETECTORS)}, got {self.vote}")

    @property
    def scalers(self) -> list[Scaler]:
        return [Scaler.from_name(name) for name in self.rescaling]

    def judge(self, s: Scores) -> Verdict:
        if set(s.rescaling) != set(self.rescaling):
            raise InputError(f"scores for scalers {sorted(s.rescaling)} do not match the thresholds' "
                             f"{sorted(self.rescaling)}")
        flags = {"rescaling": any(v > self.rescaling[k] for k, v in s.rescaling.items()),
                 "filtering": s.filtering_mse > self.filtering, "steganalysis": s.csp > self.steganalysis}
        return Verdict(scores=s, flags=flags, attack=sum(flags.values()) >= self.vote)

    def check(self, image: np.ndarray) -> Verdict:
        """Score and judge one full-size image (HxW or HxWxC, uint8)."""
        return self.judge(scores(image, self.size, self.scalers))

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Thresholds:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
            data["size"] = tuple(data["size"])
            return cls(**data)
        except FileNotFoundError:
            raise InputError(f"{p} does not exist: write it with 'robustaudit scaling calibrate'") from None
        except (ValueError, TypeError, KeyError) as e:
            raise InputError(f"{p} is not a thresholds file from 'robustaudit scaling calibrate' ({e})") from None


def calibrate(benign: Iterable[np.ndarray] | Sequence[Scores], size: Size, scalers: Sequence[Scaler], *,
              percentile: float = DEFAULT_PERCENTILE, vote: int = 2) -> Thresholds:
    """Black-box mode: each threshold is the `percentile` of the benign scores, so about (100 - percentile)% of
    benign images are flagged per detector. The rescaling detector flags when any of its k scalers' scores is over
    its threshold, so each of those is the 100 - (100 - percentile)/k percentile (Bonferroni) and the detector as a
    whole keeps the (100 - percentile)% rate. The spectrum-peak threshold never goes below 1 (the DC peak)."""
    if not 0 < percentile <= 100:
        raise InputError(f"percentile must be in (0, 100], got {percentile}")
    s = [b if isinstance(b, Scores) else scores(b, size, scalers) for b in benign]
    if len(s) < 2:
        raise InputError(f"calibration needs at least 2 benign images, got {len(s)}")

    def cut(values: list[float], q: float = percentile) -> float:
        return float(np.percentile(values, q))

    per_scaler = 100 - (100 - percentile) / len(scalers)
    return Thresholds(size=size, rescaling={sc.name: cut([x.rescaling[sc.name] for x in s], per_scaler)
                                            for sc in scalers},
                      filtering=cut([x.filtering_mse for x in s]),
                      steganalysis=max(cut([float(x.csp) for x in s]), 1.0), vote=vote,
                      provenance={"mode": "benign percentile", "percentile": percentile, "n_benign": len(s)})


def bundled_thresholds(shape: Size, size: Size, scalers: Sequence[Scaler], *, n: int = BUNDLED_N) -> Thresholds:
    """The default thresholds for images of `shape` resized to `size`: calibrated (benign percentile) on n crops of
    the photographs bundled with scikit-image and scikit-learn at that shape, the rescaling and filtering
    thresholds raised by BUNDLED_MARGIN (the user's images are not those photographs), computed once and cached.
    Images larger than the photographs are outside this calibration: their users calibrate on their own images."""
    h, w = shape
    if max(h, w) > BUNDLED_MAX_SIDE:
        raise InputError(f"images of {h}x{w} are outside the bundled calibration (sides up to {BUNDLED_MAX_SIDE} "
                         "px): calibrate on your own benign images of this size with 'robustaudit scaling calibrate' "
                         "and pass --thresholds")
    names = "+".join(sorted(s.name for s in scalers))
    path = cache_dir() / "scaling" / f"{h}x{w}-to-{size[0]}x{size[1]}-{names}-n{n}-v{_CACHE_VERSION}.json"
    if path.is_file():
        return Thresholds.load(path)
    th = calibrate(benign_images(n, shape, seed=0), size, scalers)
    th = Thresholds(size=th.size, rescaling={k: v * BUNDLED_MARGIN for k, v in th.rescaling.items()},
                    filtering=th.filtering * BUNDLED_MARGIN, steganalysis=th.steganalysis, vote=th.vote,
                    provenance={**th.provenance, "benign": f"{n} crops of the bundled photographs",
                                "margin": BUNDLED_MARGIN})
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    th.save(tmp)
    tmp.replace(path)
    return th


def fit_threshold(benign: Sequence[float], attacks: Sequence[float]) -> float:
    """White-box mode: the cut (score > cut flags) with the highest accuracy on a labelled set (cuts lie midway
    between observed scores; among equally good cuts the middle one)."""
    b, a = np.asarray(benign, dtype=np.float64), np.asarray(attacks, dtype=np.float64)
    if b.size == 0 or a.size == 0:
        raise InputError("fit_threshold needs benign and attack scores")
    values = np.unique(np.concatenate([b, a]))
    cuts = np.concatenate([[values[0] - 1], (values[:-1] + values[1:]) / 2, [values[-1]]])
    correct = (b[None, :] <= cuts[:, None]).sum(1) + (a[None, :] > cuts[:, None]).sum(1)
    best = np.flatnonzero(correct == correct.max())
    return float(cuts[best[len(best) // 2]])
