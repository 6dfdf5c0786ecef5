"""Tiny offline models and data for the tests; every claimed success is re-verified strictly."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

os.environ["ROBUSTAUDIT_STRICT"] = "1"
torch.set_num_threads(2)


class Counting(nn.Module):
    """Counts the rows that go through forward and through backward: the ground truth for query accounting."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forward_rows = 0
        self.backward_rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_rows += len(x)
        z = self.inner(x)
        if z.requires_grad:
            n = len(x)

            def hook(g: torch.Tensor) -> torch.Tensor:
                self.backward_rows += n
                return g

            z.register_hook(hook)
        return z


def linear_model(d: int, k: int, seed: int = 0) -> nn.Linear:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, k)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g))
        lin.bias.copy_(torch.randn(k, generator=g) * 0.1)
    return lin


def small_cnn(k: int = 10, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, k),
        )


@pytest.fixture(scope="session")
def digits8() -> tuple[torch.Tensor, torch.Tensor]:
    """Real sklearn digits, 1×8×8 in [0,1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32))[:, None]
    return x, torch.from_numpy(d.target.astype(np.int64))


def train_small_cnn(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> nn.Module:
    """small_cnn (initialised and shuffled with `seed`) trained for a few epochs on the first 1,200 digits."""
    model = small_cnn(seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(6):
        for idx in torch.randperm(1200, generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_cnn(digits8: tuple[torch.Tensor, torch.Tensor]) -> nn.Module:
    """small_cnn trained for a few epochs on the first 1,200 digits (seconds)."""
    return train_small_cnn(*digits8)


@pytest.fixture(scope="session")
def robust_cnn(digits8: tuple[torch.Tensor, torch.Tensor]) -> nn.Module:
    """small_cnn trained with PGD-5 adversarial training (Madry et al.) at Linf 0.1 on the first 1,400 digits
    (seconds): a model on which examples survive. Test on digits 1400 onwards."""
    from robustaudit.masks import adversarially_trained

    x, y = digits8
    return adversarially_trained(small_cnn(seed=0), x[:1400], y[:1400], eps=0.1)


@pytest.fixture(scope="session")
def demo_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The demo's TorchScript CNN and test set, trained once per session (the README's `make demo` model)."""
    from robustaudit.demo import demo_files

    cache = os.environ.get("ROBUSTAUDIT_TEST_CACHE")
    d = tmp_path_factory.mktemp("demo") if cache is None else Path(cache)
    m, data = demo_files(d)
    return str(m), str(data)


def demo_subset(demo_paths: tuple[str, str], folder: Path, n: int) -> Path:
    """The first n examples of the demo test set as their own .npz in `folder`."""
    d = np.load(demo_paths[1])
    path = folder / f"demo{n}.npz"
    np.savez(path, x=d["x"][:n], y=d["y"][:n])
    return path


def serve_label_only(model: nn.Module, labels: bool = True) -> tuple[str, object]:
    """A real `robustaudit serve` of the model at label access (scores with `labels=False`) on a free local port:
    (URL, uvicorn server)."""
    import uvicorn

    from robustaudit.models.torch import TorchModel
    from robustaudit.models.wrappers import as_label_only, as_score_only
    from robustaudit.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = as_label_only(TorchModel(model)) if labels else as_score_only(TorchModel(model))
    server = uvicorn.Server(uvicorn.Config(create_app(served), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/v2/models/model", server


def served_examples(url: str) -> float:
    """The server's Prometheus count of examples it has inferred."""
    import httpx

    text = httpx.get(url.split("/v2/")[0] + "/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("robustaudit_inferred_examples_total"))
