"""Small networks of model inversion for any input shape (images C×H×W or table rows D): LOKT's conditional
generator and two-headed discriminator, scaled down for a CPU (spec model-inversion.md, "minimal CPU version"),
and the surrogate classifiers."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from robustaudit.types import Bounds


class Generator(nn.Module):
    """G(z, y): a class-conditional generator (label embedding joined to z) whose outputs lie inside `bounds`.
    Images: a linear map to (4·base)×H/4×W/4, two upsampling convolutions, cropped to H×W; rows: an MLP."""

    def __init__(self, shape: tuple[int, ...], classes: int, bounds: Bounds, z_dim: int = 16, base: int = 32) -> None:
        super().__init__()
        self.shape, self.z_dim, self.bounds = shape, z_dim, bounds
        self.embed = nn.Embedding(classes, z_dim)
        if len(shape) == 3:
            c, h, w = shape
            self.h0, self.w0 = math.ceil(h / 4), math.ceil(w / 4)
            self.fc = nn.Sequential(nn.Linear(2 * z_dim, 4 * base * self.h0 * self.w0),
                                    nn.BatchNorm1d(4 * base * self.h0 * self.w0), nn.ReLU())
            self.body: nn.Module = nn.Sequential(
                nn.Upsample(scale_factor=2), nn.Conv2d(4 * base, 2 * base, 3, padding=1), nn.BatchNorm2d(2 * base),
                nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(2 * base, base, 3, padding=1), nn.BatchNorm2d(base),
                nn.ReLU(), nn.Conv2d(base, c, 3, padding=1))
        else:
            (d,) = shape
            self.fc = nn.Sequential(nn.Linear(2 * z_dim, 8 * base), nn.BatchNorm1d(8 * base), nn.ReLU())
            self.body = nn.Sequential(nn.Linear(8 * base, 8 * base), nn.BatchNorm1d(8 * base), nn.ReLU(),
                                      nn.Linear(8 * base, d))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], 1))
        if len(self.shape) == 3:
            h = self.body(h.view(len(z), -1, self.h0, self.w0))[:, :, : self.shape[1], : self.shape[2]]
        else:
            h = self.body(h)
        return self.bounds.low + (self.bounds.high - self.bounds.low) * torch.sigmoid(h)


class Discriminator(nn.Module):
    """D(x) -> (real/fake logit, class logits): spectral-normalised, as LOKT's; its class head learns the target's
    decision function on generated data."""

    def __init__(self, shape: tuple[int, ...], classes: int, base: int = 32) -> None:
        super().__init__()
        if len(shape) == 3:
            self.body: nn.Module = nn.Sequential(
                spectral_norm(nn.Conv2d(shape[0], base, 3, padding=1)), nn.LeakyReLU(0.2),
                spectral_norm(nn.Conv2d(base, 2 * base, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
                spectral_norm(nn.Conv2d(2 * base, 4 * base, 3, padding=1)), nn.LeakyReLU(0.2),
                nn.AdaptiveAvgPool2d(2), nn.Flatten())
            width = 16 * base
        else:
            self.body = nn.Sequential(spectral_norm(nn.Linear(shape[0], 8 * base)), nn.LeakyReLU(0.2),
                                      spectral_norm(nn.Linear(8 * base, 8 * base)), nn.LeakyReLU(0.2))
            width = 8 * base
        self.real = spectral_norm(nn.Linear(width, 1))
        self.cls = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.real(h)[:, 0], self.cls(h)


class ClassHead(nn.Module):
    """The discriminator's class head as a classifier (LOKT lists D among the surrogates)."""

    def __init__(self, d: Discriminator) -> None:
        super().__init__()
        self.d = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d(x)[1]


def surrogate(shape: tuple[int, ...], classes: int, width: int, depth: int) -> nn.Module:
    """A classifier for the surrogate set: `depth` 3×3 convolution blocks of `width` channels (images) or an MLP
    (rows); surrogates differ in width and depth, as LOKT's DenseNets do."""
    if len(shape) == 3:
        layers: list[nn.Module] = []
        c = shape[0]
        for i in range(depth):
            layers += [nn.Conv2d(c, width * 2 ** i, 3, padding=1), nn.BatchNorm2d(width * 2 ** i), nn.ReLU()]
            if i < depth - 1 and min(shape[1:]) >= 2 ** (i + 2):
                layers.append(nn.MaxPool2d(2))
            c = width * 2 ** i
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))
    dims = [shape[0]] + [width * 4] * depth
    mlp: list[nn.Module] = []
    for a, b in zip(dims, dims[1:], strict=False):
        mlp += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(*mlp, nn.Linear(dims[-1], classes))
