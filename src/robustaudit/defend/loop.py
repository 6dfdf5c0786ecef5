"""The epoch loop every trained defence shares: shuffled batches, the defence's loss, a checkpoint per epoch in
the output folder (model, optimiser and random state, so a killed run resumes where it stopped and ends with
the same weights), a progress bar and a log line per epoch."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustaudit.errors import InputError
from robustaudit.models.torch import set_eval
from robustaudit.progress import progress_bar
from robustaudit.run.fingerprint import sha256_tensors

BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def optimiser(net: nn.Module, name: str, lr: float) -> torch.optim.Optimizer:
    """adam (no weight decay) or sgd (momentum 0.9, weight decay 5e-4: the papers' CIFAR setting)."""
    if name == "adam":
        return torch.optim.Adam(net.parameters(), lr=lr)
    if name == "sgd":
        return torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    raise InputError(f"--optimizer must be adam or sgd, got {name!r}")


def train(net: nn.Module, loss: BatchLoss, x: torch.Tensor, y: torch.Tensor, *, epochs: int, folder: Path,
          tag: str, settings: dict[str, Any], optimizer: str = "adam", lr: float = 1e-3, batch_size: int = 64,
          seed: int = 0, progress: bool = False,
          epoch_end: Callable[[nn.Module], dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """Train `net` in place for `epochs` on (x, y) with `loss`; after each epoch the checkpoint
    `folder/checkpoints/<tag>.pt` is replaced and a line appended to `folder/<tag>.log.jsonl`. A checkpoint with
    the same `settings` and data resumes the run; any other is an error (a different run). Returns the log
    (one dict per epoch: loss, seconds and what `epoch_end` measures)."""
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise InputError(f"epochs and batch size must be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    device = next(net.parameters()).device
    opt = optimiser(net, optimizer, lr)
    gen = torch.Generator().manual_seed(seed)
    ckpt, log_path = folder / "checkpoints" / f"{tag}.pt", folder / f"{tag}.log.jsonl"
    key = json.dumps({"settings": settings, "data": sha256_tensors(x, y)}, sort_keys=True, default=str)
    log: list[dict[str, Any]] = []
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state["settings"] != key:
            raise InputError(f"{ckpt} belongs to a run with other settings: use a new --out or delete it")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.random.set_rng_state(state["torch_rng"])  # dropout and other global draws continue as they would
        log = json.loads(state["log"])
    with progress_bar(progress) as bar:
        task = bar.add_task(f"{tag}: epochs", total=epochs, completed=len(log))
        for epoch in range(len(log), epochs):
            start, total, seen = time.perf_counter(), 0.0, 0
            net.train()
            for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                xb, yb = x[idx].to(device), y[idx].to(device)
                opt.zero_grad()
                value = loss(net, xb, yb, gen)
                if not torch.isfinite(value):
                    raise InputError(f"{tag}: the training loss became {float(value)} in epoch {epoch + 1}: lower "
                                     "--lr")
                value.backward()
                opt.step()
                total, seen = total + float(value.detach()) * len(idx), seen + len(idx)
            set_eval(net)
            line: dict[str, Any] = {"epoch": epoch + 1, "loss": total / seen,
                                    "seconds": round(time.perf_counter() - start, 3)}
            if epoch_end is not None:
                line.update(epoch_end(net))
            log.append(line)
            _save(ckpt, {"settings": key, "model": net.state_dict(), "optimizer": opt.state_dict(),
                         "generator": gen.get_state(), "torch_rng": torch.random.get_rng_state(),
                         "log": json.dumps(log)})
            with open(log_path, "a") as f:
                f.write(json.dumps({"stage": tag, **line}) + "\n")
            bar.advance(task)
    set_eval(net)
    return log


def _save(path: Path, state: dict[str, Any]) -> None:
    """Atomically: a kill while writing leaves the previous epoch's checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
