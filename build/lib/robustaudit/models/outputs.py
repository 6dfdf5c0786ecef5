"""The scores inside whatever a model's forward returns: a tensor, a tuple, a dict, or an object with `.logits`
(every Hugging Face `transformers` classifier returns a `ModelOutput` holding `logits`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from robustaudit.errors import InputError


def extract_scores(out: Any, key: str | None = None) -> torch.Tensor:
    """The score tensor of `out`: `key` names the field (a dict key, an attribute, or a tuple position); without
    it, a tensor is taken as is, else the field `logits`, else the only (dict) or first (tuple) tensor."""
    if key is None and torch.is_tensor(out):
        return out
    if key is not None:
        found = _field(out, key)
        if found is None:
            raise InputError(f"the model's output has no field {key!r}; its fields are {_describe(out)}: "
                             "give --output-key one of them")
        out = found
    elif isinstance(out, Mapping):
        tensors = [k for k, v in out.items() if torch.is_tensor(v)]
        if "logits" in out and torch.is_tensor(out["logits"]):
            out = out["logits"]
        elif len(tensors) == 1:
            out = out[tensors[0]]
        else:
            raise InputError(f"the model returns a dict with fields {_describe(out)} and none is called 'logits': "
                             "give --output-key (output_key=...) to say which holds the scores")
    elif torch.is_tensor(getattr(out, "logits", None)):
        out = out.logits
    elif isinstance(out, tuple | list):
        first = next((v for v in out if torch.is_tensor(v)), None)
        if first is None:
            raise InputError(f"the model returns a {type(out).__name__} with no tensor in it: it must return scores")
        out = first
    if not torch.is_tensor(out):
        raise InputError(f"the model returns {type(out).__name__}, not a tensor of scores: return the logits, or "
                         "give --output-key (output_key=...) naming the field that holds them")
    return out


def _field(out: Any, key: str) -> Any:
    if isinstance(out, Mapping):
        return out.get(key)
    if isinstance(out, tuple | list) and key.lstrip("-").isdigit():
        i = int(key)
        return out[i] if -len(out) <= i < len(out) else None
    return getattr(out, key, None)


def _describe(out: Any) -> str:
    if isinstance(out, Mapping):
        return str(list(out.keys()))
    if isinstance(out, tuple | list):
        return f"positions 0..{len(out) - 1}"
    return str([k for k in vars(out) if not k.startswith("_")]) if hasattr(out, "__dict__") else "none"
