"""The eight explainers of the LFA framework (Han, Srinivas & Lakkaraju, NeurIPS 2022) through captum, at the access
level each needs: gradients for saliency, smoothgrad, gradxinput, ig; scores (every forward counted by the oracle,
a remote endpoint included) for occlusion, lime, kernelshap, clime.

Every attribution is shaped like the input and explains one output scalar, the score (logit) of the explained
class. Query-based methods attribute to features (`features.py`); a feature's attribution is spread evenly over its
elements, so the sum over a feature is its attribution and all methods live in the same space. Settings follow the
spec (explanations.md): LIME binary with a zero baseline, an exponential kernel on the euclidean distance of width
0.75·√F (the lime package's) and unregularised least squares; KernelSHAP captum's (Shapley sampling, endpoint
weights 1e6); Occlusion one feature at a time; C-LIME Gaussian shifts of each feature (σ), constant kernel,
least squares; SmoothGrad σ absolute (captum's `stdevs`); IG from the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustaudit.errors import AccessError, InputError
from robustaudit.explain.features import feature_mask, group_sizes
from robustaudit.extras import require
from robustaudit.ops.rng import derive_seed
from robustaudit.oracle import Oracle
from robustaudit.types import Access

GRADIENT_METHODS = ("saliency", "smoothgrad", "gradxinput", "ig")
QUERY_METHODS = ("occlusion", "lime", "kernelshap", "clime")
METHODS = GRADIENT_METHODS + QUERY_METHODS


@dataclass(frozen=True)
class Settings:
    """Explainer settings (the same for every example)."""

    n_samples: int = 1000  # lime, kernelshap, clime
    sigma: float = 0.1  # smoothgrad and clime noise (absolute)
    nt_samples: int = 50  # smoothgrad draws
    ig_steps: int = 50
    baseline: float = 0.0
    features: str = "pixels"
    batch: int = 256  # perturbations per model call

    def queries(self, method: str, n_features: int) -> int:
        """Model queries one explanation costs (query-based methods)."""
        return n_features + 1 if method == "occlusion" else self.n_samples

    def passes(self, method: str) -> int:
        """Forward+backward passes one explanation costs (gradient methods)."""
        return {"saliency": 1, "gradxinput": 1, "smoothgrad": self.nt_samples, "ig": self.ig_steps}.get(method, 0)


def parse_methods(text: str) -> list[str]:
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise InputError(f"unknown explainer(s) {', '.join(unknown) or '(none)'}: use {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def check_access(methods: list[str], access: Access) -> None:
    grad = [m for m in methods if m in GRADIENT_METHODS]
    if grad and access < Access.GRADIENTS:
        raise AccessError(f"{', '.join(grad)} need gradients; the model offers {access.name.lower()} only: use "
                          f"{', '.join(QUERY_METHODS)}")
    if access < Access.SCORES:
        raise AccessError("explanations need the model's scores; this model offers labels only")


def explain_gradients(module: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str, s: Settings,
                      seed: int) -> torch.Tensor:
    """A gradient method on a batch (white box)."""
    captum = require("captum.attr", "the gradient explainers")
    t = target.tolist()
    x = x.detach().requires_grad_(False)
    if method == "saliency":
        return captum.Saliency(module).attribute(x, target=t, abs=False).detach()
    if method == "smoothgrad":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "smoothgrad"))
            a = captum.NoiseTunnel(captum.Saliency(module)).attribute(
                x, nt_type="smoothgrad", nt_samples=s.nt_samples, nt_samples_batch_size=min(s.nt_samples, 64),
                stdevs=s.sigma, target=t, abs=False)
        return a.detach()
    if method == "gradxinput":
        return captum.InputXGradient(module).attribute(x, target=t).detach()
    return captum.IntegratedGradients(module).attribute(x, baselines=s.baseline, target=t,
                                                        n_steps=s.ig_steps).detach()


def explain_queries(oracle: Oracle, x: torch.Tensor, i: int, target: int, method: str, s: Settings,
                    seed: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """A query-based method on example i (x: one input with its batch dimension); every forward is a counted
    query of example i."""
    captum = require("captum.attr", "the query-based explainers")
    mask = feature_mask(x[0], s.features) if mask is None else mask
    n_features = int(mask.max()) + 1
    cost = s.queries(method, n_features)
    left = int(oracle.budget_left(torch.tensor([i]))[0])
    if cost > left:
        raise InputError(f"{method} needs {cost} queries per example, {left} are left of the budget: lower "
                         "--n-samples or raise --budget")

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return oracle.scores(batch, torch.full((len(batch),), i, dtype=torch.long))

    m = mask[None].to(x.device)
    per_eval = max(1, min(s.batch, cost))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, method, i))
        if method == "occlusion":
            a = captum.FeatureAblation(forward).attribute(x, baselines=s.baseline, target=target, feature_mask=m,
                                                          perturbations_per_eval=per_eval)
        elif method == "kernelshap":
            a = captum.KernelShap(forward).attribute(x, baselines=s.baseline, target=target, feature_mask=m,
                                                     n_samples=s.n_samples, perturbations_per_eval=per_eval)
        elif method == "lime":
            a = _lime(captum, forward, n_features).attribute(x, baselines=s.baseline, target=target, feature_mask=m,
                                                             n_samples=s.n_samples, perturbations_per_eval=per_eval)
        else:
            a = _clime(captum, forward, mask, s).attribute(x, target=target, n_samples=s.n_samples,
                                                           perturbations_per_eval=per_eval)
            a = a.reshape(-1)[mask.flatten().to(a.device)].reshape(x.shape)  # per feature -> its elements
    return (a.detach().cpu().double() / group_sizes(mask)[None].double()).to(x.dtype)


def _linear_regression() -> object:
    from captum._utils.models.linear_model import SkLearnLinearRegression

    return SkLearnLinearRegression()


def _lime(captum: Any, forward: Callable[[torch.Tensor], torch.Tensor], n_features: int) -> Any:
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    kernel = get_exp_kernel_similarity_function("euclidean", kernel_width=0.75 * math.sqrt(n_features))
    return captum.Lime(forward, interpretable_model=_linear_regression(), similarity_func=kernel)


def _clime(captum: Any, forward: Callable[[torch.Tensor], torch.Tensor], mask: torch.Tensor,
           s: Settings) -> Any:
    """LIME over Gaussian shifts of each feature: z ~ N(0, σ²)^F, x' = x + z spread over the feature's elements."""
    n_features = int(mask.max()) + 1

    def perturb(original: torch.Tensor, **_: object) -> torch.Tensor:
        return torch.randn(1, n_features, device=original.device, dtype=original.dtype) * s.sigma

    def to_input(z: torch.Tensor, original: torch.Tensor, **_: object) -> torch.Tensor:
        return original + z[:, mask.flatten().to(z.device)].reshape(len(z), *original.shape[1:])

    return captum.LimeBase(forward, interpretable_model=_linear_regression(),
                           similarity_func=lambda *a, **k: 1.0, perturb_func=perturb,
                           perturb_interpretable_space=True, from_interp_rep_transform=to_input,
                           to_interp_rep_transform=None)
