"""Run a cascade of attacks over a data set and collect per-example outcomes (spec gradient-attacks.md §6.2)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from robustaudit.attacks.base import Attack, inputs_checked
from robustaudit.attacks.registry import resolve
from robustaudit.attacks.score.sparse_rs import SparseRS
from robustaudit.attacks.score.square import Square
from robustaudit.checks import GRADIENT_FREE_QUERIES, Adaptation, adapt, cascade_flags, choose_adaptations, model_checks
from robustaudit.errors import AccessError, InputError, RemoteError
from robustaudit.models.base import LabelModel
from robustaudit.models.load import as_model
from robustaudit.models.wrappers import as_score_only
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
    attack_list = resolve(attacks, threat.norm) if isinstance(attacks, str) else list(attacks)
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
    progress: bool | Progress = False,
    target: torch.Tensor | None = None,
    starts: tuple[torch.Tensor, torch.Tensor] | None = None,
    spent: torch.Tensor | None = None,
    adaptive: bool = True,
    eot: int = 20,
    adaptations: Sequence[Adaptation] | None = None,
    journal: Callable[[torch.Tensor], None] | None = None,
) -> EvalRecord:
    """Clean accuracy, then each attack on the examples every earlier attack failed on; one record per example.

    Adaptive evaluation: with `adaptive` the diagnostics choose adaptations (log-probabilities, EOT over `eot`
    draws, BPDA, or a gradient-free attack; `adaptations` imposes them, e.g. those shard 0 chose), and the
    cascade runs again, adapted, on the examples the naive cascade left robust; `naive_robust_accuracy` keeps
    what the naive cascade alone reported. `journal` is handed each example's queries so far after every attack
    batch (a store keeps them, so an interrupted run resumes with what was spent). `progress` shows each attack's
    examples batch by batch, in a display of its own or in the caller's (a sharded run's).

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
                        progress=progress, target=target, starts=starts, spent=spent, start=start,
                        adaptive=adaptive, eot=eot, adaptations=adaptations, journal=journal)


def _cascade(
    model: LabelModel, xt: torch.Tensor, yt: torch.Tensor, threat: ThreatModel, attack_list: list[Attack], *,
    seed: int, batch_size: int, checks: bool, progress: bool | Progress, target: torch.Tensor | None,
    starts: tuple[torch.Tensor, torch.Tensor] | None, spent: torch.Tensor | None, start: float, adaptive: bool,
    eot: int, adaptations: Sequence[Adaptation] | None, journal: Callable[[torch.Tensor], None] | None,
) -> EvalRecord:
    n = len(xt)
    everyone = torch.arange(n)
    oracle = Oracle(model, n, max_queries=threat.max_queries)
    if spent is not None:
        oracle.absorb(everyone, spent)
    evaluated = oracle.affordable(everyone).cpu()
    plan = list(adaptations or [])
    naive_model, adapted_model = adapt(model, plan)
    clean_pred, num_classes = _clean_pass(oracle, xt, everyone[evaluated], batch_size, naive_model)
    if num_classes is not None:
        check_labels(yt, num_classes)
        if target is not None and bool(((target < 0) | (target >= num_classes)).any()):
            raise InputError(f"target classes must lie in 0..{num_classes - 1}: the model has {num_classes} classes")
    flags = model_checks(oracle, xt, yt, (clean_pred == yt) & evaluated, threat, seed) if checks else []
    if adaptations is None and adaptive and checks:
        plan = choose_adaptations(flags, model, eot)
        naive_model, adapted_model = adapt(model, plan)
        if naive_model is not model:  # a randomised model: clean predictions by majority vote too
            evaluated = oracle.affordable(everyone).cpu()
            clean_pred = _clean_pass(oracle, xt, everyone[evaluated], batch_size, naive_model)[0]
    correct = (clean_pred == yt) & evaluated
    if target is not None:
        correct &= target.cpu() != yt
    stages = [(a, naive_model, a.name) for a in attack_list] + _adapted_stages(plan, attack_list, adapted_model,
                                                                               threat.norm)
    robust = correct.clone()
    naive_robust: torch.Tensor | None = None
    stopped: str | None = None
    broken_by: list[str | None] = [None] * n
    adversarial = torch.full((n,), -1, dtype=torch.long)  # the verified label of each broken example
    min_distance = torch.full((n,), float("inf"), dtype=torch.float64)
    curves: dict[int, dict[str, dict[str, float | None]]] = {}  # per example, per minimum-norm attack
    x_adv = xt.clone()
    summaries = []
    with progress_bar(progress) as bar:
        for stage, (attack, target_model, name) in enumerate(stages):
            if stage == len(attack_list):
                naive_robust = robust.clone()
            todo = robust.nonzero()[:, 0]
            summary = AttackSummary(name, attacked=len(todo), broken=0, seconds=0.0, gradients=0, forwards=0)
            used, broken = torch.zeros(len(todo), dtype=torch.long), torch.zeros(len(todo), dtype=torch.bool)
            done = 0
            distance_at: dict[int, list[torch.Tensor]] = {}
            task = bar.add_task(name, total=len(todo))
            for batch in todo.split(batch_size) if len(todo) else ():
                try:
                    res = attack(
                        target_model, xt[batch], yt[batch], threat, seed=derive_seed(seed, name), ids=batch,
                        attack_mask=torch.ones(len(batch), dtype=torch.bool), num_classes=num_classes,
                        target=None if target is None else target[batch],
                        budget=None if oracle.max_queries is None else oracle.budget_left(batch),
                        starts=starts,
                    )
                except RemoteError as e:  # keep what was done: the finished batches stand
                    stopped = f"{name} stopped at example {int(batch[0])}: {e}"
                    break
                oracle.absorb(batch, res.queries, res.gradients)
                if journal is not None:
                    journal(oracle.queries)
                ok = res.success.cpu()
                robust[batch[ok]] = False
                x_adv[batch[ok]] = res.x_adv.cpu()[ok]
                for i in batch[ok].tolist():
                    broken_by[i] = name
                if res.adversarial_label is not None:
                    adversarial[batch[ok]] = res.adversarial_label.cpu()[ok]
                summary.broken += int(ok.sum())
                if res.attack_queries is not None:
                    used[done:done + len(batch)] = res.attack_queries
                broken[done:done + len(batch)] = ok
                if res.min_distance is not None and res.distance_at is not None:
                    min_distance[batch] = torch.minimum(min_distance[batch], res.min_distance)
                    for b, d in res.distance_at.items():
                        distance_at.setdefault(b, []).append(d)
                    for j, i in enumerate(batch.tolist()):  # best distance within each budget (None: none yet)
                        curves.setdefault(i, {})[name] = {
                            str(b): float(d[j]) if bool(torch.isfinite(d[j])) else None
                            for b, d in res.distance_at.items()
                            if threat.max_queries is None or b <= threat.max_queries}
                done += len(batch)
                summary.seconds += res.seconds
                summary.gradients += int(res.gradients.sum())
                summary.forwards += int(res.queries.sum())
                summary.verification_failures += res.verification_failures
                summary.notes += [m for m in res.notes if m not in summary.notes]
                bar.update(task, advance=len(batch), description=f"{name} (robust so far {int(robust.sum())}/{n})")
            if isinstance(progress, Progress):  # a shared display keeps only the attack under way
                bar.remove_task(task)
            summary.raw = {"spent": used[:done].tolist(), "broken": broken[:done].tolist(),
                           "distance_at": {str(b): torch.cat(d).tolist() for b, d in distance_at.items()}}
            summary.add_statistics(threat.max_queries)
            summaries.append(summary)
            if stopped:
                break
            if stage == len(stages) - 1 and not plan and adaptive and adaptations is None:
                # black-box beat white-box: adapt now, and attack the survivors again (shard 0 decides for all)
                masked = [f for f in cascade_flags(summaries, [a.requires for a, _, _ in stages], n)
                          if f.code == "gradient_masking"]
                if masked:
                    plan = choose_adaptations(masked, model, eot)
                    stages += _adapted_stages(plan, attack_list, adapt(model, plan)[1], threat.norm)
    flags += cascade_flags(summaries, [a.requires for a, _, _ in stages[: len(summaries)]], n)
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
    l0 = ops_for(Norm.L0).distance(x_adv.double(), xt.double())  # pixels changed: shown per example at --norm l0
    minimum_norm = any(a.norm_curve for a in summaries)  # a minimum-norm attack ran: its smallest distance
    examples = [
        ExampleRecord(
            index=i, label=int(yt[i]), clean_prediction=int(clean_pred[i]) if evaluated[i] else None,
            robust=bool(robust[i]), broken_by=broken_by[i], linf=float(linf[i]), l2=float(l2[i]),
            queries=int(oracle.queries[i]), gradients=int(oracle.gradients[i]), evaluated=bool(evaluated[i]),
            naive_robust=None if naive_robust is None else bool(naive_robust[i]),
            adversarial_prediction=int(adversarial[i]) if broken_by[i] and int(adversarial[i]) >= 0 else None,
            extra=({"l0": int(l0[i])} if threat.norm == Norm.L0 else {})
            | ({"min_distance": float(min_distance[i]) if bool(torch.isfinite(min_distance[i])) else None}
               if minimum_norm else {})
            | ({"curves": curves[i]} if i in curves else {}),
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
        adaptations=[a.to_json() for a in plan],
        naive_robust_accuracy=None if naive_robust is None else int(naive_robust.sum()) / n,
    )


TAGS = {"log_probabilities": "logp", "straight_through": "bpda", "eot": "eot"}


def _adapted_stages(plan: list[Adaptation], attacks: list[Attack], model: LabelModel,
                    norm: Norm = Norm.LINF) -> list[tuple[Attack, LabelModel, str]]:
    """The cascade again on the adapted model (named attack+bpda, attack+logp+eot20...), or Square (Sparse-RS at
    L0) when no gradient could be repaired."""
    if not plan:
        return []
    if any(a.name == "gradient_free" for a in plan):
        free: Attack = SparseRS(n_queries=GRADIENT_FREE_QUERIES) if norm == Norm.L0 else \
            Square(n_queries=GRADIENT_FREE_QUERIES)
        return [(free, as_score_only(model), f"{free.name}+gradient-free")]  # type: ignore[arg-type]
    tag = "+".join(TAGS[a.name] + (str(a.draws) if a.draws else "") for a in plan)
    return [(a, model, f"{a.name}+{tag}") for a in attacks]


def _clean_pass(oracle: Oracle, x: torch.Tensor, idx: torch.Tensor, batch_size: int, model: LabelModel,
                ) -> tuple[torch.Tensor, int | None]:
    """Clean predictions of the examples at idx through `model` (a view of the oracle's: one query each; -1
    elsewhere) and the number of classes when scores are visible."""
    preds, num_classes = torch.full((len(x),), -1, dtype=torch.long), None
    view = oracle.sub(idx, model)
    for b, at in zip(idx.split(batch_size), torch.arange(len(idx)).split(batch_size), strict=True) \
            if len(idx) else ():
        xb = x[b].to(model.device)
        try:
            if Access(model.access) >= Access.SCORES:
                z = view.scores(xb, at)
                if z.dim() != 2 or len(z) != len(xb):
                    raise InputError(f"the model must return one row of scores per example, got shape "
                                     f"{tuple(z.shape)} for {len(xb)} inputs")
                if not bool(torch.isfinite(z).all()):
                    raise InputError("the model returns NaN or infinite scores on clean inputs: check the model "
                                     "and its normalisation")
                num_classes = z.shape[1]
                preds[b] = z.argmax(1).cpu()
            else:
                preds[b] = view.labels(xb, at).cpu()
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure of the user's model on the user's data
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise InputError(f"the model failed on inputs of shape {tuple(xb.shape[1:])} ({type(e).__name__}: "
                             f"{msg}); check that the data has the layout the model expects") from None
    oracle.absorb(idx, view.queries, view.gradients)
    return preds, num_classes
