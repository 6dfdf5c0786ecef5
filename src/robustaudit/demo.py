"""The bundled demo: a small CNN on scikit-learn's real handwritten digits at 32×32, trained once and cached."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("ROBUSTAUDIT_CACHE", Path.home() / ".cache" / "robustaudit"))


def digits_32(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn digits upsampled to 1×32×32 in [0,1] (bilinear); the stratified 80/20 split of random_state 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

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


def train_digits_cnn(xtr: np.ndarray, ytr: np.ndarray, *, epochs: int = 8, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DigitsCNN()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def demo_files(directory: Path | None = None) -> tuple[Path, Path]:
    """(torch.export program, test .npz), trained and written on first use, then loaded from the cache."""
    d = directory or cache_dir()
    model_path, data_path = d / "digits_cnn.pt2", d / "digits_test.npz"
    if model_path.is_file() and data_path.is_file():
        return model_path, data_path
    d.mkdir(parents=True, exist_ok=True)
    log.info("training the demo digits CNN (once; cached in %s)", d)
    xtr, ytr, xte, yte = digits_32()
    model = train_digits_cnn(xtr, ytr)
    tmp = model_path.with_name("digits_cnn.partial.pt2")  # torch.export wants the .pt2 suffix
    example = torch.from_numpy(xte[:8])
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp))
    os.replace(tmp, model_path)
    with open(data_path.with_suffix(".npz.tmp"), "wb") as f:
        np.savez(f, x=xte, y=yte)
    os.replace(data_path.with_suffix(".npz.tmp"), data_path)
    return model_path, data_path
