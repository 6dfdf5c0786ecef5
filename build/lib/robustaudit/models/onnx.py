"""An ONNX file through ONNX Runtime, at score access (no gradients): scores from the first output or a named one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robustaudit.errors import InputError
from robustaudit.extras import require
from robustaudit.types import Access

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class OnnxModel:
    """Score access to an ONNX classifier (logits or probabilities), batched; runs on the CPU provider."""

    access = Access.SCORES

    def __init__(self, path: str | Path, *, output_name: str | None = None, max_batch: int = 1024) -> None:
        ort = require("onnxruntime", "an ONNX model")
        p = Path(path)
        if not p.is_file():
            raise InputError(f"model file {p} does not exist")
        try:
            self._session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - any failure to parse the user's file
            raise InputError(f"{p}: not a readable ONNX model ({str(e).strip().splitlines()[0]})") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise InputError(f"{p}: expected one input tensor, the model has {len(inputs)}")
        self._input = inputs[0].name
        self._dtype = _NUMPY_TYPES.get(inputs[0].type)
        if self._dtype is None:
            raise InputError(f"{p}: input type {inputs[0].type} is not a float tensor")
        outputs = [o.name for o in self._session.get_outputs()]
        if output_name is not None and output_name not in outputs:
            raise InputError(f"{p}: no output named {output_name!r}; outputs are {outputs}")
        self._output = output_name or outputs[0]
        first = inputs[0].shape[0] if inputs[0].shape else None
        self._fixed = isinstance(first, int) and first > 0  # a model exported with a fixed batch size
        self._batch = int(first) if self._fixed else max_batch  # type: ignore[arg-type]
        self.device = torch.device("cpu")
        self.name = str(p)

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy().astype(self._dtype, copy=False)
        parts = []
        for start in range(0, len(arr), self._batch):
            chunk = arr[start:start + self._batch]
            n = len(chunk)
            if self._fixed and n < self._batch:  # pad a fixed-size batch with copies, drop their scores
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self._batch - n, 0)])
            out = self._session.run([self._output], {self._input: chunk})[0]
            parts.append(np.asarray(out, dtype=np.float32)[:n])
        return torch.from_numpy(np.concatenate(parts)).to(x.device)

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_scores(x).argmax(1)
