"""The attack protocol. `Attack.__call__` owns checks, the oracle and re-verification; `run()` is the paper."""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import ClassVar, final

import torch
from torch import nn

from robustaudit.attacks.minnorm import MinNorm
from robustaudit.errors import AccessError, InputError, VerificationError
from robustaudit.models.base import LabelModel
from robustaudit.models.load import as_model
from robustaudit.ops import losses
from robustaudit.ops.lp import NormOps, ops_for
from robustaudit.ops.rng import per_example_noise
from robustaudit.oracle import LossFn, Oracle
from robustaudit.results import AttackResult
from robustaudit.threat import ThreatModel
from robustaudit.types import Access, Norm
from robustaudit.validate import check_inputs

#: Raise on a claimed success that fails verification (tests set ROBUSTAUDIT_STRICT=1); else count it.
STRICT_ENV = "ROBUSTAUDIT_STRICT"
_INPUTS_CHECKED: ContextVar[bool] = ContextVar("robustaudit_inputs_checked", default=False)


@contextmanager
def inputs_checked() -> Iterator[None]:
    """Inside, attacks trust their inputs: the caller (a run) validated all of them once."""
    token = _INPUTS_CHECKED.set(True)
    try:
        yield
    finally:
        _INPUTS_CHECKED.reset(token)


@dataclass
class Context:
    """What `run()` gets besides the inputs: the oracle, the threat model, its norm's hooks, randomness keys."""

    oracle: Oracle
    threat: ThreatModel
    ops: NormOps
    seed: int
    ids: torch.Tensor
    target: torch.Tensor | None
    num_classes: int | None = None
    notes: list[str] = field(default_factory=list)
    starts: tuple[torch.Tensor, torch.Tensor] | None = None  # a pool of (inputs, labels) to start from
    min_norm: MinNorm | None = None  # set by minimum-norm attacks: best points and when they were found

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    def success(self, logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Adversary's success for these logits of the examples at positions idx."""
        t = None if self.target is None else self.target[idx]
        return self.threat.is_success(logits, y, t)

    def project(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.ops.project(u, x, self.threat.eps, self.threat.bounds)

    def loss(self, name: str, y: torch.Tensor, idx: torch.Tensor) -> LossFn:
        """The per-example loss `name` (to maximise) for the examples at idx, targeted when the threat is."""
        if self.threat.targeted:
            assert self.target is not None
            ft, t = losses.TARGETED[name], self.target[idx]
            return lambda z: ft(z, y, t)
        fu = losses.UNTARGETED[name]
        return lambda z: fu(z, y)

    def noise(self, kind: str, like: torch.Tensor, idx: torch.Tensor, *keys: object) -> torch.Tensor:
        """Per-example noise for the examples at idx, keyed by their ids, so it is batch-independent."""
        return per_example_noise(kind, like, self.ids[idx.cpu()], self.seed, *keys)

    def start_noise(self, like: torch.Tensor, idx: torch.Tensor, *keys: object) -> torch.Tensor:
        """Raw noise of the norm's random start: uniform in [-1,1] (Linf) or Gaussian (L2)."""
        return self.noise("uniform" if self.ops.norm == Norm.LINF else "normal", like, idx, *keys)


Pair = tuple[torch.Tensor, torch.Tensor]
SingleRun = Callable[[torch.Tensor, torch.Tensor, int, int], Pair]


def over_targets(
    ctx: Context, x: torch.Tensor, n_targets: int, restarts: int, min_queries: int, single_run: SingleRun
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targeted rounds (APGD-T, FAB-T): for rank = 2..n_targets+1 and each restart, attack the examples not yet
    fooled that can afford `min_queries`, towards the class with the rank-th largest clean logit (1 query each
    to read it; the given target instead under a targeted threat). single_run(idx, target, rank, restart)
    returns (x_adv, fooled) for the examples at idx."""
    x_adv = x.clone()
    success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    rounds = 1 if ctx.threat.targeted else n_targets
    if ctx.num_classes is not None and not ctx.threat.targeted:
        rounds = min(rounds, ctx.num_classes - 1)
    for rank in range(2, rounds + 2):
        for restart in range(restarts):
            act = (~success).nonzero()[:, 0]
            act = act[ctx.oracle.affordable(act, min_queries)]
            if len(act) == 0:
                return x_adv, success
            if ctx.threat.targeted and ctx.target is not None:
                t = ctx.target[act]
            else:
                z = ctx.oracle.scores(x[act], act)
                ctx.num_classes = z.shape[1]
                if rank > z.shape[1]:
                    return x_adv, success
                t = z.sort(1, descending=True).indices[:, rank - 1]
            adv, ok = single_run(act, t, rank, restart)
            x_adv[act[ok]], success[act[ok]] = adv[ok], True
    return x_adv, success


class FirstSuccess:
    """Keeps each example's first iterate found adversarial (PGD/PMA semantics); fooled ones leave the batch."""

    def __init__(self, x: torch.Tensor, *, early_stop: bool = True) -> None:
        self.x_adv = x.clone()
        self.success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.early_stop = early_stop

    def update(
        self, ctx: Context, logits: torch.Tensor, xi: torch.Tensor, idx: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """Record the examples at idx that xi fools for the first time; return the mask of those still to
        attack (all of them when early stopping is off: the cost grows, the result does not change)."""
        first = ctx.success(logits, y[idx], idx) & ~self.success[idx]
        self.x_adv[idx[first]] = xi[first]
        self.success[idx[first]] = True
        return ~self.success[idx] if self.early_stop else torch.ones_like(first)

    def remaining(self) -> torch.Tensor:
        return (~self.success).nonzero()[:, 0]


@dataclass(frozen=True, kw_only=True)
class Attack(ABC):
    """Base of every attack: hyper-parameters in the (frozen) dataclass, model and threat at call time."""

    name: ClassVar[str]
    requires: ClassVar[Access] = Access.GRADIENTS
    norms: ClassVar[frozenset[Norm]] = frozenset({Norm.LINF, Norm.L2})

    @final
    def __call__(
        self,
        model: LabelModel | nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        seed: int = 0,
        target: torch.Tensor | None = None,
        ids: torch.Tensor | None = None,
        attack_mask: torch.Tensor | None = None,
        num_classes: int | None = None,
        budget: torch.Tensor | None = None,
        starts: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> AttackResult:
        """Attack (x, y) under `threat`.

        `ids` are stable example ids that key the randomness (default 0..n-1), so a result does not depend
        on the batch. `attack_mask` selects the examples known to be correctly classified; without it the
        clean prediction is computed here (one query each) and misclassified examples are not attacked.
        `budget` gives each example's remaining queries (what a cascade's total budget has left), everything of
        this call included (clean check, attack, verification); default: the threat's max_queries.
        `starts` is a pool of (inputs, labels) that decision-based attacks may start from (`--starts`): for a
        targeted attack, inputs of the target classes.
        """
        start = time.perf_counter()
        model = as_model(model)
        if Access(model.access) < self.requires:
            raise AccessError(
                f"attack {self.name!r} needs {self.requires.name.lower()} access, but the model offers only "
                f"{Access(model.access).name.lower()}; pick an attack for that access level"
            )
        if threat.norm not in self.norms:
            raise InputError(f"attack {self.name!r} supports norms {sorted(n.value for n in self.norms)}, "
                             f"not {threat.norm.value}")
        if not _INPUTS_CHECKED.get():
            check_inputs(x, y, threat.bounds)
        if threat.targeted and (target is None or target.shape != y.shape):
            raise InputError("a targeted threat model needs a target class per example")
        device = model.device
        x, y = x.to(device), y.to(device)
        n = len(x)
        ids = torch.arange(n) if ids is None else ids.cpu()
        # every pass of this call (clean check, the attack, verification) is paid from one per-example budget
        outer = Oracle(model, n, max_queries=threat.max_queries if budget is None else budget.cpu())
        everyone = torch.arange(n, device=device)
        if attack_mask is None:
            able = everyone[outer.affordable(everyone)]
            pred = torch.full((n,), -1, dtype=torch.long, device=device)
            if Access(model.access) >= Access.SCORES:
                scores = outer.scores(x[able], able)
                if len(able):
                    num_classes, pred[able] = scores.shape[1], scores.argmax(1).to(device)
            else:
                pred[able] = outer.labels(x[able], able).to(device)
            attack_mask = pred == y if target is None else (pred == y) & (target.to(device) != y)
        attack_mask = attack_mask.to(device).bool()
        sub = attack_mask.nonzero()[:, 0]
        # run() may spend what is left but one label query, kept for verifying a claimed success
        oracle = outer.sub(sub)
        if oracle.max_queries is not None:
            verification = model.passes("labels") if hasattr(model, "passes") else 1
            oracle.max_queries = (oracle.max_queries - verification).clamp(min=0)
        ctx = Context(
            oracle=oracle,
            threat=threat,
            ops=ops_for(threat.norm),
            seed=seed,
            ids=ids[sub.cpu()],
            target=None if target is None else target.to(device)[sub],
            num_classes=num_classes,
            starts=None if starts is None else (starts[0].to(device), starts[1].to(device).long()),
        )
        x_sub_adv, claimed = (x[sub], torch.zeros(0, dtype=torch.bool, device=device))
        if len(sub):
            x_sub_adv, claimed = self.run(ctx, x[sub], y[sub])
        outer.absorb(sub, oracle.queries, oracle.gradients)
        verified, failures, labels = self._verify(outer, x[sub], x_sub_adv, y[sub], claimed, ctx, sub)
        success = torch.zeros(n, dtype=torch.bool, device=device)
        success[sub] = verified
        x_adv = x.clone()
        x_adv[sub[verified]] = x_sub_adv[verified].to(x.dtype)
        spent = _scatter(oracle.queries, sub.cpu(), n)
        adversarial = torch.full((n,), -1, dtype=torch.long)
        adversarial[sub.cpu()] = torch.where(verified.cpu(), labels, -1)
        min_distance, distance_at = None, None
        if ctx.min_norm is not None:
            inf = torch.full((n,), float("inf"), dtype=torch.float64)
            min_distance = inf.clone()
            min_distance[sub.cpu()] = ctx.min_norm.dist.cpu()
            distance_at = {b: inf.clone().index_put_((sub.cpu(),), d) for b, d in ctx.min_norm.at_budgets().items()}
        return AttackResult(
            name=self.name,
            x_adv=x_adv,
            success=success,
            attacked=attack_mask,
            queries=outer.queries,
            gradients=outer.gradients,
            seconds=time.perf_counter() - start,
            attack_queries=spent,
            verification_failures=failures,
            notes=tuple(ctx.notes),
            min_distance=min_distance,
            distance_at=distance_at,
            adversarial_label=adversarial,
        )

    @abstractmethod
    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's algorithm on clean-correct examples: (x_adv, claimed success) per example."""

    def _verify(
        self,
        outer: Oracle,
        x: torch.Tensor,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        claimed: torch.Tensor,
        ctx: Context,
        sub: torch.Tensor,
    ) -> tuple[torch.Tensor, int, torch.Tensor]:
        """Re-check every claimed success: a fresh forward pass (the query kept for it), the eps-ball in float64
        and the bounds. Also returns the label that pass gave each example (-1 where nothing was claimed)."""
        verified = claimed.clone()
        labels = torch.full((len(claimed),), -1, dtype=torch.long)
        idx = claimed.nonzero()[:, 0]
        if len(idx) == 0:
            return verified, 0, labels
        xa = x_adv[idx]
        pred = outer.labels(xa, sub[idx])
        t = None if ctx.target is None else ctx.target[idx]
        ok = ctx.threat.success_of_labels(pred.to(y.device), y[idx], t)
        dist = ctx.ops.distance(xa.double(), x[idx].double())
        eps = ctx.threat.eps
        ok &= dist <= eps + 1e-6 * max(1.0, eps)
        b = ctx.threat.bounds
        flat = xa.reshape(len(idx), -1)
        ok &= (flat >= b.low).all(1) & (flat <= b.high).all(1)
        failures = int((~ok).sum())
        # a randomised model (seen through EOT) may well refuse one draw's success: not a defect of the attack
        if failures and os.environ.get(STRICT_ENV) == "1" and not getattr(outer.model, "randomized", False):
            raise VerificationError(f"{self.name}: {failures} claimed successes failed verification")
        verified[idx] = ok
        labels[idx.cpu()] = pred.long().cpu()
        return verified, failures, labels


def _scatter(values: torch.Tensor, positions: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros(n, dtype=values.dtype)
    out[positions] = values
    return out
