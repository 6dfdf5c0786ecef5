"""Where shards run: in this process (`LocalBackend`) or as tasks on a Ray cluster (`RayBackend`: one actor per
worker loads the model once; results stream back to the driver, which alone writes the store)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from robustaudit.attacks.base import Attack
from robustaudit.extras import require
from robustaudit.models.base import LabelModel
from robustaudit.ops.rng import derive_seed
from robustaudit.results import EvalRecord
from robustaudit.run.runner import evaluate
from robustaudit.threat import ThreatModel


@dataclass
class ShardJob:
    """One shard: its examples and everything `evaluate` needs for them (its seed derives from the run's)."""

    shard: int
    x: torch.Tensor
    y: torch.Tensor
    threat: ThreatModel
    attacks: Sequence[Attack]
    seed: int
    checks: bool
    target: torch.Tensor | None = None
    spent: torch.Tensor | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def run(self, model: LabelModel) -> EvalRecord:
        return evaluate(model, self.x, self.y, self.threat, self.attacks, seed=derive_seed(self.seed, "shard",
                        self.shard), checks=self.checks, target=self.target, spent=self.spent, **self.options)


class LocalBackend:
    """Shards one after the other, in this process."""

    def __init__(self, model: LabelModel) -> None:
        self.model = model

    def run(self, jobs: Iterable[ShardJob]) -> Iterator[tuple[int, EvalRecord]]:
        for job in jobs:
            yield job.shard, job.run(self.model)


class RayBackend:
    """Shards as tasks on Ray actors, one per worker CPU, each loading the model once with `model_factory`.

    `address`: a running cluster ("auto", "ray://HOST:10001"); None starts (or joins) a local one.
    """

    def __init__(self, model_factory: Callable[[], LabelModel], *, address: str | None = None,
                 workers: int | None = None) -> None:
        self._ray = require("ray", "--backend ray")
        self.model_factory, self.address, self.workers = model_factory, address, workers

    def run(self, jobs: Iterable[ShardJob]) -> Iterator[tuple[int, EvalRecord]]:
        """Shards are read from `jobs` only when a worker is free, so the data streams through the driver."""
        ray = self._ray
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
        n = self.workers or max(1, int(ray.available_resources().get("CPU", 1)))
        worker = ray.remote(num_cpus=1)(_Worker)
        actors = [worker.remote(self.model_factory) for _ in range(n)]
        pending: dict[Any, tuple[ShardJob, Any]] = {}  # result ref -> (job, the actor running it)
        queue, free = iter(jobs), list(actors)
        try:
            while True:
                while free and (job := next(queue, None)) is not None:
                    actor = free.pop()
                    pending[actor.run.remote(job)] = (job, actor)
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1)
                job, actor = pending.pop(ready[0])
                free.append(actor)
                yield job.shard, ray.get(ready[0])
        finally:
            for actor in actors:
                ray.kill(actor)


class _Worker:
    """A Ray actor: the model, loaded once; evaluates the shards it is given."""

    def __init__(self, model_factory: Callable[[], LabelModel]) -> None:
        torch.set_num_threads(1)
        self.model = model_factory()

    def run(self, job: ShardJob) -> EvalRecord:
        return job.run(self.model)
