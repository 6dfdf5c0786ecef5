"""Optional dependencies: the light install is torch, numpy, scipy, typer, rich, jinja2 and matplotlib; the rest
comes with an extra (`pip install 'robustaudit[remote]'`, `[onnx]`, `[scaling]`, ...) and is imported where used.
A missing one is a one-line `MissingExtra` naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from robustaudit.errors import InputError

# import name -> (the extra that brings it, the package to install)
EXTRAS: dict[str, tuple[str, str]] = {
    "httpx": ("remote", "httpx"),
    "fastapi": ("remote", "fastapi"),
    "uvicorn": ("remote", "uvicorn"),
    "prometheus_client": ("remote", "prometheus-client"),
    "onnxruntime": ("onnx", "onnxruntime"),
    "cv2": ("scaling", "opencv-python-headless"),
    "osqp": ("scaling", "osqp"),
    "skimage": ("scaling", "scikit-image"),
    "sklearn": ("demo", "scikit-learn"),
    "captum": ("interpret", "captum"),
    "segno": ("ownership", "segno"),
    "cvxpy": ("defend", "cvxpy"),
    "ray": ("ray", "ray"),
    "pyarrow": ("parquet", "pyarrow"),
    "mlflow": ("mlflow", "mlflow-skinny"),
}


class MissingExtra(InputError):
    """An optional dependency is not installed: the message names the extra that brings it."""


def require(module: str, what: str, extra: str | None = None) -> ModuleType:
    """Import `module` (a dotted name whose first part is in EXTRAS) for `what`, or raise MissingExtra naming
    `extra` (default: the one EXTRAS lists)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        default, package = EXTRAS[module.split(".")[0]]
        extra = extra or default
        raise MissingExtra(f"{what} needs {package}, which is not installed: pip install 'robustaudit[{extra}]' "
                           f"(or pip install {package})") from None
