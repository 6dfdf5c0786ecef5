"""Split a classifier into features h = g(x) and its final linear layer, logits = W h + b (QuadAttack's view)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import fx, nn

from robustaudit.errors import InputError


class FeatureSplit:
    """Reads the input of the model's final nn.Linear with a forward hook, so `features_and_logits(x)` costs one
    forward pass and stays differentiable. `layer` names the linear layer when the automatic choice (the last
    nn.Linear the module holds) is wrong; the split is checked: W h + b must reproduce the logits."""

    def __init__(self, module: nn.Module, layer: str | None = None) -> None:
        linears = {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear)}
        if not linears and layer is None and any(isinstance(m, fx.GraphModule) for m in module.modules()):
            module, linears = _expose_final_linear(module)
        if layer is not None:
            if layer not in linears:
                raise InputError(f"layer {layer!r} is not an nn.Linear of the model; its linear layers: "
                                 f"{', '.join(linears) or 'none'}")
            self.name = layer
        elif linears:
            self.name = list(linears)[-1]
        else:
            raise InputError("the model has no nn.Linear layer to split at: QuadAttack needs logits = W h + b")
        self.module, self.linear = module, linears[self.name]
        self._seen: torch.Tensor | None = None
        self.linear.register_forward_hook(self._hook)

    def _hook(self, _: nn.Module, inputs: tuple[torch.Tensor, ...], __: torch.Tensor) -> None:
        self._seen = inputs[0]

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight.detach()

    @property
    def bias(self) -> torch.Tensor:
        b = self.linear.bias
        return torch.zeros(self.linear.out_features, device=self.weight.device) if b is None else b.detach()

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._seen = None
        logits = self.module(x)
        h = self._seen
        if h is None or h.dim() != 2 or logits.shape != (len(x), self.linear.out_features):
            raise InputError(f"the model's logits do not come straight out of layer {self.name!r}; name the final "
                             "linear layer (--layer)")
        return h, logits

    def check(self, x: torch.Tensor) -> None:
        """Raise unless logits == W h + b on x (the split is exact)."""
        with torch.no_grad():
            h, z = self.features_and_logits(x)
            if not torch.allclose(h @ self.weight.T + self.bias, z, atol=1e-4, rtol=1e-4):
                raise InputError(f"logits are not W h + b of layer {self.name!r} (something follows it); name the "
                                 "final linear layer (--layer)")


def _expose_final_linear(module: nn.Module) -> tuple[nn.Module, dict[str, nn.Linear]]:
    """A torch.export program keeps no nn.Linear modules: when its output is aten.linear(h, W, b), rebuild that call
    as an nn.Linear (sharing W and b) so the hook can read h. The program may be the module itself or the outermost
    GraphModule inside a wrapper (e.g. the --mean/--std normalisation); the module is copied, not changed."""
    module = copy.deepcopy(module)
    name, gm = next((n, m) for n, m in module.named_modules() if isinstance(m, fx.GraphModule))  # the outermost
    out = next(n for n in gm.graph.nodes if n.op == "output")
    outputs: Any = out.args[0]
    result: Any = outputs[0] if isinstance(outputs, tuple | list) and len(outputs) == 1 else outputs
    if not (isinstance(result, fx.Node) and result.op == "call_function"
            and result.target is torch.ops.aten.linear.default):
        raise InputError("the model's output is not a final linear layer (aten.linear) that QuadAttack can split at")
    args: Any = result.args
    weight = gm.get_parameter(str(args[1].target))
    bias = gm.get_parameter(str(args[2].target)) if len(args) > 2 and args[2] is not None else None
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    head.weight = weight
    if bias is not None:
        head.bias = bias
    gm.add_submodule("robustaudit_head", head)
    with gm.graph.inserting_after(result):
        call = gm.graph.call_module("robustaudit_head", (args[0],))
    result.replace_all_uses_with(call)
    gm.graph.erase_node(result)
    gm.recompile()
    return module, {f"{name}.robustaudit_head" if name else "robustaudit_head": head}
