"""Image-scaling attacks (Xiao et al. 2019, Quiring et al. 2020) and their detection (Decamouflage)."""

import robustaudit.scaling._requires  # noqa: F401  (the [scaling] extra, checked first)
from robustaudit.scaling.attack import ScalingAttackResult, scaling_attack
from robustaudit.scaling.calibrate import Thresholds, Verdict, calibrate, fit_threshold
from robustaudit.scaling.detect import Scores, scores
from robustaudit.scaling.scalers import Scaler
from robustaudit.types import parse_size

__all__ = ["ScalingAttackResult", "Scaler", "Scores", "Thresholds", "Verdict", "calibrate", "fit_threshold",
           "parse_size", "scaling_attack", "scores"]
