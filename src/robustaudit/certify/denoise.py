"""ZO-AE-DS (Zhang et al., "How to Robustify Black-Box ML Models? A Zeroth-Order Optimization Perspective",
ICLR 2022; spec certification-and-defences.md §2): make a model that can only be queried certifiably robust by
training a denoiser in front of it, with gradients through the model estimated from its scores.

    stage 1 (white box, no queries): autoencoder (encoder ψ, decoder φ) on reconstruction; denoiser D on
             x + σ·N → x (optional)
    stage 2: the decoder joins the black box; per minibatch, with ŷ = argmax f(x) (pseudo-labels, queried once):
             z = ψ(D(x + σ·N)),  ℓ(z) = CE(f(φ(z)), ŷ)
             ĝ = RGE (q + 1 queries per example) or CGE (2d, or d + 1 forward) of ℓ at z   [or ∇ℓ for 'fo']
             minimise mean <z, stopgrad(ĝ)> over D and ψ (Adam)
    the robust model is f(φ(ψ(D(x)))), certified with randomized smoothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustaudit.errors import AccessError, InputError
from robustaudit.models.base import LabelModel
from robustaudit.ops.losses import log_probabilities
from robustaudit.ops.rng import generator
from robustaudit.ops.zo import coordinate_gradient, random_gradient
from robustaudit.oracle import Oracle
from robustaudit.progress import progress_bar
from robustaudit.types import Access

ESTIMATORS = ("rge", "cge", "cge-forward", "fo")


class Denoiser(nn.Module):
    """A small DnCNN: predicts the noise and subtracts it."""

    def __init__(self, channels: int, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.net(x)


class Encoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent: int) -> None:
        super().__init__()
        c, h, w = shape
        self.net = nn.Sequential(nn.Conv2d(c, 32, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(64 * (h // 4) * (w // 4), latent))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent: int) -> None:
        super().__init__()
        c, h, w = shape
        self.grid = (64, h // 4, w // 4)
        self.fc = nn.Linear(latent, 64 * (h // 4) * (w // 4))
        self.net = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
                                 nn.ConvTranspose2d(32, c, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).reshape(-1, *self.grid))


class FrontEnd(nn.Module):
    """x -> φ(ψ(D(x))): what goes in front of the black box (the decoder is frozen after stage 1)."""

    def __init__(self, denoiser: Denoiser, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.denoiser, self.encoder, self.decoder = denoiser, encoder, decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(self.denoiser(x)))


class Composed:
    """The robustified model: the front end (local) then the target (any access level); label access."""

    access = Access.LABELS

    def __init__(self, front: nn.Module, target: LabelModel) -> None:
        self.front, self.target = front, target
        self.device = next(front.parameters()).device

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.target.predict_labels(self.front(x.to(self.device)))


@dataclass(frozen=True, kw_only=True)
class ZOAEDS:
    """Training settings; `latent` is d (the paper: 192 for CIFAR-10's 3072 inputs)."""

    sigma: float = 0.25
    estimator: str = "cge"
    q: int = 192  # RGE directions
    mu: float = 0.005
    latent: int = 64
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    pretrain_epochs: int = 20  # stage 1, white box
    pretrain_denoiser: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise InputError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        if not (math.isfinite(self.sigma) and self.sigma > 0) or self.q < 1 or self.latent < 1 or self.mu <= 0:
            raise InputError("sigma, q, latent and mu must be positive")

    def queries_per_example_step(self) -> int:
        return {"rge": self.q + 1, "cge": 2 * self.latent, "cge-forward": self.latent + 1, "fo": 1}[self.estimator]

    def train(self, target: LabelModel, x: torch.Tensor, *, progress: bool = True) -> tuple[FrontEnd, dict[str, Any]]:
        """Train the front end for `target` on inputs x (N, C, H, W) in [0, 1]; returns it and the statistics
        (every target query counted, per training example)."""
        if x.dim() != 4 or x.shape[2] % 4 or x.shape[3] % 4:
            raise InputError(f"ZO-AE-DS trains on images (N, C, H, W) with H and W multiples of 4, got "
                             f"{tuple(x.shape)}")
        need = Access.GRADIENTS if self.estimator == "fo" else Access.SCORES
        if Access(target.access) < need:
            raise AccessError(f"estimator {self.estimator} needs {need.name.lower()} access to the target")
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            shape = (x.shape[1], x.shape[2], x.shape[3])
            front = FrontEnd(Denoiser(shape[0]), Encoder(shape, self.latent), Decoder(shape, self.latent))
        t0 = time.perf_counter()
        self._pretrain(front, x)
        oracle = Oracle(target, len(x))
        with torch.no_grad():
            pseudo = torch.cat([oracle.labels(x[i:i + 256], torch.arange(i, min(i + 256, len(x))))
                                for i in range(0, len(x), 256)]).long()
        front.decoder.requires_grad_(False)
        opt = torch.optim.Adam([*front.denoiser.parameters(), *front.encoder.parameters()], lr=self.lr,
                               weight_decay=1e-4)
        gen = generator(self.seed, "zo-ae-ds")
        history = []
        with progress_bar(progress) as bar:
            task = bar.add_task(f"ZO-AE-DS ({self.estimator})", total=self.epochs)
            for _ in range(self.epochs):
                front.train()
                front.decoder.eval()
                total = 0.0
                for idx in torch.randperm(len(x), generator=gen).split(self.batch_size):
                    noisy = x[idx] + self.sigma * torch.randn(x[idx].shape, generator=gen).to(x)
                    z = front.encoder(front.denoiser(noisy))
                    g, value = self._gradient(oracle, front.decoder, z.detach(), pseudo[idx], idx, gen)
                    opt.zero_grad()
                    (z * g).sum(1).mean().backward()
                    opt.step()
                    total += float(value.sum())
                history.append(total / len(x))
                bar.advance(task)
        front.eval()
        return front, {"estimator": self.estimator, "sigma": self.sigma, "latent": self.latent, "q": self.q,
                       "epochs": self.epochs, "training_queries": int(oracle.queries.sum()),
                       "training_gradients": int(oracle.gradients.sum()), "loss_per_epoch": history,
                       "seconds": time.perf_counter() - t0}

    def _gradient(self, oracle: Oracle, decoder: Decoder, z: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(ĝ or ∇ℓ at z, ℓ(z)) for the black-box loss ℓ(z) = CE(f(φ(z)), ŷ)."""
        if self.estimator == "fo":
            zg = z.clone().requires_grad_(True)
            _, value, grad = oracle.value_and_grad(decoder(zg), idx,
                                                   lambda logits: F.cross_entropy(logits, labels, reduction="none"))
            with torch.enable_grad():
                (g,) = torch.autograd.grad(decoder(zg), zg, grad_outputs=grad)
            return g, value

        owner = {int(i): j for j, i in enumerate(idx.tolist())}

        def loss(probes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                scores = oracle.scores(decoder(probes), rows)
            wanted = labels[torch.tensor([owner[int(r)] for r in rows.tolist()])]
            return F.nll_loss(log_probabilities(scores), wanted.to(scores.device), reduction="none")

        if self.estimator == "rge":
            return random_gradient(loss, z, idx, self.q, self.mu, gen)
        return coordinate_gradient(loss, z, idx, self.mu, central=self.estimator == "cge")

    def _pretrain(self, front: FrontEnd, x: torch.Tensor) -> None:
        """Stage 1 (white box, no target queries): the autoencoder on reconstruction, the denoiser on MSE."""
        gen = generator(self.seed, "zo-ae-ds-pretrain")
        ae = torch.optim.Adam([*front.encoder.parameters(), *front.decoder.parameters()], lr=1e-3)
        dn = torch.optim.Adam(front.denoiser.parameters(), lr=1e-3)
        front.train()
        for _ in range(self.pretrain_epochs):
            for idx in torch.randperm(len(x), generator=gen).split(self.batch_size):
                ae.zero_grad()
                F.mse_loss(front.decoder(front.encoder(x[idx])), x[idx]).backward()
                ae.step()
                if self.pretrain_denoiser:
                    noisy = x[idx] + self.sigma * torch.randn(x[idx].shape, generator=gen).to(x)
                    dn.zero_grad()
                    F.mse_loss(front.denoiser(noisy), x[idx]).backward()
                    dn.step()
