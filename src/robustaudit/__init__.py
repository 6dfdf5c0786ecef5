"""robustaudit: measure how robust a classifier really is against adversarial inputs."""

from robustaudit import attacks
from robustaudit.models import as_label_only, as_score_only, load_model
from robustaudit.run.runner import evaluate
from robustaudit.threat import ThreatModel
from robustaudit.types import Access, Bounds, Norm

__all__ = [
    "Access",
    "Bounds",
    "Norm",
    "ThreatModel",
    "as_label_only",
    "as_score_only",
    "attacks",
    "evaluate",
    "load_model",
]
__version__ = "0.1.0"
