"""Attribution maps of an interpretable deep-learning system, computed with captum (spec gradient-attacks.md §9),
and how similar two maps are (Pearson correlation, top-k IoU).

Interpreters: 'gradient' (vanilla gradient, Simonyan et al.), 'smoothgrad' (its absolute value averaged over
16 noisy copies, σ 0.1), 'gradxinput', 'ig' (Integrated Gradients from a
black baseline), 'gradcam' (Selvaraju et al.; the last Conv2d unless a layer is named), 'cam' (Zhou et al.; the
activations of the layer before global pooling weighted by the final linear layer's class weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustaudit.errors import InputError
from robustaudit.explain.explainers import Settings, explain_gradients
from robustaudit.extras import require
from robustaudit.models.torch import set_eval

INTERPRETERS = ("gradient", "smoothgrad", "gradxinput", "ig", "gradcam", "cam")


def conv_layer(module: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """The named layer, or the last nn.Conv2d the module holds — its activation when an nn.ReLU module follows it
    (Grad-CAM reads the rectified feature maps)."""
    layers = dict(module.named_modules())
    if name is not None:
        if name not in layers:
            raise InputError(f"layer {name!r} not found; the model's layers: {', '.join(n for n in layers if n)}")
        return name, layers[name]
    order = list(layers.items())
    convs = [i for i, (_, m) in enumerate(order) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise InputError("CAM / Grad-CAM need a convolutional layer: this model has no nn.Conv2d (name one with "
                         "--layer)")
    last = convs[-1]
    if last + 1 < len(order) and isinstance(order[last + 1][1], nn.ReLU):
        return order[last + 1]
    return order[last]


def _final_linear(module: nn.Module) -> nn.Linear:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError("CAM needs a final nn.Linear layer after global pooling")
    return linears[-1]


def attribution_maps(module: nn.Module, x: torch.Tensor, classes: torch.Tensor, interpreter: str,
                     layer: str | None = None, ig_steps: int = 32) -> torch.Tensor:
    """Per example an H×W map of how much each input position supports `classes` (channels summed)."""
    if interpreter not in INTERPRETERS:
        raise InputError(f"unknown interpreter {interpreter!r}: use {', '.join(INTERPRETERS)}")
    if x.dim() != 4 and interpreter in ("gradcam", "cam"):
        raise InputError(f"{interpreter} needs image inputs (N, C, H, W), got {tuple(x.shape)}")
    captum = require("captum.attr", "attribution maps")
    set_eval(module)
    target = classes.tolist()
    if interpreter in ("gradient", "smoothgrad", "gradxinput", "ig"):  # `robustaudit explain`'s, one registry
        method = "saliency" if interpreter == "gradient" else interpreter
        a = explain_gradients(module, x, classes, method, Settings(ig_steps=ig_steps, nt_samples=16), 0)
        a = a.abs() if interpreter in ("gradient", "smoothgrad") else a
    elif interpreter == "gradcam":
        gradcam = captum.LayerGradCam(module, conv_layer(module, layer)[1])
        a = gradcam.attribute(x, target=target, relu_attributions=True)
    else:
        acts = captum.LayerActivation(module, conv_layer(module, layer)[1]).attribute(x)
        head = _final_linear(module)
        if acts.dim() != 4 or acts.shape[1] != head.in_features:
            raise InputError("CAM needs global pooling between the layer and the final linear layer (the layer's "
                             f"{acts.shape[1] if acts.dim() == 4 else '?'} channels must feed its "
                             f"{head.in_features} inputs); use gradcam")
        a = F.relu(torch.einsum("nkhw,nk->nhw", acts, head.weight[classes].to(acts))[:, None])
    a = a.detach()
    if a.shape[-2:] != x.shape[-2:] and x.dim() == 4:
        a = F.interpolate(a, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return a.sum(1) if x.dim() == 4 else a


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-example Pearson correlation of two maps (0 where one is constant), in a's dtype."""
    dtype = a.dtype
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)).to(dtype)


def topk_iou(a: torch.Tensor, b: torch.Tensor, fraction: float = 0.1) -> torch.Tensor:
    """Per-example intersection over union of the top `fraction` positions of each map."""
    a, b = a.flatten(1), b.flatten(1)
    k = max(1, int(round(fraction * a.shape[1])))
    ma = torch.zeros_like(a, dtype=torch.bool).scatter_(1, a.topk(k, dim=1).indices, True)
    mb = torch.zeros_like(b, dtype=torch.bool).scatter_(1, b.topk(k, dim=1).indices, True)
    return ((ma & mb).sum(1).float() / (ma | mb).sum(1).float())


def map_similarity(module: nn.Module, clean: torch.Tensor, adversarial: torch.Tensor, interpreter: str,
                   layer: str | None = None, batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Pearson and top-10% IoU between the maps a person would see: each input's map for its own predicted class."""
    pc, iou = [], []
    for i in range(0, len(clean), batch_size):
        xc, xa = clean[i:i + batch_size], adversarial[i:i + batch_size]
        with torch.no_grad():
            yc, ya = module(xc).argmax(1), module(xa).argmax(1)
        mc = attribution_maps(module, xc, yc, interpreter, layer)
        ma = attribution_maps(module, xa, ya, interpreter, layer)
        pc.append(pearson(mc, ma))
        iou.append(topk_iou(mc, ma))
    return {"pearson": torch.cat(pc), "topk_iou": torch.cat(iou)}
