"""robustaudit: measure how robust a classifier really is against adversarial inputs.

`audit(model, x, y, eps=...)` is the one function behind `robustaudit evaluate`; `curve`, `certify`,
`robustify`, `transfer`, `online`, `topk` and `harden` are the other commands' functions. Names are imported on
first use (PEP 562), so `import robustaudit` and the command line's `--help` do not pay for torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from robustaudit.version import __version__

if TYPE_CHECKING:
    from robustaudit import attacks
    from robustaudit.api import DataOptions, audit
    from robustaudit.commands import certify, check, curve, harden, online, robustify, topk, transfer
    from robustaudit.gate import Gate
    from robustaudit.models import as_label_only, as_score_only, load_model
    from robustaudit.results import EvalRecord, ExampleRecord
    from robustaudit.run.runner import evaluate
    from robustaudit.threat import ThreatModel
    from robustaudit.types import Access, Bounds, Norm

_WHERE = {
    "attacks": "robustaudit.attacks",
    "DataOptions": "robustaudit.api", "audit": "robustaudit.api",
    **dict.fromkeys(("certify", "check", "curve", "harden", "online", "robustify", "topk", "transfer"),
                    "robustaudit.commands"),
    "Gate": "robustaudit.gate",
    **dict.fromkeys(("as_label_only", "as_score_only", "load_model"), "robustaudit.models"),
    **dict.fromkeys(("EvalRecord", "ExampleRecord"), "robustaudit.results"),
    "evaluate": "robustaudit.run.runner",
    "ThreatModel": "robustaudit.threat",
    **dict.fromkeys(("Access", "Bounds", "Norm"), "robustaudit.types"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'robustaudit' has no attribute {name!r}")
    module = importlib.import_module(_WHERE[name])
    value = module if name == "attacks" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """Loading the subpackages `robustaudit.certify` / `robustaudit.transfer` must not replace the functions
    `robustaudit.certify` / `robustaudit.transfer` (the import system sets a loaded subpackage on its parent)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("certify", "transfer") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
    "harden",
    "load_model",
    "online",
    "robustify",
    "topk",
    "transfer",
]
