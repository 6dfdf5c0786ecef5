"""The white-box signature (scheme 2 of Chen et al. 2021): the QR code, XOR-ed with a secret pad, is carved into the
out × in connection pattern of one pruned layer inside a window; sparsity is kept unchanged. Verification reads the
suspect's pattern in the window back, removes the pad, restores the function patterns and decodes.

Our choices beyond the official code, each to make the verdict a test: the pad makes the embedded bits uniformly
random given the key, so for any model made without the key the matching bits are exactly Binomial(n, 1/2) and the
p-value is exact; the strongest entry of each switched-on kernel is held above a magnitude floor while fine-tuning,
so further magnitude pruning removes it last; a suspect denser than the owner's layer (fine-tuned without the mask,
mask filled) is read at the owner's layer density by magnitude."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robustaudit.errors import InputError
from robustaudit.ownership.qr import Code, decode
from robustaudit.ownership.sparsity import Masks, project
from robustaudit.stats import binomial_tail


@dataclass(frozen=True)
class Placement:
    """Where the pattern sits: the layer (parameter name), the window's top-left (row = output channel, column =
    input channel), and the pattern carved there (code XOR pad on the data modules)."""

    layer: str
    row: int
    col: int
    pattern: np.ndarray

    def window(self, n: int) -> tuple[slice, slice]:
        return slice(self.row, self.row + n), slice(self.col, self.col + n)


def carved_pattern(code: Code, pad: np.ndarray) -> np.ndarray:
    """code XOR pad on the data modules; the function patterns are never embedded (kept as the code's)."""
    return np.where(code.function == 1, code.bits, code.bits ^ pad).astype(np.uint8)


def choose_window(masks: Masks, code: Code, pattern: np.ndarray, layer: str | None = None) -> Placement:
    """The layer (or the given one) and offset whose current connection pattern already matches the most data
    modules of `pattern`, so that embedding changes the fewest connections."""
    n = code.size
    data = torch.from_numpy(1 - code.function).float()
    p = torch.from_numpy(pattern).float()
    candidates = [layer] if layer is not None else list(masks)
    if layer is not None and layer not in masks:
        raise InputError(f"--layer {layer!r} is not a prunable weight of the model; it has: {', '.join(masks)}")
    best: tuple[float, str, int, int] | None = None
    for name in candidates:
        m = project(masks[name]).float().cpu()
        if m.shape[0] < n or m.shape[1] < n:
            continue
        # matches = sum over data modules of M·P + (1-M)(1-P), for every offset at once
        both = F.conv2d(torch.stack([m, 1 - m])[None], torch.stack([p * data, (1 - p) * data])[None])[0, 0]
        score, flat = both.flatten().max(0)
        r, c = divmod(int(flat), both.shape[1])
        if best is None or float(score) > best[0]:
            best = (float(score), name, r, c)
    if best is None:
        sizes = ", ".join(f"{k} {tuple(project(v).shape)}" for k, v in masks.items())
        raise InputError(f"no prunable layer has at least {n} output and {n} input channels for a {n}x{n} code "
                         f"(layers: {sizes}): use a shorter signature or a wider layer")
    return Placement(best[1], best[2], best[3], pattern)


def embed(masks: Masks, dense: dict[str, torch.Tensor], code: Code, place: Placement, *,
          floor: float) -> tuple[Masks, dict[str, torch.Tensor], dict[str, int]]:
    """Make the window's connection pattern equal the carved pattern on the data modules: a 1 on an empty kernel
    switches on its entry of largest dense magnitude, a 0 on an active kernel clears it; then the layer's number of
    kept weights is restored exactly (the weakest kept weights outside the window are dropped, or the strongest
    missing entries of the window's active 1-kernels, then outside it, are added). Returns the new masks, the
    magnitude floors (the strongest kept entry of every 1-kernel held at least `floor`) and a change count."""
    n = code.size
    name = place.layer
    mask = masks[name].clone()
    w = dense[name].detach().abs().to(mask.device)
    before = int(mask.sum())
    shape = mask.shape
    m3 = mask.view(shape[0], shape[1], -1)
    w3 = w.view(shape[0], shape[1], -1)
    rows, cols = place.window(n)
    inside = torch.zeros(shape[0], shape[1], dtype=torch.bool, device=mask.device)
    inside[rows, cols] = torch.from_numpy(code.function == 0).to(mask.device)
    want = torch.zeros_like(inside)
    want[rows, cols] = torch.from_numpy(place.pattern == 1).to(mask.device)
    on = m3.any(dim=2)
    switched_on = inside & want & ~on
    cleared = inside & ~want & on
    for o, i in switched_on.nonzero().tolist():
        m3[o, i, int(w3[o, i].argmax())] = True
    m3[cleared] = False
    delta = int(mask.sum()) - before
    protected = torch.zeros_like(m3)
    protected[rows, cols] = True  # the whole window, function modules included, keeps its pattern
    if delta > 0:  # drop the weakest kept weights outside the window
        score = torch.where(m3 & ~protected, w3, torch.full_like(w3, float("inf")))
        drop = torch.topk(score.flatten(), delta, largest=False).indices
        if bool(torch.isinf(score.flatten()[drop]).any()):
            raise InputError(f"layer {name} keeps too few weights outside the signature window to hold the pattern at "
                             "this sparsity: pick a wider --layer or a lower --sparsity")
        m3.view(-1)[drop] = False
    elif delta < 0:  # add the strongest missing entries of active 1-kernels inside the window, then outside it
        ones = (inside & want)[:, :, None].expand_as(m3)
        for region in (ones & ~m3, ~protected & ~m3):
            need = int(before - mask.sum())
            if need <= 0:
                break
            score = torch.where(region, w3 + 1e-12, torch.zeros_like(w3))  # +eps: an all-zero dense entry counts
            k = min(need, int(region.sum()))
            m3.view(-1)[torch.topk(score.flatten(), k).indices] = True
    if int(mask.sum()) != before:
        raise InputError(f"layer {name} cannot keep its sparsity with the signature in it: pick another --layer")
    floors = torch.zeros(shape, device=mask.device)
    f3 = floors.view(shape[0], shape[1], -1)
    for o, i in (inside & want).nonzero().tolist():
        f3[o, i, int(torch.where(m3[o, i], w3[o, i], torch.full_like(w3[o, i], -1.0)).argmax())] = floor
    changes = {"switched_on": int(switched_on.sum()), "cleared": int(cleared.sum()), "rebalanced": abs(delta)}
    new = dict(masks)
    new[name] = mask
    return new, {name: floors}, changes


def read_window(weight: torch.Tensor, place: Placement, n: int, kept: int) -> np.ndarray:
    """The suspect layer's connection pattern in the window; a layer holding more than `kept` (the owner's count)
    non-zero weights is first read at the owner's density: its `kept` largest magnitudes."""
    w = weight.detach().abs().cpu()
    mask = w != 0
    if int(mask.sum()) > kept:
        mask = torch.zeros(w.numel(), dtype=torch.bool)
        mask[torch.topk(w.flatten(), kept).indices] = True
        mask = mask.view(w.shape)
    rows, cols = place.window(n)
    return project(mask)[rows, cols].numpy().astype(np.uint8)


def check(bits: np.ndarray, code: Code, place: Placement) -> dict[str, Any]:
    """Compare a window read from a suspect with the carved pattern on the data modules: bit-error rate, the exact
    p-value of that many matches under an independent model (Binomial(n, 1/2): the pad is uniform given the key),
    and the QR code recovered (pad removed, function patterns restored) with its decoded text."""
    data = code.function == 0
    n_bits = int(data.sum())
    matches = int((bits == place.pattern)[data].sum())
    pad = place.pattern ^ code.bits
    recovered = np.where(code.function == 1, code.bits, bits ^ pad).astype(np.uint8)
    return {"bit_error_rate": 1.0 - matches / n_bits, "matching_bits": matches, "bits": n_bits,
            "p_value": binomial_tail(matches, n_bits, 0.5), "decoded": decode(recovered),
            "recovered": recovered}
