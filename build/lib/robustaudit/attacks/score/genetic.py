"""Microbial genetic algorithm over Linf sign patterns, optionally seeded by a transfer attack on a surrogate
(QuScore / MGA, spec black-box-attacks.md §3)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from robustaudit.attacks.base import Attack, Context
from robustaudit.attacks.transfer.iterative import TransferAttack
from robustaudit.interpret.maps import pearson
from robustaudit.models.base import GradModel
from robustaudit.ops.rng import generator
from robustaudit.threat import ThreatModel
from robustaudit.types import Access, Norm


@dataclass(frozen=True, kw_only=True)
class Genetic(Attack):
    """Microbial GA, Linf, score-based black box; Abdukhamidov et al., "Microbial Genetic Algorithm-based Black-box
    Attack against Interpretable Deep Learning Systems" (QuScore), 2023, after Yang et al.'s MGA.

    Each example has a population of sign patterns (every pixel at x ± eps). Per generation two members meet; the
    one with the worse target cross-entropy is infected by the other (crossover) and mutated. With a white-box
    `surrogate`, the initial population comes from MI-FGSM on it (free: surrogate passes are never charged);
    otherwise it is random. With `map_weight` > 0 against an interpretable system (a model that returns an
    attribution map with its scores, `MapModel`), the fitness also rewards keeping the adversarial input's map
    close to the clean one: CE − map_weight·(1 − Pearson correlation of the maps) (QuScore's goal; one extra
    query per example reads the clean map). Cost: `population` queries, then 0-2 per generation (only changed
    members are re-evaluated); at most n_queries per example; a success stops the example.

    >>> Genetic(surrogate=load_model("public.pt"))(target, x, y, ThreatModel(eps=0.03))  # doctest: +SKIP
    """

    name = "genetic"
    requires = Access.SCORES
    norms = frozenset({Norm.LINF})
    n_queries: int = 10_000
    population: int = 5
    crossover: float = 0.7
    mutation: float = 0.001
    max_generations: int = 50_000
    surrogate: GradModel | None = field(default=None, compare=False, repr=False)
    init_steps: int = 10
    init_step: float = 0.01
    init_retries: int = 5
    map_weight: float = 0.0

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        oracle, eps, bounds = ctx.oracle, ctx.threat.eps, ctx.threat.bounds
        oracle.limit(self.n_queries)
        n, pop = len(x), self.population
        gen = generator(ctx.seed, self.name, tuple(ctx.ids.tolist()))
        genomes = self._initial_population(ctx, x, y, gen)  # [n, P, *x.shape[1:]] bool

        def decode(idx: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            return (x[idx] + eps * (2 * genomes[idx, k].to(x.dtype) - 1)).clamp(bounds.low, bounds.high)

        clean_maps = None
        if self.map_weight > 0:
            every = torch.arange(n, device=x.device)[oracle.affordable(torch.arange(n, device=x.device))]
            first = oracle.scores_and_maps(x[every], every)[1].flatten(1)
            clean_maps = torch.zeros(n, first.shape[1], device=x.device)
            clean_maps[every] = first.to(clean_maps.dtype)
        fitness = torch.full((n, pop), float("nan"), device=x.device)
        changed = torch.ones(n, pop, dtype=torch.bool, device=x.device)
        x_adv, success = x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)
        live = torch.arange(n, device=x.device)

        def evaluate(idx: torch.Tensor, k: torch.Tensor) -> None:
            """Query the changed members k of the examples at idx; record successes (the last one wins)."""
            need = changed[idx, k]
            idx, k = idx[need], k[need]
            if len(idx) == 0:
                return
            xs = decode(idx, k)
            if clean_maps is None:
                z = oracle.scores(xs, idx)
                fitness[idx, k] = self._fitness(ctx, z, y, idx)
            else:
                z, maps = oracle.scores_and_maps(xs, idx)
                change = self.map_weight * (1 - pearson(maps.flatten(1).to(clean_maps.dtype), clean_maps[idx]))
                fitness[idx, k] = self._fitness(ctx, z, y, idx) + (change if ctx.threat.targeted else -change)
            changed[idx, k] = False
            won = ctx.success(z, y[idx], idx)
            x_adv[idx[won]], success[idx[won]] = xs[won], True

        live = live[oracle.affordable(live, pop)]
        for k in range(pop):  # the whole initial population is evaluated, even after an early success
            evaluate(live, torch.full_like(live, k))
        for _ in range(self.max_generations):
            live = live[~success[live]]
            if len(live) == 0:
                break
            i = torch.randint(0, pop, (len(live),), generator=gen).to(x.device)
            j = (i + torch.randint(1, pop, (len(live),), generator=gen).to(x.device)) % pop
            need = changed[live, i].long() + changed[live, j].long()  # only changed members are re-evaluated
            ok = oracle.remaining(live).to(x.device) >= need
            live, i, j = live[ok], i[ok], j[ok]
            if len(live) == 0:
                break
            evaluate(live, i)
            evaluate(live, j)
            go = ~success[live]
            live_g, i, j = live[go], i[go], j[go]
            fi, fj = fitness[live_g, i], fitness[live_g, j]
            i_wins = fi <= fj if ctx.threat.targeted else fi >= fj
            winner, loser = torch.where(i_wins, i, j), torch.where(i_wins, j, i)
            shape = genomes.shape[2:]
            cross = torch.rand(len(live_g), *shape, generator=gen).to(x.device) < self.crossover
            flip = torch.rand(len(live_g), *shape, generator=gen).to(x.device) < self.mutation
            child = torch.where(cross, genomes[live_g, winner], genomes[live_g, loser]) ^ flip
            genomes[live_g, loser] = child
            changed[live_g, loser] = True
        return x_adv, success

    def _fitness(self, ctx: Context, z: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """CE to the true label (maximised) or to the target (minimised)."""
        labels = ctx.target[idx] if ctx.threat.targeted and ctx.target is not None else y[idx]
        return F.cross_entropy(z, labels, reduction="none")

    def _initial_population(
        self, ctx: Context, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        n, pop, eps = len(x), self.population, ctx.threat.eps
        if self.surrogate is None:  # the MGA baseline: uniformly random sign patterns
            return (torch.rand(n, pop, *x.shape[1:], generator=gen) < 0.5).to(x.device)
        b = ctx.threat.bounds
        box = ThreatModel(norm=Norm.LINF, eps=eps, bounds=b)
        mi = TransferAttack(steps=self.init_steps)
        xs = x.repeat_interleave(pop, 0)
        labels = (ctx.target if ctx.threat.targeted and ctx.target is not None else y).repeat_interleave(pop)
        x1 = xs.clone()
        y1 = labels.clone()
        redo = torch.ones(n, dtype=torch.bool, device=x.device)
        # A1: untargeted MI-FGSM away from the label (the target in targeted mode) from a random start, repeated
        # for the examples none of whose copies fools the surrogate (the released code loops until one does;
        # capped here at `init_retries` passes)
        for _ in range(self.init_retries):
            rows = redo.repeat_interleave(pop)
            start = (xs[rows] + eps * (2 * torch.rand(xs[rows].shape, generator=gen).to(x.device) - 1))
            x1[rows] = mi.craft([self.surrogate], xs[rows], labels[rows], box, start=start.clamp(b.low, b.high),
                                step=self.init_step)
            with torch.no_grad():
                y1[rows] = self.surrogate.logits(x1[rows]).argmax(1).to(x.device)
            redo &= ~(y1 != labels).reshape(n, pop).any(1)
            if not bool(redo.any()):
                break
        # A2: targeted MI-FGSM towards the surrogate's new class, inside the box around x1 (as released)
        x2 = mi.craft([self.surrogate], x1, y1, dataclasses.replace(box, targeted=True), target=y1,
                      step=self.init_step)
        return (x2 - xs > 0).reshape(n, pop, *x.shape[1:])
