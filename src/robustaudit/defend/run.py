"""The training half of `robustaudit harden`: each method trains the hardened model (and, unless the user gives
one, the unhardened model of the same recipe) from tensors, checkpointed in the output folder; the audit of both
by our own commands is `robustaudit.commands.harden`'s half."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustaudit.defend.adversarial import pgd_at_loss, trades_loss
from robustaudit.defend.convex import ConvexResult, TwoLayer, solve, train_nonconvex
from robustaudit.defend.loop import train
from robustaudit.defend.pubdef import choose_sources, pubdef_loss, transfer_copy, transfer_matrix
from robustaudit.errors import InputError
from robustaudit.models.base import GradModel
from robustaudit.models.load import import_attribute
from robustaudit.progress import progress_bar
from robustaudit.run.fingerprint import sha256_tensors
from robustaudit.threat import ThreatModel

METHODS = ("pgd-at", "trades", "pubdef", "convex")


@dataclass(frozen=True)
class Training:
    """The settings of the epoch loop (pgd-at, trades, pubdef and the unhardened model)."""

    epochs: int = 10
    lr: float = 1e-3
    optimizer: str = "adam"
    batch_size: int = 64
    steps: int = 7  # inner PGD steps (pgd-at, trades)
    beta: float = 6.0  # TRADES
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build(recipe: str | Callable[..., nn.Module], classes: int, shape: Sequence[int]) -> nn.Module:
    """The recipe's module: `FILE.py:FUNCTION` or `module:FUNCTION` (or a callable), called with no argument, or
    with `n_classes` / `input_shape` when it takes them."""
    fn = import_attribute(recipe) if isinstance(recipe, str) else recipe
    if not callable(fn):
        raise InputError(f"the recipe {recipe!r} is not callable")
    try:
        params = set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a builtin without a signature
        params = set()
    kwargs: dict[str, Any] = {}
    if "n_classes" in params:
        kwargs["n_classes"] = classes
    if "input_shape" in params:
        kwargs["input_shape"] = tuple(shape)
    try:
        net = fn(**kwargs)
    except TypeError as e:
        raise InputError(f"the recipe {recipe!r} must be callable with no argument (or n_classes=, "
                         f"input_shape=): {e}") from None
    if not isinstance(net, nn.Module):
        raise InputError(f"the recipe {recipe!r} returned {type(net).__name__}, not a torch nn.Module")
    return net


def check_fits(net: nn.Module, x: torch.Tensor, classes: int) -> None:
    """The recipe's model takes the data's inputs and returns logits for every class in the labels."""
    try:
        with torch.no_grad():
            z = net.eval()(x[:2])
    except RuntimeError as e:
        raise InputError(f"the recipe's model fails on inputs shaped {tuple(x.shape[1:])}: "
                         f"{str(e).splitlines()[0]}") from None
    net.train()
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] < classes:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise InputError(f"the recipe's model must return logits (N, classes >= {classes}), got {shape}")


def standard(net: nn.Module, x: torch.Tensor, y: torch.Tensor, folder: Path, t: Training,
             progress: bool) -> list[dict[str, Any]]:
    """The unhardened model: the same recipe, loop and settings on clean cross-entropy."""
    return train(net, lambda m, xb, yb, g: F.cross_entropy(m(xb), yb), x, y, epochs=t.epochs, folder=folder,
                 tag="unhardened", settings={"method": "standard", **t.to_json()}, optimizer=t.optimizer, lr=t.lr,
                 batch_size=t.batch_size, seed=t.seed, progress=progress)


def white_box_defence(method: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                      folder: Path, t: Training, progress: bool) -> list[dict[str, Any]]:
    """PGD-AT or TRADES, in place."""
    if t.steps < 1:
        raise InputError(f"--steps must be >= 1, got {t.steps}")
    if method == "pgd-at":
        def loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return pgd_at_loss(m, xb, yb, threat, steps=t.steps, gen=g)
    else:
        def loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return trades_loss(m, xb, yb, threat, steps=t.steps, gen=g, beta=t.beta)
    return train(net, loss, x, y, epochs=t.epochs, folder=folder, tag=method,
                 settings={"method": method, "threat": threat.to_json(), **t.to_json()}, optimizer=t.optimizer,
                 lr=t.lr, batch_size=t.batch_size, seed=t.seed, progress=progress)


def check_pubdef(sources: int, pick: int, copies: int) -> None:
    if sources < 1 or pick < 1 or copies < 1:
        raise InputError("pubdef needs at least one --sources model, --pick >= 1 and --copies >= 1")


def pubdef(net: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, sources: dict[str, GradModel],
           folder: Path, t: Training, *, pick: int, copies: int, progress: bool) -> tuple[list[dict[str, Any]],
                                                                                      dict[str, Any]]:
    """PubDef in place: the transfer matrix on up to 256 training examples, the chosen sources, `copies` fixed
    PGD copies of the training set per chosen source (cached in the folder), then the weighted loss."""
    check_pubdef(len(sources), pick, copies)
    names = list(sources)
    cache = folder / "checkpoints" / "pubdef_copies.pt"
    key = json.dumps({"sources": names, "threat": threat.to_json(), "pick": pick, "copies": copies,
                      "seed": t.seed, "data": sha256_tensors(x, y)})
    if cache.is_file() and (state := torch.load(cache, weights_only=True))["key"] == key:
        matrix, chosen, stacked = state["matrix"], list(state["chosen"]), state["copies"]
    else:
        probe = torch.randperm(len(x), generator=torch.Generator().manual_seed(t.seed))[:256]
        matrix = transfer_matrix([sources[s] for s in names], x[probe], y[probe], threat, seed=t.seed)
        chosen = choose_sources(matrix, pick)
        stacked = torch.stack([transfer_copy(sources[names[s]], x, y, threat, seed=t.seed + 104729 * (c + 1) + s)
                               for s in chosen for c in range(copies)], 1)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "matrix": matrix, "chosen": chosen, "copies": stacked}, cache)
    k = len(chosen)
    data = torch.cat([x[:, None], stacked], 1)  # (n, 1 + k·copies, ...): each example with its fixed copies

    def loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        pick_copy = torch.randint(copies, (k,), generator=g)  # one of each source's copies per batch
        parts = [xb[:, 1 + s * copies + int(pick_copy[s])] for s in range(k)]
        return pubdef_loss(m, xb[:, 0], parts, yb)

    log = train(net, loss, data, y, epochs=t.epochs, folder=folder, tag="pubdef",
                settings={"method": "pubdef", "key": key, **t.to_json()}, optimizer=t.optimizer, lr=t.lr,
                batch_size=t.batch_size, seed=t.seed, progress=progress)
    game = {"sources": names, "matrix": np.asarray(matrix).round(4).tolist(),
            "chosen": [names[s] for s in chosen], "worst_cover": float(torch.as_tensor(matrix)[:, chosen].min(1)
                                                                       .values.max())}
    return log, game


def convex(x: np.ndarray, y: np.ndarray, classes: int, eps: float, *, patterns: int, warm: int, reg: float,
           solver: str, rounds: int, seed: int, folder: Path, progress: bool) -> tuple[ConvexResult, ConvexResult,
                                                                                     float | None]:
    """The standard program on `patterns` Gaussian gates, the patterns of a warm-start network of width `warm`
    (0: none) and `rounds` of pattern search; the robust program at Linf `eps` on the Gaussian gates (its optimum
    uses few neurons, and its cost grows fast with the patterns). Each result is checkpointed in the folder, so a
    rerun resumes. Returns both and the warm-start network's objective."""
    key = json.dumps({"data": sha256_tensors(torch.from_numpy(x), torch.from_numpy(y)), "eps": eps,
                      "patterns": patterns, "warm": warm, "reg": reg, "solver": solver, "rounds": rounds,
                      "seed": seed})
    if warm < 0:
        raise InputError(f"--warm must be >= 0, got {warm}")
    with progress_bar(progress) as bar:
        task = bar.add_task("convex: warm start, standard program, robust program", total=3)
        start = train_nonconvex(x, y, classes, width=warm, beta=reg, seed=seed) if warm else None
        bar.advance(task)
        std = _cached(folder / "checkpoints" / "convex-standard.npz", key, lambda: solve(
            x, y, classes, beta=reg, patterns=patterns, seed=seed, solver=solver, warm=start, rounds=rounds))
        bar.advance(task)
        robust = _cached(folder / "checkpoints" / "convex-robust.npz", key, lambda: solve(
            x, y, classes, eps=eps, beta=reg, patterns=patterns, seed=seed, solver=solver))
        bar.advance(task)
    return std, robust, None if start is None else start.objective(x, y, reg)


def _cached(path: Path, key: str, run: Callable[[], ConvexResult]) -> ConvexResult:
    """A solved program from `path` when it was solved with the same `key`, else solved and written there."""
    if path.is_file():
        with np.load(path) as f:
            if str(f["key"]) == key:
                net = TwoLayer(f["u"], f["a"], f["mean"], f["scale"], int(f["classes"]))
                ratio = float(f["dual_ratio"])
                return ConvexResult(net, float(f["optimum"]), int(f["patterns"]), str(f["solver"]), str(f["status"]),
                                    float(f["seconds"]), None if np.isnan(ratio) else ratio)
    r = run()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, key=key, u=r.network.u, a=r.network.a, mean=r.network.mean, scale=r.network.scale,
             classes=r.network.classes, optimum=r.optimum, patterns=r.patterns, solver=r.solver, status=r.status,
             seconds=r.seconds, dual_ratio=np.nan if r.dual_ratio is None else r.dual_ratio)
    tmp.replace(path)
    return r
