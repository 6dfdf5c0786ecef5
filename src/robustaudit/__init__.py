"""robustaudit: measure how robust a classifier really is against adversarial inputs.

`audit(model, x, y, eps=...)` is the one function behind `robustaudit evaluate`; `curve`, `certify`,
`robustify`, `transfer`, `online` and `topk` are the other commands' functions.
"""

from robustaudit import attacks
from robustaudit.api import DataOptions, audit
from robustaudit.commands import certify, check, curve, online, robustify, topk, transfer
from robustaudit.gate import Gate
from robustaudit.models import as_label_only, as_score_only, load_model
from robustaudit.results import EvalRecord, ExampleRecord
from robustaudit.run.runner import evaluate
from robustaudit.threat import ThreatModel
from robustaudit.types import Access, Bounds, Norm
from robustaudit.version import __version__

__all__ = [
    "Access",
    "Bounds",
    "DataOptions",
    "EvalRecord",
    "ExampleRecord",
    "Gate",
    "Norm",
    "ThreatModel",
    "__version__",
    "as_label_only",
    "as_score_only",
    "attacks",
    "audit",
    "certify",
    "check",
    "curve",
    "evaluate",
    "load_model",
    "online",
    "robustify",
    "topk",
    "transfer",
]
