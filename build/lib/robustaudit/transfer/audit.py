"""The transfer audit: the PubDef threat model (transfer attacks from public models, spec
certification-and-defences.md §3.1) as a measurement.

Every (source, attack) pair — each surrogate alone and, with two or more, their ensemble — crafts adversarial
inputs on the surrogates (free) and sends each to the target once (label access, counted). The headline is the
per-example worst case over all pairs; a random-noise baseline of the same norm shows how much of the damage is
transfer and not noise; the transfer matrix shows how the surrogates fool each other.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from robustaudit.attacks.transfer.iterative import TransferAttack
from robustaudit.errors import InputError
from robustaudit.models.base import GradModel, LabelModel
from robustaudit.ops.lp import ops_for
from robustaudit.ops.rng import per_example_noise
from robustaudit.oracle import Oracle
from robustaudit.progress import progress_bar
from robustaudit.stats import clopper_pearson
from robustaudit.threat import ThreatModel
from robustaudit.types import Norm
from robustaudit.validate import check_inputs

ENSEMBLE = "ensemble"
NOISE = "noise"


@dataclass(frozen=True)
class Pair:
    """One (source, attack) pair: which examples the target still classifies correctly, and the cost."""

    source: str
    attack: str
    robust: torch.Tensor  # bool per example (False where the target was wrong on the clean input)
    surrogate_seconds: float
    target_seconds: float

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.float().mean())

    def to_json(self) -> dict[str, object]:
        k, n = int(self.robust.sum()), len(self.robust)
        return {"source": self.source, "attack": self.attack, "robust_accuracy": k / n,
                "robust_accuracy_ci95": list(clopper_pearson(k, n)), "surrogate_seconds": self.surrogate_seconds,
                "target_seconds": self.target_seconds}


@dataclass
class TransferRecord:
    threat: ThreatModel
    surrogates: list[str]
    clean: torch.Tensor  # bool per example: target correct on the clean input
    pairs: list[Pair]
    noise: Pair
    matrix: list[list[float]]  # [source][victim] robust accuracy of surrogate `victim`, worst case over attacks
    target_queries: torch.Tensor  # per example, exact
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.clean)

    @property
    def worst_case(self) -> torch.Tensor:
        robust = self.clean.clone()
        for p in self.pairs:
            robust &= p.robust
        return robust

    def ranked(self) -> list[Pair]:
        """Pairs from the one that transfers best (lowest target robust accuracy)."""
        return sorted(self.pairs, key=lambda p: p.robust_accuracy)

    def to_json(self) -> dict[str, object]:
        n, k_clean, k_worst = self.n, int(self.clean.sum()), int(self.worst_case.sum())
        return {
            "threat": self.threat.to_json(), "n": n, "surrogates": self.surrogates,
            "clean_accuracy": k_clean / n, "clean_accuracy_ci95": list(clopper_pearson(k_clean, n)),
            "worst_case_robust_accuracy": k_worst / n,
            "worst_case_robust_accuracy_ci95": list(clopper_pearson(k_worst, n)),
            "noise": self.noise.to_json(), "pairs": [p.to_json() for p in self.ranked()],
            "matrix": {"sources": self.surrogates, "victims": self.surrogates, "robust_accuracy": self.matrix},
            "target_queries": {"total": int(self.target_queries.sum()), "max_per_example":
                               int(self.target_queries.max()) if n else 0},
            "examples": {"clean_correct": self.clean.tolist(), "worst_case_robust": self.worst_case.tolist()},
            **self.extra,
        }


def _noise(x: torch.Tensor, ids: torch.Tensor, threat: ThreatModel, seed: int) -> torch.Tensor:
    """Random noise of exactly the threat model's norm (random signs for Linf, a random direction for L2), one
    stream per example id."""
    if threat.norm == Norm.LINF:
        u = per_example_noise("uniform", x, ids, seed, "transfer-noise").to(x.device)
        delta = threat.eps * torch.where(u >= 0, 1.0, -1.0)
    else:
        delta = threat.eps * ops_for(Norm.L2).normalize(per_example_noise("normal", x, ids, seed,
                                                                          "transfer-noise").to(x.device))
    return (x + delta).clamp(threat.bounds.low, threat.bounds.high)


def transfer_audit(target: LabelModel, surrogates: Mapping[str, GradModel], attacks: Sequence[str | TransferAttack],
                   x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, ensemble: bool = True, seed: int = 0,
                   batch_size: int = 128, progress: bool = True) -> TransferRecord:
    """Run every (surrogate or ensemble, attack) pair against `target` (label access suffices)."""
    if threat.targeted:
        raise InputError("the transfer audit measures untargeted robustness; drop the target class")
    if not surrogates:
        raise InputError("give at least one surrogate model")
    if not attacks:
        raise InputError("give at least one transfer attack")
    check_inputs(x, y, threat.bounds)
    chosen = [a if isinstance(a, TransferAttack) else TransferAttack.parse(a) for a in attacks]
    names = list(surrogates)
    sources: dict[str, list[GradModel]] = {name: [surrogates[name]] for name in names}
    if ensemble and len(names) > 1:
        sources[ENSEMBLE] = [surrogates[name] for name in names]
    n = len(x)
    oracle = Oracle(target, n)
    batches = [torch.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    with torch.no_grad():
        clean = torch.cat([oracle.labels(x[b], b).cpu() == y[b].cpu() for b in batches])
        victims_clean = {v: torch.cat([m.predict_labels(x[b]).cpu() == y[b].cpu() for b in batches])
                         for v, m in surrogates.items()}
    todo = torch.nonzero(clean).flatten()
    work = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]

    matrix = {s: {v: victims_clean[v].clone() for v in names} for s in names}

    def judge(source: str, attack: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Pair:
        """One pair: craft each batch, send it to the target once; surrogates crafted on alone also attack the
        other surrogates (the transfer matrix)."""
        robust = torch.zeros(n, dtype=torch.bool)
        t_sur = t_tgt = 0.0
        for b in work:
            t0 = time.perf_counter()
            adv = make(b)
            t1 = time.perf_counter()
            with torch.no_grad():
                robust[b] = oracle.labels(adv, b).cpu() == y[b].cpu()
                t_tgt += time.perf_counter() - t1
                t_sur += t1 - t0
                if source in matrix:
                    for v in names:
                        matrix[source][v][b] &= surrogates[v].predict_labels(adv).cpu() == y[b].cpu()
            bar.advance(task)
        return Pair(source, attack, robust, t_sur, t_tgt)

    def craft(b: torch.Tensor, attack: TransferAttack, models: list[GradModel]) -> torch.Tensor:
        return attack.craft(models, x[b], y[b], threat, seed=seed)

    pairs: list[Pair] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("transfer audit", total=len(work) * (len(sources) * len(chosen) + 1))
        noise = judge(NOISE, NOISE, lambda b: _noise(x[b], b, threat, seed))
        for source, models in sources.items():
            for a in chosen:
                pairs.append(judge(source, a.name, functools.partial(craft, attack=a, models=models)))
    # The matrix rows cover the examples the target got right (those were crafted); victims' accuracy is over all.
    table = [[float(matrix[s][v].float().mean()) for v in names] for s in names]
    return TransferRecord(threat=threat, surrogates=names, clean=clean, pairs=pairs, noise=noise, matrix=table,
                          target_queries=oracle.queries.clone())


@dataclass
class OnlineRecord:
    """Online attacks on a stream: per strategy, the competitive ratio over random stream orders."""

    k: int
    attack: str
    fooled: torch.Tensor  # bool per example: the attacked input fools the target
    ratios: dict[str, list[float]]
    target_queries: int

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"k": self.k, "attack": self.attack, "n": len(self.fooled),
                                  "fooling_examples": int(self.fooled.sum()),
                                  "offline_successes": min(self.k, int(self.fooled.sum())),
                                  "target_queries": self.target_queries, "strategies": {}}
        for name, r in self.ratios.items():
            a = torch.tensor(r, dtype=torch.float64)
            half = 1.96 * float(a.std()) / len(a) ** 0.5 if len(a) > 1 else float("nan")
            out["strategies"][name] = {  # type: ignore[index]
                "competitive_ratio": float(a.mean()) if len(a) else float("nan"),
                "ci95": [float(a.mean()) - half, float(a.mean()) + half] if len(a) else None,
                "permutations": len(a)}
        return out


def online_audit(target: LabelModel, surrogate: GradModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                 *, k: int, attack: str | TransferAttack = "fgsm", strategies: Sequence[str] | None = None,
                 permutations: int = 100, seed: int = 0, batch_size: int = 128,
                 progress: bool = True) -> OnlineRecord:
    """Craft every stream item's attack on the surrogate (free); its value is the surrogate's CE loss on the
    attacked input. Each attacked input is sent to the target once to learn whether it fools it; then every
    strategy runs on `permutations` random orders of the stream, against the k best in hindsight."""
    from robustaudit.transfer.online import STRATEGIES, competitive_ratios

    if threat.targeted:
        raise InputError("online attacks are untargeted here; drop the target class")
    if not 1 <= k <= len(x):
        raise InputError(f"k must be between 1 and the stream length {len(x)}, got {k}")
    check_inputs(x, y, threat.bounds)
    a = attack if isinstance(attack, TransferAttack) else TransferAttack.parse(attack)
    oracle = Oracle(target, len(x))
    values, fooled = torch.zeros(len(x), dtype=torch.float64), torch.zeros(len(x), dtype=torch.bool)
    with progress_bar(progress) as bar:
        task = bar.add_task("online: crafting the stream", total=len(x))
        for i in range(0, len(x), batch_size):
            b = torch.arange(i, min(i + batch_size, len(x)))
            adv = a.craft([surrogate], x[b], y[b], threat, seed=seed)
            with torch.no_grad():
                z = surrogate.logits(adv.to(surrogate.device))
                values[b] = F.cross_entropy(z, y[b].to(z.device), reduction="none").double().cpu()
                fooled[b] = oracle.labels(adv, b).cpu() != y[b].cpu()
            bar.advance(task, len(b))
    ratios = competitive_ratios(values.numpy(), fooled.double().numpy(), k, permutations=permutations, seed=seed,
                                strategies=list(STRATEGIES) if strategies is None else strategies)
    return OnlineRecord(k=k, attack=a.name, fooled=fooled, ratios={s: r.tolist() for s, r in ratios.items()},
                        target_queries=int(oracle.queries.sum()))
