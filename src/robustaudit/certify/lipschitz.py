"""The Lipschitz safety guarantee (Wicker, Huang & Kwiatkowska, TACAS 2018, §5; spec feature-guided-testing.md):
if the scores are L-Lipschitz in L2, no perturbation smaller than the margin allows changes the label.

Margin bound: with m = z_y - max_{k≠y} z_k and ||z(x') - z(x)||_2 <= L·||x' - x||_2, every margin z_y - z_k moves by
at most √2·L·||x' - x||_2, so the label is certified over the L2 ball of radius r = m / (√2·L). In Linf that is
r/√d; over L0 (pixels), k changed pixels move x by at most the k largest per-pixel ranges to the bounds, so the
largest k whose L2 sum stays under r is safe. The constant is the user's, or an estimate: the product of the
layers' spectral norms (power iteration) over a feed-forward chain — an upper bound for such a chain up to the
power iteration's accuracy, and no bound at all for residual or attention blocks, which are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from robustaudit.errors import InputError
from robustaudit.ops.losses import margin
from robustaudit.ops.lp import pixels
from robustaudit.types import Bounds, Norm

# activations and reshapes with a Lipschitz constant of at most the value given (L2), by class name (an eager or a
# TorchScript module)
_ACTIVATIONS: dict[str, float] = {
    "ReLU": 1.0, "ReLU6": 1.0, "Tanh": 1.0, "Hardtanh": 1.0, "Sigmoid": 0.25, "GELU": 1.13, "SiLU": 1.1,
    "MaxPool1d": 1.0, "MaxPool2d": 1.0, "AdaptiveMaxPool2d": 1.0, "AvgPool1d": 1.0, "AvgPool2d": 1.0,
    "AdaptiveAvgPool2d": 1.0, "Flatten": 1.0, "Unflatten": 1.0, "Dropout": 1.0, "Identity": 1.0, "Softmax": 1.0,
}
_AFFINE = {"Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "BatchNorm1d", "BatchNorm2d"}
_ATEN_ONE = {"relu", "max_pool2d", "max_pool1d", "avg_pool2d", "adaptive_avg_pool2d", "flatten", "view", "reshape",
             "dropout", "tanh", "hardtanh", "clone", "contiguous", "_to_copy", "alias", "detach", "softmax",
             "_softmax", "identity"}
_ATEN_AFFINE = {"linear", "conv1d", "conv2d", "conv3d", "batch_norm", "_native_batch_norm_legit_no_training"}


def spectral_norm(linear_map: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], *,
                  iters: int = 100, seed: int = 0, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float64) -> float:
    """Largest singular value of a linear map on inputs of `shape` (batch of one), by power iteration on AᵀA
    (the adjoint by autograd)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(1, *shape, generator=g, dtype=torch.float64).to(device, dtype)
    v = v / v.norm()
    sigma = 0.0
    for _ in range(iters):
        v.requires_grad_(True)
        u = linear_map(v)
        (w,) = torch.autograd.grad(u.pow(2).sum() / 2, v)  # AᵀA v
        sigma = float(u.detach().norm())
        v = (w / (w.norm() + 1e-30)).detach()
    return sigma


def _affine_part(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """x ↦ f(x) - f(0): the linear part of an affine layer."""
    return lambda v: f(v) - f(torch.zeros_like(v))


def estimate_lipschitz(module: nn.Module, example: torch.Tensor, *, iters: int = 100) -> tuple[float, str]:
    """(L, how): an estimate of the L2 Lipschitz constant of the module's scores as the product of its layers'
    constants, for a feed-forward chain of affine layers (linear, convolution, eval batch norm: spectral norm by
    power iteration) and known activations/pooling. An exported program is checked to be a chain; an eager module
    is walked in call order (a residual connection written in `forward` cannot be seen: its estimate is invalid)."""
    from robustaudit.models.torch import _Normalized, set_eval

    set_eval(module)
    p = next(module.parameters(), None)
    x = example[:1].to(p.device if p is not None else "cpu", p.dtype if p is not None else torch.float32)
    scale = 1.0
    while isinstance(module, _Normalized):
        scale /= float(module.get_buffer("std").min())
        module = module.module
    if isinstance(module, torch.fx.GraphModule):
        factors = _graph_factors(module, x, iters)
        how = "exported graph"
    else:
        factors = _module_factors(module, x, iters)
        how = "layers in call order"
    return scale * math.prod(factors), (f"estimate: product of {len(factors)} layer constants ({how}; spectral "
                                        f"norms by {iters} power iterations)")


def _kind(m: nn.Module) -> str:
    return str(getattr(m, "original_name", type(m).__name__))  # TorchScript keeps the class name here


def _module_factors(module: nn.Module, x: torch.Tensor, iters: int) -> list[float]:
    leaves = [m for m in module.modules() if not list(m.children())]
    for m in leaves:
        if _kind(m) not in _AFFINE and _kind(m) not in _ACTIVATIONS:
            raise InputError(f"cannot estimate the Lipschitz constant through a {_kind(m)} layer: give "
                             "--lipschitz L")
    calls: list[tuple[nn.Module, tuple[int, ...]]] = []
    if isinstance(module, torch.jit.ScriptModule):  # no hooks: each layer at the input's spatial size (the norm
        calls = [(m, _script_shape(m, x)) for m in leaves]  # of a zero-padded map only grows with the size)
    else:
        hooks = [m.register_forward_hook(lambda m, i, o: calls.append((m, tuple(i[0].shape[1:])))) for m in leaves]
        try:
            with torch.no_grad():
                module(x)
        finally:
            for h in hooks:
                h.remove()
    out = []
    for m, shape in calls:
        if _kind(m) in _AFFINE:
            out.append(spectral_norm(_affine_part(m), shape, iters=iters, device=x.device, dtype=x.dtype))
        else:
            out.append(_ACTIVATIONS[_kind(m)])
    return out


def _script_shape(m: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """A TorchScript layer's input shape: its channels (or features) at the network input's spatial size."""
    kind, w = _kind(m), getattr(m, "weight", None)
    if kind not in _AFFINE or w is None:
        return ()
    if kind == "Linear":
        return (int(w.shape[1]),)
    if kind.startswith("BatchNorm") or kind.startswith("ConvTranspose"):
        channels = int(w.shape[0])
    else:
        channels = int(w.shape[1]) * int(getattr(m, "groups", 1))
    dims = 1 if kind.endswith("1d") else 2 if kind.endswith("2d") else 3
    if kind == "BatchNorm1d" and x.dim() == 2:
        return (channels,)
    return (channels, *x.shape[-dims:])


def _graph_factors(gm: torch.fx.GraphModule, x: torch.Tensor, iters: int) -> list[float]:
    """The chain of an exported graph: every call's activation input is the previous call's output."""
    shapes: dict[str, tuple[int, ...]] = {}

    class _Shapes(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> object:
            r = super().run_node(n)
            if isinstance(r, torch.Tensor):
                shapes[n.name] = tuple(r.shape[1:])
            return r

    with torch.no_grad():
        _Shapes(gm).run(x)
    attrs = {n.name: _fetch(gm, str(n.target)) for n in gm.graph.nodes if n.op == "get_attr"}
    out: list[float] = []
    last = next(n for n in gm.graph.nodes if n.op == "placeholder")
    for n in gm.graph.nodes:
        if n.op != "call_function":
            continue
        op = getattr(n.target, "__name__", str(n.target)).split(".")[0]
        if op == "getitem":
            continue
        activations = [a for a in n.args if isinstance(a, torch.fx.Node) and a.name not in attrs]
        if activations != [last]:
            raise InputError(f"cannot estimate the Lipschitz constant: {n.name} ({op}) is not part of a feed-forward "
                             "chain (a residual or multi-input block); give --lipschitz L")
        if op in _ATEN_ONE:
            out.append(1.0)
        elif op in _ATEN_AFFINE:
            args = [attrs[a.name] if isinstance(a, torch.fx.Node) and a.name in attrs else a for a in n.args]
            out.append(spectral_norm(_affine_part(_call(n.target, args[1:])), shapes[last.name], iters=iters,
                                     device=x.device, dtype=x.dtype))
        else:
            raise InputError(f"cannot estimate the Lipschitz constant through {op}: give --lipschitz L")
        last = n
    return out


def _call(target: object, rest: list[object]) -> Callable[[torch.Tensor], torch.Tensor]:
    """v ↦ the op on v with the node's other arguments (weights, strides); its first output."""
    def f(v: torch.Tensor) -> torch.Tensor:
        r = target(v, *rest)  # type: ignore[operator]
        return r[0] if isinstance(r, tuple | list) else r
    return f


def _fetch(gm: nn.Module, target: str) -> torch.Tensor:
    obj: object = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


@dataclass
class Certificate:
    """Per example: the score margin, the certified L2 radius and the safe region in `norm` (pixels at l0)."""

    margin: torch.Tensor
    radius_l2: torch.Tensor
    safe: torch.Tensor
    certified: torch.Tensor  # correctly classified and safe at eps


def certify_margin(scores: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lipschitz: float, norm: Norm,
                   eps: float, bounds: Bounds) -> Certificate:
    """The certificate of every example from its scores (a misclassified example has radius 0)."""
    if not lipschitz > 0 or not math.isfinite(lipschitz):
        raise InputError(f"the Lipschitz constant must be a positive number, got {lipschitz}")
    m = margin(scores.double(), y.to(scores.device)).cpu()
    r = (m.clamp_min(0) / (math.sqrt(2) * lipschitz))
    if norm == Norm.L2:
        safe = r
    elif norm == Norm.LINF:
        safe = r / math.sqrt(x[0].numel())
    else:
        flat = pixels(x.double().cpu())
        worst = torch.maximum(flat - bounds.low, bounds.high - flat).pow(2).sum(1)  # per pixel, all channels
        reach = worst.sort(1, descending=True).values.cumsum(1)
        safe = (reach < r[:, None] ** 2).sum(1).double()  # the k largest moves stay inside the safe L2 ball
    certified = (m > 0) & ((safe >= eps) if norm == Norm.L0 else (safe > eps))
    return Certificate(margin=m, radius_l2=r, safe=safe, certified=certified)
