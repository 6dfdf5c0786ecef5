"""Run a cascade of attacks over a data set and collect per-example outcomes (spec gradient-attacks.md §6.2)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from robustaudit.attacks.base import Attack, inputs_checked
from robustaudit.attacks.registry import resolve
from robustaudit.checks import cascade_flags, model_checks
from robustaudit.errors import AccessError, InputError, RemoteError
from robustaudit.models.base import LabelModel
from robustaudit.models.load import as_model
from robustaudit.ops.lp import ops_for
from robustaudit.ops.rng import derive_seed
from robustaudit.oracle import Oracle
from robustaudit.progress import progress_bar
from robustaudit.results import AttackSummary, EvalRecord, ExampleRecord, Flag
from robustaudit.stats import clopper_pearson
from robustaudit.threat import ThreatModel
from robustaudit.types import Access, Norm
from robustaudit.validate import check_inputs, check_labels


def _as_tensor(a: torch.Tensor | np.ndarray) -> torch.Tensor:
    return a if torch.is_tensor(a) else torch.from_numpy(np.asarray(a))


def prepare(
    model: LabelModel, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, threat: ThreatModel,
    attacks: str | Sequence[Attack],
) -> tuple[torch.Tensor, torch.Tensor, list[Attack]]:
    """Validate everything an evaluation needs before any attack runs (the CLI writes nothing otherwise)."""
    xt, yt = _as_tensor(x), _as_tensor(y)
    check_inputs(xt, yt, threat.bounds)
    return xt, yt.long(), check_attacks(model, threat, attacks)


def check_attacks(model: LabelModel, threat: ThreatModel, attacks: str | Sequence[Attack]) -> list[Attack]:
    """The attacks by name or as given, each checked against the model's access level and the threat's norm."""
    attack_list = resolve(attacks) if isinstance(attacks, str) else list(attacks)
    for a in attack_list:
        if Access(model.access) < a.requires:
            raise AccessError(f"attack {a.name!r} needs {a.requires.name.lower()} access, but the model offers only "
                              f"{Access(model.access).name.lower()}")
        if threat.norm not in a.norms:
            raise InputError(f"attack {a.name!r} does not support the {threat.norm.value} norm")
    return attack_list


def evaluate(
    model: LabelModel | nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    threat: ThreatModel,
    attacks: str | Sequence[Attack] = "fast",
    *,
    seed: int = 0,
    batch_size: int = 256,
    checks: bool = True,
    progress: bool = False,
    target: torch.Tensor | None = None,
    starts: tuple[torch.Tensor, torch.Tensor] | None = None,
    spent: torch.Tensor | None = None,
) -> EvalRecord:
    """Clean accuracy, then each attack on the examples every earlier attack failed on; one record per example.

    Clean-misclassified examples are never attacked and count as not robust. Every pass on an example
    (clean prediction, checks, attacks, verification) is paid from one oracle, within the threat's
    `max_queries` per example in all. `starts` is a pool of (inputs, labels) decision-based attacks may start
    from; `spent` counts queries already made per example (choosing targets, labelling) into its record and
    budget; an example with no budget left for its clean check is not evaluated (neither robust nor broken).
    """
    start = time.perf_counter()
    model = as_model(model)
    xt, yt, attack_list = prepare(model, x, y, threat, attacks)
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    with inputs_checked():  # validated once, here: the attacks below trust their slices
        return _cascade(model, xt, yt, threat, attack_list, seed=seed, batch_size=batch_size, checks=checks,
                        progress=progress, target=target, starts=starts, spent=spent, start=start)


def _cascade(
    model: LabelModel, xt: torch.Tensor, yt: torch.Tensor, threat: ThreatModel, attack_list: list[Attack], *,
    seed: int, batch_size: int, checks: bool, progress: bool, target: torch.Tensor | None,
    starts: tuple[torch.Tensor, torch.Tensor] | None, spent: torch.Tensor | None, start: float,
) -> EvalRecord:
    n = len(xt)
    everyone = torch.arange(n)
    oracle = Oracle(model, n, max_queries=threat.max_queries)
    if spent is not None:
        oracle.absorb(everyone, spent)
    evaluated = oracle.affordable(everyone).cpu()
    clean_pred, num_classes = _clean_pass(oracle, xt, everyone[evaluated], batch_size)
    if num_classes is not None:
        check_labels(yt, num_classes)
        if target is not None and bool(((target < 0) | (target >= num_classes)).any()):
            raise InputError(f"target classes must lie in 0..{num_classes - 1}: the model has {num_classes} classes")
    correct = (clean_pred == yt) & evaluated
    if target is not None:
        correct &= target.cpu() != yt
    flags = model_checks(oracle, xt, yt, correct, threat, seed) if checks else []
    robust = correct.clone()
    stopped: str | None = None
    broken_by: list[str | None] = [None] * n
    min_distance = torch.full((n,), float("inf"), dtype=torch.float64)
    x_adv = xt.clone()
    summaries = []
    with progress_bar(progress) as bar:
        for attack in attack_list:
            todo = robust.nonzero()[:, 0]
            summary = AttackSummary(attack.name, attacked=len(todo), broken=0, seconds=0.0, gradients=0, forwards=0)
            used, broken = torch.zeros(len(todo), dtype=torch.long), torch.zeros(len(todo), dtype=torch.bool)
            done = 0
            distance_at: dict[int, list[torch.Tensor]] = {}
            task = bar.add_task(attack.name, total=len(todo))
            for batch in todo.split(batch_size) if len(todo) else ():
                try:
                    res = attack(
                        model, xt[batch], yt[batch], threat, seed=derive_seed(seed, attack.name), ids=batch,
                        attack_mask=torch.ones(len(batch), dtype=torch.bool), num_classes=num_classes,
                        target=None if target is None else target[batch],
                        budget=None if oracle.max_queries is None else oracle.remaining(batch),
                        starts=starts,
                    )
                except RemoteError as e:  # keep what was done: the finished batches stand
                    stopped = f"{attack.name} stopped at example {int(batch[0])}: {e}"
                    break
                oracle.absorb(batch, res.queries, res.gradients)
                ok = res.success.cpu()
                robust[batch[ok]] = False
                x_adv[batch[ok]] = res.x_adv.cpu()[ok]
                for i in batch[ok].tolist():
                    broken_by[i] = attack.name
                summary.broken += int(ok.sum())
                if res.attack_queries is not None:
                    used[done:done + len(batch)] = res.attack_queries
                broken[done:done + len(batch)] = ok
                if res.min_distance is not None and res.distance_at is not None:
                    min_distance[batch] = torch.minimum(min_distance[batch], res.min_distance)
                    for b, d in res.distance_at.items():
                        distance_at.setdefault(b, []).append(d)
                done += len(batch)
                summary.seconds += res.seconds
                summary.gradients += int(res.gradients.sum())
                summary.forwards += int(res.queries.sum())
                summary.verification_failures += res.verification_failures
                summary.notes += [m for m in res.notes if m not in summary.notes]
                bar.update(task, advance=len(batch), description=f"{attack.name}  robust {int(robust.sum())}/{n}")
            summary.raw = {"spent": used[:done].tolist(), "broken": broken[:done].tolist(),
                           "distance_at": {str(b): torch.cat(d).tolist() for b, d in distance_at.items()}}
            summary.add_statistics(threat.max_queries)
            summaries.append(summary)
            if stopped:
                break
    flags += cascade_flags(summaries, [a.requires for a in attack_list[: len(summaries)]], n)
    if stopped:
        flags.append(Flag("incomplete", f"the audit stopped early ({stopped}); examples not attacked by every "
                                        "attack count as robust, so the robust accuracy is an upper bound"))
    if not bool(evaluated.all()):
        flags.append(Flag("not_evaluated", f"{int((~evaluated).sum())} examples had no query of their budget left "
                                           "for their clean check (choosing targets or labels took it): they were "
                                           "not evaluated and count as not robust"))
    n_robust = int(robust.sum())
    linf = ops_for(Norm.LINF).distance(x_adv.double(), xt.double())
    l2 = ops_for(Norm.L2).distance(x_adv.double(), xt.double())
    minimum_norm = any(a.norm_curve for a in summaries)  # a minimum-norm attack ran: its smallest distance
    examples = [
        ExampleRecord(
            index=i, label=int(yt[i]), clean_prediction=int(clean_pred[i]) if evaluated[i] else None,
            robust=bool(robust[i]), broken_by=broken_by[i], linf=float(linf[i]), l2=float(l2[i]),
            queries=int(oracle.queries[i]), gradients=int(oracle.gradients[i]), evaluated=bool(evaluated[i]),
            extra={"min_distance": float(min_distance[i]) if bool(torch.isfinite(min_distance[i])) else None}
            if minimum_norm else {},
        )
        for i in range(n)
    ]
    return EvalRecord(
        n=n,
        clean_accuracy=int(correct.sum()) / n,
        robust_accuracy=n_robust / n,
        robust_accuracy_ci95=clopper_pearson(n_robust, n),
        threat=threat.to_json(),
        attacks=summaries,
        flags=flags,
        examples=examples,
        x_adv=x_adv,
        seed=seed,
        seconds=time.perf_counter() - start,
        model=str(getattr(model, "name", "model")),
        stopped=stopped,
    )


def _clean_pass(oracle: Oracle, x: torch.Tensor, idx: torch.Tensor, batch_size: int,
                ) -> tuple[torch.Tensor, int | None]:
    """Clean predictions of the examples at idx (one query each; -1 elsewhere) and the number of classes when
    scores are visible."""
    model = oracle.model
    preds, num_classes = torch.full((len(x),), -1, dtype=torch.long), None
    for b in idx.split(batch_size) if len(idx) else ():
        xb = x[b].to(model.device)
        try:
            if Access(model.access) >= Access.SCORES:
                z = oracle.scores(xb, b)
                if z.dim() != 2 or len(z) != len(xb):
                    raise InputError(f"the model must return one row of scores per example, got shape "
                                     f"{tuple(z.shape)} for {len(xb)} inputs")
                num_classes = z.shape[1]
                preds[b] = z.argmax(1).cpu()
            else:
                preds[b] = oracle.labels(xb, b).cpu()
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure of the user's model on the user's data
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise InputError(f"the model failed on inputs of shape {tuple(xb.shape[1:])} ({type(e).__name__}: "
                             f"{msg}); check that the data has the layout the model expects") from None
    return preds, num_classes
