"""Model sources and access levels."""

from robustaudit.models.base import GradModel, LabelModel, ScoreModel
from robustaudit.models.load import load_model
from robustaudit.models.torch import TorchModel
from robustaudit.models.wrappers import as_label_only, as_score_only

__all__ = [
    "GradModel",
    "LabelModel",
    "ScoreModel",
    "TorchModel",
    "as_label_only",
    "as_score_only",
    "load_model",
]
