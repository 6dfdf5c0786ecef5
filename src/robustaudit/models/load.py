"""Turn a model spec string from the command line into a model at the right access level.

Specs: `model.pt` (TorchScript), `model.pt2` (torch.export), `package.module:callable` or
`path/to/file.py:callable` (returns an nn.Module) at white-box access; `model.onnx` (ONNX Runtime) and
`http(s)://HOST:PORT/v2/models/NAME` (Open Inference Protocol) at score access (label access for an endpoint
that returns labels).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustaudit.errors import InputError
from robustaudit.extras import require
from robustaudit.models.base import LabelModel
from robustaudit.models.torch import TorchModel
from robustaudit.models.wrappers import as_label_only, as_score_only
from robustaudit.types import Access


def load_model(
    spec: str,
    *,
    access: Access | None = None,
    device: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    output_key: str | None = None,
    remote: Mapping[str, Any] | None = None,
    trust_model_file: bool = False,
    precision: str = "fp32",
    compile_model: bool = False,
) -> LabelModel:
    """Load `spec` at `access` (default: the most the source offers). A model can be downgraded, never upgraded.

    `output_key` names the output holding the scores: a field of a PyTorch forward's tuple/dict/object output, or
    the output name of an ONNX graph or a remote model (default: found automatically). `remote` holds the
    `RemoteModel` options (token, max_batch, concurrency, rate, timeout, retries) for URLs. `precision`
    (fp32, bf16, fp16) and `compile_model` apply to torch models (see `TorchModel`).

    Model files are loaded without running code they carry: pickled payloads inside a `.pt2` archive are read
    with `torch.load(weights_only=True)` and refused when they hold anything but tensors and plain values.
    `trust_model_file=True` lifts that (a pickled payload can run arbitrary code: only for files you trust) and
    also accepts a whole pickled `nn.Module` saved with `torch.save`. `file.py:callable` and `module:callable`
    run Python code by design.
    """
    model: LabelModel
    if (precision != "fp32" or compile_model) and (spec.startswith(("http://", "https://")) or spec.endswith(".onnx")):
        raise InputError("--precision/--compile apply to torch models, not to remote or ONNX ones")
    if spec.startswith(("http://", "https://")):
        if mean is not None or std is not None:
            raise InputError("--mean/--std apply to torch models; a remote model normalises on its side")
        require("httpx", "a remote model (--model URL)")
        from robustaudit.models.remote import RemoteModel

        model = RemoteModel(spec, output_name=output_key, **dict(remote or {}))
    elif spec.endswith(".onnx"):
        if mean is not None or std is not None:
            raise InputError("--mean/--std apply to torch models; an ONNX file must normalise inside its graph")
        from robustaudit.models.onnx import OnnxModel

        model = OnnxModel(spec, output_name=output_key)
    else:
        model = TorchModel(_load_module(spec, device, trust_model_file), mean=mean, std=std, device=device, name=spec,
                           output_key=output_key, precision=precision, compile=compile_model)
    return downgrade(model, access, spec)


def as_model(
    model: str | Path | nn.Module | LabelModel,
    *,
    access: Access | None = None,
    device: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    output_key: str | None = None,
    remote: Mapping[str, Any] | None = None,
    trust_model_file: bool = False,
    precision: str = "fp32",
    compile_model: bool = False,
) -> LabelModel:
    """Whatever the user hands over as a model, at `access`: a spec or path (as `load_model`), a plain
    `nn.Module` (white-box), or one of our model wrappers (used as it is, downgraded if asked)."""
    if isinstance(model, str | Path):
        return load_model(str(model), access=access, device=device, mean=mean, std=std, output_key=output_key,
                          remote=remote, trust_model_file=trust_model_file, precision=precision,
                          compile_model=compile_model)
    if isinstance(model, nn.Module):
        m: LabelModel = TorchModel(model, mean=mean, std=std, device=device, name=type(model).__name__,
                                   output_key=output_key, precision=precision, compile=compile_model)
    elif isinstance(model, LabelModel):
        if mean is not None or std is not None or output_key is not None or precision != "fp32" or compile_model:
            raise InputError("mean/std/output_key/precision/compile apply when robustaudit wraps the model: give the "
                             "nn.Module or a path, or set them on the wrapper")
        m = model
    else:
        raise InputError(f"cannot audit a {type(model).__name__}: give a torch.nn.Module, a model file or URL, or a "
                         "robustaudit model wrapper")
    return downgrade(m, access, getattr(m, "name", "the model"))


def downgrade(model: LabelModel, access: Access | None, name: str) -> LabelModel:
    """`model` seen at `access` (default: as offered); asking for more than it offers is an error."""
    offered = Access(model.access)
    if access is None or access == offered:
        return model
    if access > offered:
        raise InputError(f"{name} offers {offered.name.lower()} access at most, not {access.name.lower()}")
    if access == Access.SCORES:
        return as_score_only(model)  # type: ignore[arg-type]
    return as_label_only(model)


def load_module(spec: str | Path, *, device: str | None = None, trust_model_file: bool = False) -> nn.Module:
    """The nn.Module behind a local model spec (.pt, .pt2, file.py:callable), for the commands that read or change
    weights (ownership); a remote or ONNX model has none to give."""
    spec = str(spec)
    if spec.startswith(("http://", "https://")) or spec.endswith(".onnx"):
        raise InputError(f"{spec}: reading or changing weights needs a local PyTorch model (.pt, .pt2 or "
                         "file.py:callable)")
    return _load_module(spec, device, trust_model_file)


def save_program(model: nn.Module, path: Path, example: torch.Tensor) -> None:
    """Save `model` as a torch.export program with a dynamic batch, atomically."""
    tmp = path.with_name(path.stem + ".partial.pt2")  # torch.export wants the .pt2 suffix
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp))
    os.replace(tmp, path)


def _load_module(spec: str, device: str | None, trust: bool) -> nn.Module:
    path = Path(spec)
    map_location = device or "cpu"
    if spec.endswith(".pt") or spec.endswith(".pth"):
        _must_exist(path)
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream but still what many users have
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location=map_location)
        except RuntimeError as e:
            if trust:
                return _load_pickled_module(path, map_location)
            raise InputError(
                f"{spec}: not a TorchScript file ({_first_line(e)}); save it with torch.jit.save(torch.jit.script(m)) "
                "or torch.export (a module pickled with torch.save runs code when loaded: pass --trust-model-file "
                "only if you trust its source)"
            ) from None
    if spec.endswith(".pt2"):
        _must_exist(path)
        if trust:
            warnings.warn(f"loading {spec} with --trust-model-file: pickled payloads in it can run arbitrary code",
                          stacklevel=3)
        try:
            with nullcontext() if trust else _tensors_only():
                program = torch.export.load(str(path))
        except pickle.UnpicklingError:
            raise InputError(f"{spec}: refused: the archive holds a pickled payload that is not plain tensors and "
                             "could run code when loaded; pass --trust-model-file (trust_model_file=True) only if "
                             "you trust its source") from None
        except Exception as e:  # noqa: BLE001 - any failure to read the archive is the user's file
            raise InputError(f"{spec}: not a torch.export program ({_first_line(e)})") from None
        return program.module()
    if ":" in spec:
        return _load_callable(spec)
    raise InputError(
        f"cannot load model {spec!r}: give a .pt (TorchScript) or .pt2 (torch.export) file, "
        "or package.module:callable / path/to/file.py:callable"
    )


@contextmanager
def _tensors_only() -> Iterator[None]:
    """Every torch.load inside reads with weights_only=True (tensors and plain values; no code), whatever its
    caller asked: torch.export.load unpickles some payloads with weights_only=False."""
    original = torch.load

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = original


def _load_pickled_module(path: Path, map_location: str) -> nn.Module:
    """A whole module saved with torch.save (runs the file's pickled code: --trust-model-file only)."""
    warnings.warn(f"loading {path} with pickle (--trust-model-file): it can run arbitrary code", stacklevel=3)
    try:
        obj = torch.load(str(path), map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any failure to read the user's file
        raise InputError(f"{path}: neither TorchScript nor a pickled module ({_first_line(e)})") from None
    if not isinstance(obj, nn.Module):
        raise InputError(f"{path} holds a {type(obj).__name__}, not an nn.Module (a state_dict needs the model's "
                         "code: give file.py:callable)")
    return obj


def _load_callable(spec: str) -> nn.Module:
    fn = import_attribute(spec)
    try:
        obj = fn() if callable(fn) and not isinstance(fn, nn.Module) else fn
    except Exception as e:  # noqa: BLE001 - the user's constructor failed
        raise InputError(f"{spec} failed to build the model ({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(obj, nn.Module):
        raise InputError(f"{spec} returned {type(obj).__name__}, expected a torch.nn.Module")
    return obj


def import_attribute(spec: str) -> Any:
    """`file.py:name` or `package.module:name` -> that object (the user's code runs: import errors are
    InputErrors)."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise InputError(f"expected FILE.py:NAME or MODULE:NAME, got {spec!r}")
    if target.endswith(".py"):
        path = Path(target)
        _must_exist(path)
        name = f"_robustaudit_user_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise InputError(f"cannot import {target}")
        mod = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = mod
        try:
            module_spec.loader.exec_module(mod)
        except Exception as e:  # noqa: BLE001 - the user's file failed to import
            raise InputError(f"importing {target} failed ({type(e).__name__}: {_first_line(e)})") from None
    else:
        try:
            mod = importlib.import_module(target)
        except Exception as e:  # noqa: BLE001 - ImportError, or the module's own code failing
            raise InputError(f"cannot import module {target!r} ({type(e).__name__}: {_first_line(e)})") from None
    fn = getattr(mod, attr, None)
    if fn is None:
        raise InputError(f"{target} has no attribute {attr!r}")
    return fn


def _must_exist(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
