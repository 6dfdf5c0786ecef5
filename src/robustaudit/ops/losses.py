"""Per-example losses of the gradient attacks (spec gradient-attacks.md §1). Each returns shape [B].

Attacks maximise every loss here ("higher = closer to success"), except `margin`, which Square minimises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustaudit.errors import InputError


def log_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """log p from a model's scores: logits, or probabilities when the rows already are (a served softmax)."""
    if bool((scores >= 0).all()) and torch.allclose(scores.sum(1), torch.ones_like(scores[:, 0]), atol=1e-3):
        return scores.clamp_min(1e-12).log()
    return F.log_softmax(scores, dim=1)


def ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy -log p_y (maximised by untargeted attacks)."""
    return F.cross_entropy(z, y, reduction="none")


def _best_other(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{k != y} z_k."""
    return z.scatter(1, y[:, None], float("-inf")).amax(1)


def margin(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logit margin z_y - max_{k != y} z_k; <= 0 iff misclassified (Square minimises it)."""
    return z.gather(1, y[:, None])[:, 0] - _best_other(z, y)


def dlr(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio, -(z_y - max_{k!=y} z_k) / (z_pi1 - z_pi3); needs >= 3 classes."""
    if z.shape[1] < 3:
        raise InputError(f"the DLR loss needs at least 3 classes, the model has {z.shape[1]}")
    s = z.sort(1, descending=True).values
    return -margin(z, y) / (s[:, 0] - s[:, 2] + 1e-12)


def dlr_targeted(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Targeted DLR, -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2); needs >= 4 classes."""
    if z.shape[1] < 4:
        raise InputError(f"the targeted DLR loss needs at least 4 classes, the model has {z.shape[1]}")
    s = z.sort(1, descending=True).values
    zy = z.gather(1, y[:, None])[:, 0]
    zt = z.gather(1, t[:, None])[:, 0]
    return -(zy - zt) / (s[:, 0] - 0.5 * (s[:, 2] + s[:, 3]) + 1e-12)


def ce_targeted(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """-CE towards the target t (maximising it descends CE to t)."""
    return -F.cross_entropy(z, t, reduction="none")


def pm(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Probability margin p_m - p_y, m = argmax_{k != y} p_k, recomputed at every call (PMA)."""
    p = z.softmax(1)
    py = p.gather(1, y[:, None])[:, 0]
    return p.scatter(1, y[:, None], -1.0).amax(1) - py


def pm_targeted(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Targeted probability margin p_t - p_y."""
    p = z.softmax(1)
    return p.gather(1, t[:, None])[:, 0] - p.gather(1, y[:, None])[:, 0]


def neg_margin(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{k!=y} z_k - z_y: the logit margin as a loss to maximise (DLR's fallback for 2 classes)."""
    return -margin(z, y)


UNTARGETED = {"ce": ce, "dlr": dlr, "margin": neg_margin, "pm": pm}
TARGETED = {"ce": ce_targeted, "dlr": dlr_targeted, "pm": pm_targeted}
