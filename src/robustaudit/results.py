"""Plain result records: numbers stay numbers in JSON."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch


@dataclass(frozen=True)
class AttackResult:
    """What one attack did to each example of its batch.

    x_adv holds the adversarial point where `success`, else the clean input. queries/gradients are every
    pass the call spent on the example (clean check and verification included).
    """

    name: str
    x_adv: torch.Tensor
    success: torch.Tensor
    attacked: torch.Tensor
    queries: torch.Tensor
    gradients: torch.Tensor
    seconds: float
    attack_queries: torch.Tensor | None = None  # the queries `run()` itself spent (no clean check, no verification)
    verification_failures: int = 0
    notes: tuple[str, ...] = ()
    # minimum-norm attacks: each example's smallest adversarial distance found (inf: none), overall and within
    # each budget of CURVE_BUDGETS queries
    min_distance: torch.Tensor | None = None
    distance_at: dict[int, torch.Tensor] | None = None
    adversarial_label: torch.Tensor | None = None  # the verified label of x_adv where `success`, else -1

    @property
    def robust(self) -> torch.Tensor:
        return self.attacked & ~self.success


@dataclass(frozen=True)
class Flag:
    """A diagnostic: something that makes the robust accuracy untrustworthy, in one sentence."""

    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass
class AttackSummary:
    name: str
    attacked: int
    broken: int
    seconds: float
    gradients: int
    forwards: int
    verification_failures: int = 0
    notes: list[str] = field(default_factory=list)
    # queries the attack spent on each example it broke: their median and mean, and the share of attacked
    # examples broken within 10, 100, 1000, ... queries (Square's Table 2 convention)
    queries_successful_median: float | None = None
    queries_successful_mean: float | None = None
    success_curve: dict[str, float] = field(default_factory=dict)
    # minimum-norm attacks: median smallest adversarial distance within each query budget (inf: not yet broken)
    norm_curve: dict[str, float] = field(default_factory=dict)
    # the per-example data the statistics come from (spent, broken, distance_at): kept in the store, so that
    # shards merge exactly; not part of results.json
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "raw"}
        out["norm_curve"] = {k: _finite_or_str(v) for k, v in self.norm_curve.items()}
        return out

    def add_statistics(self, max_queries: int | None) -> None:
        """(Re)compute the query statistics and the norm curve from `raw`."""
        self.queries_successful_median = self.queries_successful_mean = None
        self.success_curve, self.norm_curve = {}, {}
        spent = torch.tensor(self.raw.get("spent", []), dtype=torch.long)
        self.add_query_statistics(spent, torch.tensor(self.raw.get("broken", []), dtype=torch.bool))
        self.add_norm_curve({int(b): torch.tensor(d, dtype=torch.float64)
                             for b, d in self.raw.get("distance_at", {}).items()}, max_queries)

    @staticmethod
    def merge(parts: list[AttackSummary], max_queries: int | None) -> AttackSummary:
        """One attack's summaries over disjoint shards: counts add up, statistics are recomputed exactly."""
        out = AttackSummary(parts[0].name, attacked=0, broken=0, seconds=0.0, gradients=0, forwards=0)
        raw: dict[str, Any] = {"spent": [], "broken": [], "distance_at": {}}
        for p in parts:
            out.attacked += p.attacked
            out.broken += p.broken
            out.seconds += p.seconds
            out.gradients += p.gradients
            out.forwards += p.forwards
            out.verification_failures += p.verification_failures
            out.notes += [m for m in p.notes if m not in out.notes]
            raw["spent"] += p.raw.get("spent", [])
            raw["broken"] += p.raw.get("broken", [])
            for b, d in p.raw.get("distance_at", {}).items():
                raw["distance_at"].setdefault(b, []).extend(d)
        out.raw = raw
        out.add_statistics(max_queries)
        return out

    def add_norm_curve(self, distance_at: dict[int, torch.Tensor], max_queries: int | None) -> None:
        """Median over the attacked examples of the smallest distance found within each budget; budgets past
        the query cap are left out (what the attack would have done there is unknown)."""
        for b, d in distance_at.items():
            if len(d) and (max_queries is None or b <= max_queries):
                self.norm_curve[str(b)] = float(d.double().median())  # the lower median

    def add_query_statistics(self, spent: torch.Tensor, broken: torch.Tensor) -> None:
        """Fill the query statistics from the per-example queries and broken flags of every attacked example."""
        if len(spent) == 0:
            return
        won = spent[broken].double()
        if len(won):
            self.queries_successful_median = float(won.median())
            self.queries_successful_mean = float(won.mean())
        top, level = max(int(spent.max()), 10), 10
        while True:
            self.success_curve[str(level)] = float(((spent <= level) & broken).double().mean())
            if level >= top:
                break
            level *= 10


def _finite_or_str(v: float) -> float | str:
    """JSON has no infinity: an unbroken median is written as the string "inf"."""
    return v if v != float("inf") else "inf"


@dataclass(frozen=True)
class ExampleRecord:
    """What the audit found for one example. `evaluated` is False when its query budget ran out before its clean
    check (it is then neither robust nor broken). `extra` holds optional figures: `min_distance` (minimum-norm
    attacks), `map_*` (interpreter similarity)."""

    index: int
    label: int
    clean_prediction: int | None
    robust: bool
    broken_by: str | None
    linf: float
    l2: float
    queries: int
    gradients: int
    evaluated: bool = True
    naive_robust: bool | None = None  # adaptive runs: robust after the naive cascade alone
    adversarial_prediction: int | None = None  # broken examples: the label the verifying pass gave x_adv
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return out | self.extra

    @staticmethod
    def from_json(d: dict[str, Any]) -> ExampleRecord:
        names = {f.name for f in fields(ExampleRecord)} - {"extra"}
        return ExampleRecord(**{k: v for k, v in d.items() if k in names},
                             extra={k: v for k, v in d.items() if k not in names})


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation: the headline figures, per-attack costs, diagnostics and one record per example. Built
    once (`dataclasses.replace` makes a changed copy); `from_json` reads one back (a resumed run's shards)."""

    n: int
    clean_accuracy: float
    robust_accuracy: float
    robust_accuracy_ci95: tuple[float, float]
    threat: dict[str, Any]
    attacks: list[AttackSummary]
    flags: list[Flag]
    examples: list[ExampleRecord]
    x_adv: torch.Tensor
    seed: int
    seconds: float
    model: str = "model"
    stopped: str | None = None  # why the audit stopped before every attack ran on every example
    data: dict[str, Any] = field(default_factory=dict)  # where the examples came from (source, class names...)
    model_sha256: str | None = None  # the model's identity: its file's sha256, or its weights'
    provenance: dict[str, Any] = field(default_factory=dict)  # versions, date, data hash, model and attack options
    interpretation: dict[str, Any] | None = None  # --interpreter: how the broken examples' maps changed
    adaptations: list[dict[str, Any]] = field(default_factory=list)  # what the diagnostics made the attacks adapt
    naive_robust_accuracy: float | None = None  # with adaptations: what the naive cascade alone reported
    gate: dict[str, Any] | None = None  # the release gate's verdict, when one was set

    @property
    def complete(self) -> bool:
        return self.stopped is None

    @property
    def flag_codes(self) -> list[str]:
        return [f.code for f in self.flags]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.provenance,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "complete": self.complete,
            "stopped": self.stopped,
            "n": self.n,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "robust_accuracy_ci95": list(self.robust_accuracy_ci95),
            "naive_robust_accuracy": self.naive_robust_accuracy,
            "adaptations": self.adaptations,
            "threat": self.threat,
            "seed": self.seed,
            "seconds": self.seconds,
            "data": self.data,
            "attacks": [a.to_json() for a in self.attacks],
            "flags": [f.to_json() for f in self.flags],
            **({} if self.interpretation is None else {"interpretation": self.interpretation}),
            **({} if self.gate is None else {"gate": self.gate}),
            "examples": [e.to_json() for e in self.examples],
        }

    @staticmethod
    def from_json(state: dict[str, Any], x_adv: torch.Tensor) -> EvalRecord:
        """The record `to_json` wrote (with each attack's `raw` data, as the store keeps it)."""
        names = {f.name for f in fields(AttackSummary)}
        attacks = [AttackSummary(**{k: v for k, v in a.items() if k in names and k != "norm_curve"})
                   for a in state["attacks"]]
        return EvalRecord(
            n=state["n"], clean_accuracy=state["clean_accuracy"], robust_accuracy=state["robust_accuracy"],
            robust_accuracy_ci95=tuple(state["robust_accuracy_ci95"]), threat=state["threat"], attacks=attacks,
            flags=[Flag(**f) for f in state["flags"]], examples=[ExampleRecord.from_json(e) for e in state["examples"]],
            x_adv=x_adv, seed=state["seed"], seconds=state["seconds"], model=state["model"],
            stopped=state.get("stopped"), data=state.get("data", {}), model_sha256=state.get("model_sha256"),
            interpretation=state.get("interpretation"), adaptations=state.get("adaptations", []),
            naive_robust_accuracy=state.get("naive_robust_accuracy"),
        )
