"""A PyTorch module at white-box access, with optional normalisation inside (RobustBench convention)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from robustaudit.errors import InputError
from robustaudit.models.outputs import extract_scores
from robustaudit.types import Access

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_FP16_GRAD_SCALE = 1024.0  # static scale of the backward pass under fp16 (input gradients would underflow)


class _GradScale(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by `scale`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad * ctx.scale, None


class _Normalized(nn.Module):
    def __init__(self, module: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.module = module
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise InputError("mean and std need one value per channel (or feature), with every std > 0")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, *([1] * (x.dim() - 2)))  # per channel (N×C×H×W) or per feature (N×D)
        mean, std = self.get_buffer("mean").reshape(shape), self.get_buffer("std").reshape(shape)
        return self.module((x - mean) / std)


class TorchModel:
    """White-box access to an `nn.Module` (eager, TorchScript or an exported program's module).

    The module is put in eval mode; `was_training` remembers whether it arrived in training mode so the
    diagnostics can say so. Score and label queries run under `torch.inference_mode()`.
    `output_key` names the field of the forward's output that holds the scores (a dict key, an attribute or a
    tuple position); by default a tensor is used as is, else `logits`, else the only or first tensor.
    `channels_last` (default: when the module holds 4-D weights, i.e. 2-D convolutions) moves the module's
    weights and every image batch to the channels-last memory layout, which oneDNN and cuDNN convolve
    faster (2.2x on the demo CNN on 2 CPU cores); the values computed are the same up to float rounding.
    `precision` "bf16" or "fp16" runs the forward under `torch.autocast` (mixed precision) and returns fp32
    scores, so every loss and the attack's arithmetic stay in fp32; under fp16 the backward pass is scaled by
    1024 inside the model and unscaled at the input, so small input gradients do not underflow. `compile` runs
    the forward through `torch.compile` (dynamic shapes: the batch shrinks as examples break); the first calls
    pay the compilation.
    """

    access = Access.GRADIENTS

    def __init__(
        self,
        module: nn.Module,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: str | torch.device | None = None,
        name: str = "model",
        channels_last: bool | None = None,
        output_key: str | None = None,
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, got {type(module).__name__}")
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        was_training = _in_training_mode(module)
        if (mean is None) != (std is None):
            raise InputError("give both mean and std, or neither")
        if mean is not None and std is not None:
            module = _Normalized(module, mean, std)
        if device is None:
            device = _module_device(module)
        self.device = torch.device(device)
        self.module = module.to(self.device)
        self.channels_last = _has_conv2d_weights(module) if channels_last is None else channels_last
        if self.channels_last:
            set_memory_format(self.module, torch.channels_last)
        # a torch.export program refuses eval(): its mode was fixed when it was exported
        self.was_training = set_eval(self.module) and was_training
        self.name = name
        self.output_key = output_key
        self.precision, self.compile = precision, compile
        self._forward = torch.compile(self.module, dynamic=True) if compile else self.module

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        dtype = PRECISIONS[self.precision]
        try:
            with torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext():
                x = self._input(x)
                if dtype is torch.float16 and x.requires_grad:
                    x = _GradScale.apply(x, 1.0 / _FP16_GRAD_SCALE)
                out = self._forward(x)
        except Exception as e:  # noqa: BLE001 - the user's model failed on this input: say so in one line
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else ""
            raise InputError(f"the model failed on inputs of shape {tuple(x.shape[1:])} ({type(e).__name__}: "
                             f"{msg}); check that the data has the layout the model expects") from None
        z = extract_scores(out, self.output_key)
        if not z.dtype.is_floating_point:
            raise InputError(f"the model returns {str(z.dtype).replace('torch.', '')} scores: it must return "
                             "floating-point logits (or probabilities)")
        if dtype is None:
            return z
        if dtype is torch.float16 and z.requires_grad:
            z = _GradScale.apply(z, _FP16_GRAD_SCALE)
        return z.float()

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.logits(x).float()

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_scores(x).argmax(1)


def _module_device(module: nn.Module) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


def set_memory_format(module: nn.Module, fmt: torch.memory_format) -> None:
    """Lay out every 4-D parameter and buffer of `module` in `fmt`, in place."""
    module.to(memory_format=fmt)  # type: ignore[call-overload]  # torch's stubs omit this keyword


def _has_conv2d_weights(module: nn.Module) -> bool:
    return any(p.dim() == 4 for p in module.parameters())


def _in_training_mode(module: nn.Module) -> bool:
    return any(m.training for m in module.modules())


def set_eval(module: nn.Module) -> bool:
    """Put every submodule in eval mode; False when the module refuses (a torch.export program)."""
    try:
        module.eval()
    except NotImplementedError:
        return False
    for m in module.modules():
        m.training = False
    return True


def accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Top-1 accuracy of the module on (x, y)."""
    device = next(module.parameters()).device
    set_eval(module)
    right = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            right += int((module(x[i:i + batch].to(device)).argmax(1).cpu() == y[i:i + batch].cpu()).sum())
    return right / len(x)
