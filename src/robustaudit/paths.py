"""Where robustaudit caches what it computes once (demo models, bundled calibrations): $ROBUSTAUDIT_CACHE, else
~/.cache/robustaudit."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("ROBUSTAUDIT_CACHE", Path.home() / ".cache" / "robustaudit"))
