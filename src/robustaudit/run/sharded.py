"""Sharded, resumable evaluation: shards of examples, each evaluated with its own seed (derived from the run's
seed and the shard index) and committed to the store as it finishes; the run's result merges the shards."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from robustaudit.attacks.base import Attack
from robustaudit.checks import Adaptation
from robustaudit.errors import InputError
from robustaudit.models.base import LabelModel
from robustaudit.oracle import Oracle
from robustaudit.progress import progress_bar
from robustaudit.results import AttackSummary, EvalRecord, ExampleRecord, Flag
from robustaudit.run.backends import LocalBackend, RayBackend, ShardJob
from robustaudit.run.data import ArraySource, Source
from robustaudit.run.runner import check_attacks
from robustaudit.run.store import Store
from robustaudit.stats import clopper_pearson
from robustaudit.threat import ThreatModel


def evaluate_sharded(
    model: LabelModel,
    data: Source,
    threat: ThreatModel,
    attacks: str | Sequence[Attack] = "fast",
    *,
    seed: int = 0,
    shard_size: int = 512,
    store: Store | None = None,
    progress: bool = False,
    checks: bool = True,
    target: torch.Tensor | None = None,
    spent: torch.Tensor | None = None,
    backend: LocalBackend | RayBackend | None = None,
    **options: Any,
) -> EvalRecord:
    """`evaluate` over shards of `shard_size` examples read from `data` one shard at a time; finished shards in
    `store` are read back, not rerun.

    The result does not depend on where a run was interrupted, nor on the backend: shard s always uses seed
    (seed, s). The diagnostics run on the first shard, in this process, before the others; the adaptations they
    choose apply to every shard. Shards are committed as they finish (in any order on
    Ray); a shard that stopped early (a remote model gone) is not committed, so a rerun attacks it again.
    Unlabeled data is labelled with the model's clean predictions (one query per example, counted).
    """
    if shard_size < 1:
        raise InputError(f"shard size must be >= 1, got {shard_size}")
    attack_list = check_attacks(model, threat, attacks)
    n = len(data)
    if n == 0:
        raise InputError("the data holds no examples")
    count = math.ceil(n / shard_size)
    records = {} if store is None else {s: store.get(s) for s in store.done() if s < count}
    for s, rec in records.items():  # a record read back must be the one of this shard of this data
        a, b = s * shard_size, min(n, (s + 1) * shard_size)
        labels = data.y[a:b].tolist() if isinstance(data, ArraySource) and data.y is not None else None
        if rec.n != b - a or len(rec.x_adv) != b - a or (
                labels is not None and [e.label for e in rec.examples] != labels):
            raise InputError(f"{store.path if store else 'the store'}: the record of shard {s} does not match "
                             f"examples {a}..{b - 1} of the data; start a new run in another --out folder")
    unlabeled = False

    def jobs(shards: range, opts: dict[str, Any], here: bool) -> Iterator[ShardJob]:
        """The shards' jobs; `here` (in this process): each journals its examples' spent queries to the store."""
        nonlocal unlabeled
        for s in shards:
            if s in records:
                continue
            a, b = s * shard_size, min(n, (s + 1) * shard_size)
            xs, ys = data.read(a, b)
            extra = None if spent is None else spent[a:b].clone()
            earlier = None if store is None else store.journaled(s, b - a)
            if earlier is not None:  # an interrupted attempt's queries: spent, reported, and charged to the budget
                extra = earlier if extra is None else extra + earlier
            if ys is None:  # the million-scale protocol: the model's own clean predictions are the labels
                unlabeled = True
                labeller = Oracle(model, b - a)
                ys = labeller.labels(xs.to(model.device), torch.arange(b - a)).cpu()
                extra = labeller.queries if extra is None else extra + labeller.queries
            journal: dict[str, Any] = {"journal": functools.partial(store.journal, s)} \
                if store is not None and here else {}
            if here and progress:  # the shard's attacks show in this display, batch by batch
                journal["progress"] = bar
            yield ShardJob(s, xs, ys, threat, attack_list, seed, checks and s == 0,
                           None if target is None else target[a:b], extra, {**opts, **journal})

    seen = sum(r.n for r in records.values())  # running totals for the bar, counted once per shard
    robust = sum(e.robust for r in records.values() for e in r.examples)
    local = LocalBackend(model)
    with progress_bar(progress) as bar:
        task = bar.add_task(f"{n} examples", total=n, completed=seen)
        # shard 0 first, here: its diagnostics choose the adaptations every other shard then applies
        phases: list[tuple[LocalBackend | RayBackend, range, dict[str, Any]]] = [(local, range(1), options)]
        for phase, (runner, shards, opts) in enumerate(phases):
            for s, rec in runner.run(jobs(shards, opts, isinstance(runner, LocalBackend))):
                if store is not None and rec.complete:
                    store.put(s, rec)
                records[s] = rec
                seen += rec.n
                robust += sum(e.robust for e in rec.examples)
                bar.update(task, completed=seen, description=f"examples done, robust {robust}/{seen} "
                                                             f"({robust / seen:.3f})")
                if not rec.complete:
                    break
            if phase == 0 and records[0].complete:
                plan = [Adaptation.from_json(a) for a in records[0].adaptations]
                phases.append((backend or local, range(1, count), {**options, "adaptations": plan}))
    parts = []
    for s in range(count):  # the consecutive shards from the first; a stopped run ends at its stopped shard
        if s not in records:
            break
        parts.append(records[s])
        if not records[s].complete:
            break
    record = merge(parts, threat, seed)
    info = dict(data.info)
    if unlabeled or any(f.code == "unlabeled" for f in record.flags):
        info["labels"] = "clean predictions of the model"
    return dataclasses.replace(record, data=info)


def merge(parts: list[EvalRecord], threat: ThreatModel, seed: int) -> EvalRecord:
    """One record from the records of consecutive shards: examples re-indexed, figures recomputed exactly."""
    examples: list[ExampleRecord] = []
    for p in parts:
        offset = len(examples)
        examples += [dataclasses.replace(e, index=e.index + offset) for e in p.examples]
    n = len(examples)
    n_clean = sum(round(p.clean_accuracy * p.n) for p in parts)
    n_robust = sum(e.robust for e in examples)
    names: list[str] = []
    for p in parts:
        names += [a.name for a in p.attacks if a.name not in names]
    attacks = [AttackSummary.merge([a for p in parts for a in p.attacks if a.name == name], threat.max_queries)
               for name in names]
    flags: list[Flag] = []
    for p in parts:
        flags += [f for f in p.flags if f.code not in {g.code for g in flags}]
    stopped = next((p.stopped for p in parts if p.stopped), None)
    naive = [e.naive_robust for e in examples]
    return EvalRecord(
        n=n, clean_accuracy=n_clean / n if n else 0.0, robust_accuracy=n_robust / n if n else 0.0,
        robust_accuracy_ci95=clopper_pearson(n_robust, n), threat=threat.to_json(), attacks=attacks, flags=flags,
        examples=examples, x_adv=torch.cat([p.x_adv for p in parts]) if parts else torch.zeros(0), seed=seed,
        seconds=sum(p.seconds for p in parts), model=parts[0].model if parts else "model", stopped=stopped,
        adaptations=parts[0].adaptations if parts else [],
        naive_robust_accuracy=sum(map(bool, naive)) / n if n and None not in naive else None,
    )
