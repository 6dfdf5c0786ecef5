"""Transfer attacks crafted on surrogates: MI-FGSM (Dong et al., CVPR 2018), DI (Xie et al., CVPR 2019), TI (Dong
et al., CVPR 2019) and their combinations, on one surrogate or an ensemble (logits averaged). Spec
gradient-attacks.md §7.1.

Threat model: no-box for the target — the surrogates' gradients are free and never touch the target's oracle.

    g_0 = 0; x'_0 = x
    ∇   = ∇_x CE( mean_m f_m( DI(x'_t) ), y )         DI with probability p, else x'_t itself
    ∇   = W * ∇                                        TI: depthwise Gaussian smoothing
    g   = μ·g + ∇ / ||∇||_1                            μ = 0 without MI
    x'  = P_ball( x'_t + α · dir(g) )                  dir = sign (Linf) or g/||g||_2 (L2); α = eps / T
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustaudit.errors import InputError
from robustaudit.models.base import GradModel
from robustaudit.ops.lp import ops_for, per_example
from robustaudit.ops.rng import generator
from robustaudit.threat import ThreatModel

PARTS = ("mi", "di", "ti")


@dataclass(frozen=True, kw_only=True)
class TransferAttack:
    """One combination of MI, DI and TI (`fgsm`: a single full step; `ifgsm`: none of the three)."""

    momentum: bool = True
    diversity: bool = False
    translation: bool = False
    steps: int = 10
    decay: float = 1.0  # μ when momentum is on
    di_prob: float = 0.5
    di_rate: float = 1.1  # TransferAttack's form: resize up to [W, 1.1 W), pad, resize back to W
    ti_kernel: int = 7  # libraries use 15 for 224-px ImageNet inputs; 7 suits small images
    ti_nsig: float = 3.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InputError(f"steps must be >= 1, got {self.steps}")
        if self.di_rate < 1 or not 0 <= self.di_prob <= 1:
            raise InputError("di_rate must be >= 1 and di_prob in [0, 1]")
        if self.ti_kernel < 1 or self.ti_kernel % 2 == 0:
            raise InputError(f"ti_kernel must be odd and positive, got {self.ti_kernel}")

    @property
    def name(self) -> str:
        parts = [p for p, on in zip(PARTS, (self.momentum, self.diversity, self.translation), strict=True) if on]
        if parts:
            return "-".join(parts)
        return "fgsm" if self.steps == 1 else "ifgsm"

    @classmethod
    def parse(cls, name: str) -> TransferAttack:
        """'mi', 'di', 'ti', 'mi-di-ti', ... ; 'ifgsm' (iterative, none of them) or 'fgsm' (one step)."""
        key = name.strip().lower()
        if key in ("fgsm", "ifgsm"):
            return cls(momentum=False, steps=1 if key == "fgsm" else 10)
        parts = key.split("-")
        if not parts or any(p not in PARTS for p in parts) or len(set(parts)) != len(parts):
            raise InputError(f"unknown transfer attack {name!r}: use fgsm, ifgsm or a combination of "
                             f"{', '.join(PARTS)} joined by '-', e.g. mi-di-ti")
        return cls(momentum="mi" in parts, diversity="di" in parts, translation="ti" in parts)

    def craft(self, surrogates: Sequence[GradModel], x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *,
              seed: int = 0, target: torch.Tensor | None = None, start: torch.Tensor | None = None,
              step: float | None = None) -> torch.Tensor:
        """Adversarial inputs in the threat model's ball around x (labels y; `target` classes when targeted).
        `start` (default x) is the first iterate, `step` (default eps / steps) the step size α."""
        if not surrogates:
            raise InputError("a transfer attack needs at least one surrogate model")
        if (self.diversity or self.translation) and x.dim() != 4:
            raise InputError(f"{self.name}: DI and TI transform images; inputs must be (N, C, H, W), got "
                             f"{tuple(x.shape)}")
        if threat.targeted and target is None:
            raise InputError("a targeted threat model needs a target class per example")
        ops = ops_for(threat.norm)
        gen = generator(seed, "transfer", self.name)
        labels, sign = (target, -1.0) if threat.targeted and target is not None else (y, 1.0)
        alpha, mu = step or threat.eps / self.steps, self.decay if self.momentum else 0.0
        g = torch.zeros_like(x)
        adv = (x if start is None else start).detach().clone()
        for _ in range(self.steps):
            point = adv.clone().requires_grad_(True)
            with torch.enable_grad():
                seen = self._diverse(point, gen) if self.diversity else point
                logits = torch.stack([m.logits(seen.to(m.device)).to(x.device) for m in surrogates]).mean(0)
                (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels.to(x.device), reduction="sum"), point)
            if self.translation:
                grad = self._smooth(grad)
            g = mu * g + grad / per_example(grad.abs().flatten(1).sum(1).clamp_min(1e-12), grad)
            adv = ops.project(adv + sign * alpha * ops.direction(g), x, threat.eps, threat.bounds).detach()
        return adv

    def _diverse(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """DI: with probability p (one coin per iteration for the batch), resize to rnd in [W, rate·W), zero-pad
        at a random offset to rate·W, resize back to W."""
        if torch.rand((), generator=gen).item() >= self.di_prob:
            return x
        h, w = x.shape[-2:]
        big_h, big_w = int(h * self.di_rate), int(w * self.di_rate)
        if big_h <= h or big_w <= w:
            return x
        rh = int(torch.randint(h, big_h, (), generator=gen))
        rw = int(torch.randint(w, big_w, (), generator=gen))
        top = int(torch.randint(0, big_h - rh + 1, (), generator=gen))
        left = int(torch.randint(0, big_w - rw + 1, (), generator=gen))
        resized = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False)
        padded = F.pad(resized, (left, big_w - rw - left, top, big_h - rh - top))
        return F.interpolate(padded, size=(h, w), mode="bilinear", align_corners=False)

    def _smooth(self, grad: torch.Tensor) -> torch.Tensor:
        """TI: per-channel convolution with the normalised Gaussian outer(pdf, pdf) on linspace(-nsig, nsig, k)."""
        t = torch.linspace(-self.ti_nsig, self.ti_nsig, self.ti_kernel, dtype=grad.dtype, device=grad.device)
        pdf = torch.exp(-t**2 / 2)
        kernel = torch.outer(pdf, pdf)
        kernel = (kernel / kernel.sum()).expand(grad.shape[1], 1, -1, -1)
        return F.conv2d(grad, kernel, padding=self.ti_kernel // 2, groups=grad.shape[1])
