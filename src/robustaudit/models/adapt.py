"""Adaptive evaluation (spec adaptive-evaluation.md): a white-box model seen the way an adaptive attacker sees it.

- `log_probabilities`: a model that ends in a softmax is attacked on its log-probabilities, computed stably in
  float64 (the softmax located in the traced graph and replaced by a log-softmax; else log(max(p, 1e-30))), so
  margin, DLR and probability-margin losses see logits again (softmax is shift-invariant).
- `straight_through`: BPDA (Athalye et al. 2018) with the identity: every rounding, floor, ceil, sign or trunc
  in the traced graph keeps its forward value and passes the gradient through unchanged.
- `LogScores`: the same for a score-only model (ONNX, remote), on the scores it returns.
- `EOT`: expectation over transformation for a randomised model: each query runs the model `samples` times;
  gradients are those of the mean log-probability, scores the mean probability, and a label the majority of
  the draws, so one lucky draw never counts as a success. `passes_per_query` tells the oracle the cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from robustaudit.models.torch import TorchModel
from robustaudit.types import Access

FLOOR = 1e-30  # log(max(p, FLOOR)) where the softmax cannot be located


def _ste(op: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def straight_through(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x + (op(x, *args, **kwargs) - x).detach()

    straight_through.__name__ = f"straight_through_{op.__name__}"
    return straight_through


_STEP_OPS = {torch.round: "round", torch.floor: "floor", torch.ceil: "ceil", torch.sign: "sign",
             torch.trunc: "trunc"}
_STE = {name: _ste(op) for op, name in _STEP_OPS.items()}
_SOFTMAX_FUNCTIONS = {torch.softmax, F.softmax, torch.Tensor.softmax}


def _trace(model: TorchModel) -> fx.GraphModule | None:
    try:
        return fx.symbolic_trace(model.module)
    except Exception:  # noqa: BLE001 - any module fx cannot trace: the adaptation falls back
        return None


def _rebuild(model: TorchModel, module: nn.Module) -> TorchModel:
    """`model` with another module (its recompiled graph, or a wrapper), everything else kept."""
    if isinstance(module, fx.GraphModule):
        module.recompile()
    return TorchModel(module, device=model.device, name=model.name, channels_last=model.channels_last,
                      output_key=model.output_key, precision=model.precision, compile=model.compile)


def straight_through(model: TorchModel) -> tuple[TorchModel, list[str]] | None:
    """`model` with BPDA on its step functions, and their names; None when none can be located (untraceable, or
    no rounding-type operation in the graph)."""
    gm = _trace(model)
    if gm is None:
        return None
    found = []
    for node in gm.graph.nodes:
        name = _STEP_OPS.get(node.target) if node.op == "call_function" else \
            node.target if node.op == "call_method" and node.target in _STE else None
        if name is not None:
            node.op, node.target = "call_function", _STE[str(name)]
            found.append(str(name))
    return (_rebuild(model, gm), found) if found else None


class _LogOf(nn.Module):
    """log(max(p, FLOOR)) of a module's probabilities, in float64."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).double().clamp(min=FLOOR).log()


def log_probabilities(model: TorchModel) -> tuple[TorchModel, str]:
    """`model` returning log-probabilities, and how they are computed: the final softmax replaced by a float64
    log-softmax of its input when the traced graph ends in one, else the floored log of the output."""
    gm = _trace(model)
    if gm is not None:
        out = next(n for n in gm.graph.nodes if n.op == "output")
        last = out.args[0]
        if isinstance(last, fx.Node) and _is_softmax(gm, last):
            dim = last.kwargs.get("dim", last.args[1] if len(last.args) > 1 else -1)
            if last.op == "call_module":
                dim = gm.get_submodule(str(last.target)).dim  # type: ignore[assignment]
            with gm.graph.inserting_before(last):
                wide = gm.graph.call_method("double", (last.args[0],))
                logp = gm.graph.call_function(torch.log_softmax, (wide,), {"dim": dim})
            last.replace_all_uses_with(logp)
            gm.graph.erase_node(last)
            return _rebuild(model, gm), "log-softmax of the located softmax's input (float64)"
    return _rebuild(model, _LogOf(model.module)), f"log(max(p, {FLOOR:g})) of the output (float64)"


def _is_softmax(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _SOFTMAX_FUNCTIONS
    if node.op == "call_method":
        return node.target == "softmax"
    if node.op == "call_module":
        return isinstance(gm.get_submodule(str(node.target)), nn.Softmax)
    return False


class LogScores:
    """A score-only model (ONNX, remote) that returns probabilities, seen through log(max(p, FLOOR)) in float64,
    so Square's and the genetic attack's margins compare log-probabilities."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.access = Access(model.access)
        self.device = model.device
        self.name = getattr(model, "name", "model")

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict_scores(x).double().clamp(min=FLOOR).log().float()

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict_labels(x)


class EOT:
    """A randomised model seen through several draws per query (Athalye et al. 2018; AutoAttack `rand` uses 20):
    gradients of the mean log-probability over `samples` draws, the mean probability over `votes` draws as
    scores, and the majority label of `votes` draws; `passes(kind)` is what one query of each kind costs."""

    randomized = True  # verification by majority may refuse a success one draw showed

    def __init__(self, model: Any, samples: int = 20, votes: int = 20) -> None:
        self.model, self.samples, self.votes = model, samples, votes
        self.access = Access(model.access)
        self.device = model.device
        self.name = getattr(model, "name", "model")
        self.module = getattr(model, "module", None)

    def passes(self, kind: str) -> int:
        return self.samples if kind == "gradients" else self.votes

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), device=self.device)
        for _ in range(self.samples):
            total = total + F.log_softmax(self.model.logits(x).double(), dim=1)
        return (total / self.samples).float()

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            p = torch.stack([F.softmax(self.model.predict_scores(x).double(), dim=1) for _ in range(self.votes)])
            return p.mean(0).clamp(min=FLOOR).log().float()

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            votes = torch.stack([self.model.predict_labels(x) for _ in range(self.votes)])
        return votes.mode(0).values
