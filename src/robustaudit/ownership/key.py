"""The owner's key file: everything verification needs and a thief must not have (the signature, where it sits,
the pad-scrambled pattern, the trigger set), written next to the model as NAME.key.json and NAME.key.npz."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustaudit.errors import InputError
from robustaudit.ownership.qr import Code, function_patterns
from robustaudit.ownership.signature import Placement

FORMAT = "robustaudit-ownership-key/1"


@dataclass(frozen=True)
class OwnerKey:
    """signature text and its QR code; where the pattern sits (None when no signature was carved) and the owner's
    number of kept weights in that layer; the trigger set (None without one); the significance level."""

    signature: str
    code: Code
    place: Placement | None
    layer_shape: tuple[int, ...]
    layer_kept: int
    sparsity: float
    classes: int
    trigger: tuple[torch.Tensor, torch.Tensor] | None
    alpha: float

    def save(self, path: str | Path) -> Path:
        """Write PATH (JSON) and PATH with .npz for the arrays; returns the JSON path."""
        path = Path(path)
        arrays: dict[str, Any] = {"code": self.code.bits}
        if self.place is not None:
            arrays["pattern"] = self.place.pattern
        if self.trigger is not None:
            arrays["trigger_x"], arrays["trigger_y"] = self.trigger[0].numpy(), self.trigger[1].numpy()
        np.savez(path.with_suffix(".npz"), **arrays)
        info: dict[str, Any] = {
            "format": FORMAT, "signature": self.signature, "qr_version": self.code.version,
            "layer": None if self.place is None else self.place.layer,
            "offset": None if self.place is None else [self.place.row, self.place.col],
            "layer_shape": list(self.layer_shape), "layer_kept": self.layer_kept, "sparsity": self.sparsity,
            "classes": self.classes, "trigger_size": 0 if self.trigger is None else len(self.trigger[1]),
            "alpha": self.alpha, "arrays": path.with_suffix(".npz").name}
        path.write_text(json.dumps(info, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> OwnerKey:
        """Read a key written by `save`."""
        path = Path(path)
        try:
            info = json.loads(path.read_text())
            if info.get("format") != FORMAT:
                raise InputError(f"{path}: not a robustaudit ownership key (format {info.get('format')!r})")
            arrays = np.load(path.with_name(info["arrays"]))
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"cannot read the ownership key {path}: {e}") from None
        code = Code(int(info["qr_version"]), arrays["code"].astype(np.uint8),
                    function_patterns(int(info["qr_version"])))
        place = None if info["layer"] is None else Placement(info["layer"], int(info["offset"][0]),
                                                              int(info["offset"][1]),
                                                              arrays["pattern"].astype(np.uint8))
        trigger = None if not info["trigger_size"] else (torch.from_numpy(arrays["trigger_x"]),
                                                          torch.from_numpy(arrays["trigger_y"]).long())
        return cls(info["signature"], code, place, tuple(info["layer_shape"]), int(info["layer_kept"]),
                   float(info["sparsity"]), int(info["classes"]), trigger, float(info["alpha"]))
