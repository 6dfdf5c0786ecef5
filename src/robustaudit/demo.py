"""The bundled demo: a small CNN on scikit-learn's real handwritten digits at 32×32, trained once and cached."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustaudit.extras import require
from robustaudit.models.load import save_program
from robustaudit.paths import cache_dir

log = logging.getLogger(__name__)


def digits_32(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn digits upsampled to 1×32×32 in [0,1] (bilinear); the stratified 80/20 split of random_state 0."""
    load_digits = require("sklearn.datasets", "the demo's digits").load_digits
    train_test_split = require("sklearn.model_selection", "the demo's digits").train_test_split

    d = load_digits()
    x8 = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x8, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1).numpy()
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return xtr, ytr, xte, yte


class DigitsCNN(nn.Module):
    """3 conv blocks (32-64-128 channels, max-pooling) and one linear layer; logits out."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        chans = [1, 32, 64, 128]
        layers: list[nn.Module] = []
        for a, b in zip(chans, chans[1:], strict=False):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(128 * 4 * 4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def _convs(widths: list[int], norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in zip([1, *widths], widths, strict=False):
        layers += [nn.Conv2d(a, b, 3, padding=1), *([nn.BatchNorm2d(b)] if norm else []), nn.ReLU(), nn.MaxPool2d(2)]
    return layers


def surrogate_net(arch: str) -> nn.Module:
    """The surrogate family for the transfer audit (none of them is DigitsCNN, the demo target)."""
    if arch == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 256), nn.ReLU(), nn.Linear(256, 10))
    if arch == "cnn":
        return nn.Sequential(*_convs([16, 32], False), nn.Flatten(), nn.Linear(32 * 8 * 8, 10))
    if arch == "cnn-bn":
        return nn.Sequential(*_convs([16, 32], True), nn.Flatten(), nn.Linear(32 * 8 * 8, 10))
    if arch == "cnn-wide":
        return nn.Sequential(*_convs([64, 128], False), nn.Flatten(), nn.Linear(128 * 8 * 8, 10))
    raise ValueError(f"unknown surrogate architecture {arch!r}")


SURROGATES = ("mlp", "cnn", "cnn-bn", "cnn-wide")


def train_digits_cnn(xtr: np.ndarray, ytr: np.ndarray, *, epochs: int = 8, seed: int = 0,
                     arch: str | None = None, noise: float = 0.0) -> nn.Module:
    """Train DigitsCNN (or a surrogate architecture) on the digits with Adam; `noise` > 0 adds Gaussian noise of
    that standard deviation to every training input (the base classifier randomized smoothing wants)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DigitsCNN() if arch is None else surrogate_net(arch)
    return _fit(model, xtr, ytr, epochs=epochs, seed=seed, lr=1e-3, batch=64, noise=noise)


def _fit(model: nn.Module, xtr: np.ndarray, ytr: np.ndarray, *, epochs: int, seed: int, lr: float, batch: int,
         noise: float = 0.0) -> nn.Module:
    """Adam on cross-entropy, shuffled by `seed`; optional Gaussian noise on the inputs."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            opt.zero_grad()
            xb = x[idx] + noise * torch.randn(x[idx].shape, generator=gen) if noise else x[idx]
            F.cross_entropy(model(xb), y[idx]).backward()
            opt.step()
    return model.eval()


def noisy_files(sigma: float = 0.25, directory: Path | None = None) -> Path:
    """DigitsCNN trained with Gaussian noise augmentation at `sigma` (torch.export program), cached."""
    d = directory or cache_dir()
    path = d / f"digits_cnn_noise{sigma:g}.pt2"
    if not path.is_file():
        d.mkdir(parents=True, exist_ok=True)
        log.info("training the noise-augmented digits CNN, sigma %g (once; cached in %s)", sigma, d)
        xtr, ytr, xte, _ = digits_32()
        save_program(train_digits_cnn(xtr, ytr, epochs=12, noise=sigma), path, torch.from_numpy(xte[:8]))
    return path


def _cached(directory: Path | None, names: tuple[str, str], what: str,
            build: Callable[[], tuple[nn.Module, np.ndarray, np.ndarray]]) -> tuple[Path, Path]:
    """(model .pt2, test .npz) = `names` in the cache; `build` trains the model and gives its test set, once."""
    d = directory or cache_dir()
    model_path, data_path = d / names[0], d / names[1]
    if model_path.is_file() and data_path.is_file():
        return model_path, data_path
    d.mkdir(parents=True, exist_ok=True)
    log.info("training %s (once; cached in %s)", what, d)
    model, xte, yte = build()
    save_program(model, model_path, torch.from_numpy(xte[:8]))
    with open(data_path.with_suffix(".npz.tmp"), "wb") as f:
        np.savez(f, x=xte, y=yte)
    os.replace(data_path.with_suffix(".npz.tmp"), data_path)
    return model_path, data_path


def demo_files(directory: Path | None = None) -> tuple[Path, Path]:
    """(torch.export program, test .npz), trained and written on first use, then loaded from the cache."""

    def build() -> tuple[nn.Module, np.ndarray, np.ndarray]:
        xtr, ytr, xte, yte = digits_32()
        return train_digits_cnn(xtr, ytr), xte, yte

    return _cached(directory, ("digits_cnn.pt2", "digits_test.npz"), "the demo digits CNN", build)


def robust_files(eps: float = 0.1, directory: Path | None = None) -> tuple[Path, Path]:
    """DigitsCNN adversarially trained (PGD-AT, Linf `eps`, 5 steps, 10 epochs) on the digits' training split, and
    the test .npz: a model on which examples survive, for strength-per-compute benchmarks; cached."""
    from robustaudit.masks import adversarially_trained

    def build() -> tuple[nn.Module, np.ndarray, np.ndarray]:
        xtr, ytr, xte, yte = digits_32()
        torch.manual_seed(0)
        net = adversarially_trained(DigitsCNN(), torch.from_numpy(xtr), torch.from_numpy(ytr), eps=eps, epochs=10)
        return net, xte, yte

    return _cached(directory, (f"digits_cnn_at{eps:g}.pt2", "digits_test.npz"), f"the PGD-AT digits CNN (eps {eps:g})",
                   build)


def digits_mlp(x: torch.Tensor, y: torch.Tensor, seed: int = 0, *, weight_decay: float = 0.0,
               epochs: int = 150) -> nn.Module:
    """The membership demo's training recipe: an MLP (64-256-10) on 8×8 digits, Adam, trained until it fits its
    training set, so it leaks membership. `--shadow robustaudit.demo:digits_mlp` trains LiRA's shadow models."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def digits_mlp_small(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> nn.Module:
    """The distribution-inference demo's recipe: a (32, 16, 8) MLP, 40 epochs of Adam (a fraction of a second)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                        nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def digits_8(seed: int = 1, n: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2n random sklearn digits (1×8×8 in [0,1], permutation of `seed`) and member flags: the first n."""
    d = require("sklearn.datasets", "the demo's digits").load_digits()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32))[:, None]
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[: 2 * n]
    return x[idx], torch.from_numpy(d.target.astype(np.int64))[idx], torch.arange(2 * n) < n


def membership_files(directory: Path | None = None) -> tuple[Path, Path, Path]:
    """(target .pt2, members .npz, non-members .npz): `digits_mlp` trained on 100 random digits (the members),
    and 100 other digits it never saw; written on first use, then loaded from the cache."""
    d = directory or cache_dir()
    paths = d / "digits_mlp.pt2", d / "digits_members.npz", d / "digits_nonmembers.npz"
    if all(p.is_file() for p in paths):
        return paths
    d.mkdir(parents=True, exist_ok=True)
    x, y, member = digits_8()
    for path, rows in ((paths[1], member), (paths[2], ~member)):
        with open(path.with_suffix(".npz.tmp"), "wb") as f:
            np.savez(f, x=x[rows].numpy(), y=y[rows].numpy())
        os.replace(path.with_suffix(".npz.tmp"), path)
    save_program(digits_mlp(x[member], y[member]), paths[0], x[:8])
    return paths


def surrogate_files(directory: Path | None = None) -> dict[str, Path]:
    """The surrogate family (MLP, small CNN, CNN with BatchNorm, wide CNN) trained on the digits' training split,
    exported and cached like the demo model; the demo model (DigitsCNN) is the target none of them is."""
    d = directory or cache_dir()
    paths = {arch: d / f"surrogate_{arch}.pt2" for arch in SURROGATES}
    missing = [a for a, p in paths.items() if not p.is_file()]
    if missing:
        d.mkdir(parents=True, exist_ok=True)
        log.info("training the digits surrogates %s (once; cached in %s)", ", ".join(missing), d)
        xtr, ytr, xte, _ = digits_32()
        for i, arch in enumerate(SURROGATES):
            if arch in missing:
                save_program(train_digits_cnn(xtr, ytr, arch=arch, seed=100 + i), paths[arch],
                             torch.from_numpy(xte[:8]))
    return paths


def digit_pairs(n: int, *, seed: int = 0, train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A 100-class task from real digits: two digits (upsampled to 16×16, bilinear) side by side, 1×16×32 in
    [0,1]; class = 10·left + right. Left and right digits come from the same split (80/20, stratified,
    random_state 0) of sklearn's digits."""
    load_digits = require("sklearn.datasets", "the demo's digits").load_digits
    train_test_split = require("sklearn.model_selection", "the demo's digits").train_test_split

    d = load_digits()
    x8 = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x8, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)[:, 0].numpy()
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, random_state=0, stratify=d.target)
    xs, ys = (xtr, ytr) if train else (xte, yte)
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, len(xs), n), rng.integers(0, len(xs), n)
    return np.concatenate([xs[left], xs[right]], axis=2)[:, None], (10 * ys[left] + ys[right]).astype(np.int64)


class PairsNet(nn.Module):
    """Three conv layers, then a 128-d feature layer and the final linear layer over 100 classes."""

    def __init__(self, n_classes: int = 100) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                      nn.Linear(64 * 4 * 8, 128), nn.ReLU())
        self.head = nn.Linear(128, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def pairs_files(directory: Path | None = None) -> tuple[Path, Path]:
    """(torch.export program, test .npz) of the 100-class digit-pairs model, trained once and cached."""

    def build() -> tuple[nn.Module, np.ndarray, np.ndarray]:
        xtr, ytr = digit_pairs(30000, seed=1)
        xte, yte = digit_pairs(1000, seed=2, train=False)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = PairsNet()
        return _fit(model, xtr, ytr, epochs=6, seed=0, lr=2e-3, batch=128), xte, yte

    return _cached(directory, ("digit_pairs16.pt2", "digit_pairs16_test.npz"), "the 100-class digit-pairs model",
                   build)


def inversion_files(directory: Path | None = None) -> dict[str, Path]:
    """The model-inversion demo (spec model-inversion.md, minimal CPU version), on the 8×8 digits: the target, a
    CNN trained on 80% of the private classes 0-4; the evaluator, an MLP (another architecture) trained on all of
    0-4, never used by the attack; the public set, the digits 5-9 without labels; the private set (the target's
    training examples, for the KNN distance only). Written on first use, then loaded from the cache."""
    d = directory or cache_dir()
    paths = {"target": d / "inversion_target.pt2", "evaluator": d / "inversion_evaluator.pt2",
             "public": d / "inversion_public.npz", "private": d / "inversion_private.npz"}
    if all(p.is_file() for p in paths.values()):
        return paths
    d.mkdir(parents=True, exist_ok=True)
    digits = require("sklearn.datasets", "the demo's digits").load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    xp, yp = x[y < 5], y[y < 5]
    n_train = int(0.8 * len(xp))
    torch.manual_seed(0)
    target = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                           nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 5))
    evaluator = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 5))
    _fit(target, xp[:n_train], yp[:n_train], epochs=30, seed=0, lr=3e-3, batch=64)
    _fit(evaluator, xp, yp, epochs=60, seed=1, lr=3e-3, batch=64)
    for name, arrays in (("public", {"x": x[y >= 5]}), ("private", {"x": xp[:n_train], "y": yp[:n_train]})):
        with open(paths[name].with_suffix(".npz.tmp"), "wb") as f:
            np.savez(f, **arrays)
        os.replace(paths[name].with_suffix(".npz.tmp"), paths[name])
    example = torch.from_numpy(xp[:8])
    save_program(target.eval(), paths["target"], example)
    save_program(evaluator.eval(), paths["evaluator"], example)
    return paths


def ownership_files(directory: Path | None = None) -> dict[str, Path]:
    """The ownership demo: the demo digits CNN (the owner's dense model), the digits' training and test splits
    (32×32), and an independent suspect, a DigitsCNN trained with another seed and magnitude-pruned to 80%.
    Written on first use, then loaded from the cache."""
    from robustaudit.ownership.sparsity import apply_masks, magnitude_masks

    d = directory or cache_dir()
    model, test = demo_files(d)
    paths = {"model": model, "train": d / "digits_train.npz", "test": test,
             "independent": d / "digits_cnn_independent80.pt2"}
    if all(p.is_file() for p in paths.values()):
        return paths
    xtr, ytr, xte, _ = digits_32()
    with open(paths["train"].with_suffix(".npz.tmp"), "wb") as f:
        np.savez(f, x=xtr, y=ytr)
    os.replace(paths["train"].with_suffix(".npz.tmp"), paths["train"])
    net = train_digits_cnn(xtr, ytr, seed=5)
    apply_masks(net, magnitude_masks(net, 0.8))
    save_program(net, paths["independent"], torch.from_numpy(xte[:8]))
    return paths
