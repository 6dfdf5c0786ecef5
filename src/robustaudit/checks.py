"""Diagnostics that make a robust-accuracy figure untrustworthy, each a `Flag` with one sentence.

Checks run on a small probe of the data through an `Oracle`, so their passes are counted per example
like any attack's. (AutoAttack's checks.py inspired the list; these flag instead of only warning.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from robustaudit.attacks.whitebox.pgd import PGD, PGDL0
from robustaudit.errors import InputError
from robustaudit.models.base import LabelModel
from robustaudit.ops import losses
from robustaudit.ops.lp import pixels
from robustaudit.ops.zo import probe_values
from robustaudit.oracle import Oracle
from robustaudit.results import AttackSummary, ExampleRecord, Flag
from robustaudit.stats import clopper_pearson
from robustaudit.threat import ThreatModel
from robustaudit.types import Access, Bounds, Norm

PROBE = 16
LABEL_REPEATS = 5  # identical label queries that must agree on a deterministic model
LARGE_EPS_VOTES = 5  # a randomised model's large-eps check decides success by the majority of this many draws


def model_checks(
    run: Oracle, x: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, threat: ThreatModel, seed: int
) -> list[Flag]:
    """Run the pre-attack checks on the first examples that can pay for them, paid from `run` (the audit's
    oracle over x)."""
    model = run.model
    cost = {Access.GRADIENTS: 3, Access.SCORES: 2}.get(Access(model.access), LABEL_REPEATS)  # repeats, a gradient
    everyone = torch.arange(len(x))
    probe = everyone[run.affordable(everyone, cost).cpu()][:PROBE]
    flags: list[Flag] = []
    if len(probe) == 0:
        return [Flag("checks_skipped", f"no example had the {cost} queries of its budget the diagnostics need: "
                                       "raise --budget to have the model checked")]
    oracle = run.sub(probe)
    positions = torch.arange(len(probe))
    xp, yp = x[probe].to(model.device), y[probe].to(model.device)
    if getattr(model, "was_training", False):
        flags.append(Flag("training_mode", "the model was handed over in training mode; robustaudit evaluated "
                                           "it in eval mode (dropout off, BatchNorm statistics frozen)"))
    buffers = _buffers(model)
    if Access(model.access) >= Access.SCORES:
        first, second = oracle.scores(xp, positions), oracle.scores(xp, positions)
        scale = 1.0 + float(first.abs().max())
        if not torch.allclose(first, second, rtol=0, atol=1e-4 * scale):
            flags.append(Flag("randomized", "two identical forward passes gave different outputs: the model is "
                                            "randomised, so attack it with expectation over transformation (EOT)"))
        if _looks_like_probabilities(first):
            flags.append(Flag("probability_outputs", "the outputs look like probabilities, not logits: remove the "
                                                     "final softmax, or losses such as CE and DLR are distorted"))
    else:  # labels change rarely under small noise: compare several draws (AutoAttack's check_randomized uses 5)
        first = oracle.labels(xp, positions)
        if any(not torch.equal(first, oracle.labels(xp, positions)) for _ in range(LABEL_REPEATS - 1)):
            flags.append(Flag("randomized", "identical queries gave different labels: the model is randomised"))
    if buffers and any(not torch.equal(a, b) for a, b in zip(buffers, _buffers(model), strict=True)):
        flags.append(Flag("buffer_updates", "a forward pass changed the model's buffers (BatchNorm statistics in "
                                            "training mode?): the model changes while it is attacked"))
    if Access(model.access) >= Access.GRADIENTS:
        grad_flags = _gradient_checks(oracle, xp, yp, positions, threat.bounds)
        flags += grad_flags
        if not any(f.code == "non_differentiable" for f in grad_flags):
            judged = model
            if any(f.code == "randomized" for f in flags):  # success by the majority of draws, as EOT will judge
                from robustaudit.models.adapt import EOT

                judged = EOT(model, samples=1, votes=LARGE_EPS_VOTES)
            flags += _large_eps_check(judged, x[probe], y[probe], correct[probe], threat, seed, oracle, probe)
    run.absorb(probe, oracle.queries, oracle.gradients)
    return flags


def label_mismatch(examples: list[ExampleRecord], data: dict[str, Any]) -> Flag | None:
    """A clean accuracy no better than chance (its 95% interval's lower end at or below 1/K for K distinct labels)
    means the labels probably do not name the model's classes: the flag says the likely cause for the data's
    source."""
    evaluated = [e for e in examples if e.evaluated and e.clean_prediction is not None]
    k = len({e.label for e in evaluated})
    if k < 2:
        return None
    correct = sum(e.clean_prediction == e.label for e in evaluated)
    if clopper_pearson(correct, len(evaluated))[0] > 1 / k:
        return None
    if data.get("source") == "image folder" and not data.get("class_map"):
        cause = ("the image folder's sorted folder names became labels 0..K-1; if the model numbers its classes "
                 "otherwise, map folder names to its indices with --classes FILE")
    elif data.get("source") == "image folder":
        cause = "check that --classes maps each folder to the model's class index"
    else:
        cause = "check that the labels use the model's class indices and that inputs are scaled and normalised as " \
                "the model expects (--mean/--std, --bounds)"
    return Flag("label_mismatch", f"clean accuracy {correct}/{len(evaluated)} is no better than chance (1/{k} for {k} "
                                  f"labels): labels and classes probably do not match; {cause}")


def cascade_flags(summaries: list[AttackSummary], requires: list[Access], n: int) -> list[Flag]:
    """Post-attack flags: black-box attacks breaking points the gradient attacks missed; failed verifications."""
    flags = []
    ran_gradient = False
    for s, level in zip(summaries, requires, strict=True):
        if level >= Access.GRADIENTS:
            ran_gradient = True
        elif ran_gradient and s.broken / max(n, 1) > 0.002:
            flags.append(Flag("gradient_masking", f"the black-box attack {s.name} broke {s.broken} points that "
                                                  "the gradient attacks missed: gradients are likely masked, so "
                                                  "white-box figures overstate robustness"))
        if s.verification_failures:
            flags.append(Flag("verification_failures", f"{s.name} claimed {s.verification_failures} successes that "
                                                       "a fresh forward pass did not confirm (not counted as broken)"))
    return flags


def _looks_like_probabilities(z: torch.Tensor) -> bool:
    return bool(z.max() < 1 + 1e-5 and z.min() > -1e-5 and torch.allclose(z.sum(1), torch.ones(len(z)), atol=1e-4))


def _buffers(model: LabelModel) -> list[torch.Tensor]:
    module = getattr(model, "module", None)
    return [b.detach().clone() for b in module.buffers()] if module is not None else []


def _gradient_checks(oracle: Oracle, xp: torch.Tensor, yp: torch.Tensor, probe: torch.Tensor,
                     bounds: Bounds) -> list[Flag]:
    try:
        _, _, g = oracle.value_and_grad(xp, probe, lambda z: losses.ce(z.double(), yp))
    except InputError:
        return [Flag("non_differentiable", "the model's output has no gradient with respect to its input (a "
                                           "non-differentiable path): white-box attacks cannot run; use "
                                           "score-based attacks")]
    flat = g.reshape(len(g), -1)
    out = []
    bad = ~torch.isfinite(flat).all(1)
    if bad.any():
        out.append(Flag("nonfinite_gradients", f"{int(bad.sum())} of {len(g)} probed examples have NaN or infinite "
                                               "input gradients: gradient attacks are unreliable on them"))
    zero = (flat == 0).all(1) & ~bad
    if zero.any():
        out.append(Flag("zero_gradients", f"{int(zero.sum())} of {len(g)} probed examples have an all-zero input "
                                          "gradient (saturated or masked): gradient attacks cannot move them"))
    smooth = (~bad & ~zero).nonzero()[:, 0][:SHATTER_PROBE]
    smooth = smooth[oracle.affordable(smooth, 2 * SHATTER_DIRECTIONS).cpu()]
    if len(smooth):
        cos = _gradient_agreement(oracle, xp[smooth], yp[smooth], g[smooth], probe[smooth], bounds)
        if float(cos.median()) < SHATTER_COSINE:
            out.append(Flag("shattered_gradients", f"the input gradient disagrees with finite differences (median "
                                                   f"cosine {float(cos.median()):.2f} over {len(smooth)} probed "
                                                   "examples): gradients are shattered by a non-differentiable "
                                                   "or randomised step"))
    return out


SHATTER_PROBE, SHATTER_DIRECTIONS, SHATTER_STEP, SHATTER_COSINE = 4, 10, 1e-2, 0.3


def _gradient_agreement(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, idx: torch.Tensor,
                        bounds: Bounds) -> torch.Tensor:
    """Per example, the cosine between the autograd directional derivatives of the CE loss along random unit
    directions and central finite differences along the same (bound-clipped) steps; 2 queries per direction."""
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(len(x), SHATTER_DIRECTIONS, *x.shape[1:], generator=gen).to(x)
    u = u / u.flatten(2).norm(dim=2).reshape(len(x), SHATTER_DIRECTIONS, *([1] * (x.dim() - 1)))
    plus = (x[:, None] + SHATTER_STEP * u).clamp(bounds.low, bounds.high)
    minus = (x[:, None] - SHATTER_STEP * u).clamp(bounds.low, bounds.high)
    labels = torch.zeros(oracle.n, dtype=torch.long, device=y.device)
    labels[idx.to(y.device)] = y

    def loss(probes: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        return losses.ce(oracle.scores(probes, at).double(), labels[at.to(y.device)])

    values = probe_values(loss, torch.cat([plus, minus], 1), idx)
    finite = values[:, :SHATTER_DIRECTIONS] - values[:, SHATTER_DIRECTIONS:]
    autograd = (g[:, None].double() * (plus - minus).double()).flatten(2).sum(2)
    return torch.nn.functional.cosine_similarity(finite, autograd, dim=1)


def _large_eps_check(
    model: LabelModel, x: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, threat: ThreatModel, seed: int,
    oracle: Oracle, probe: torch.Tensor,
) -> list[Flag]:
    """PGD-10 with an eps that covers the whole input box must break every probed example (x, y, correct: the
    probed examples; `probe`: their ids; `oracle`: theirs, paying for the attack)."""
    pos = correct.cpu().nonzero()[:, 0]
    pos = pos[oracle.affordable(pos, 2).cpu()]  # a gradient step and its verification at least
    if len(pos) == 0:
        return []
    width = threat.bounds.width
    eps = width if threat.norm == Norm.LINF else float(pixels(x[:1]).shape[2]) if threat.norm == Norm.L0 else \
        width * math.sqrt(x[0].numel())
    big = ThreatModel(norm=threat.norm, eps=eps, bounds=threat.bounds)
    everyone = torch.ones(len(pos), dtype=torch.bool)
    pgd = PGDL0(steps=10, restarts=1) if threat.norm == Norm.L0 else PGD(steps=10)
    res = pgd(model, x[pos], y[pos], big, seed=seed, ids=probe[pos], attack_mask=everyone,
              budget=None if oracle.max_queries is None else oracle.budget_left(pos))
    oracle.absorb(pos, res.queries, res.gradients)
    left = int((~res.success).sum())
    if left:
        return [Flag("not_broken_at_large_eps", f"PGD at eps={eps:.3g}, which covers the whole input range, left "
                                                f"{left} of {len(pos)} probed examples correctly classified: "
                                                "gradients are likely masked or the model ignores its input")]
    return []


@dataclass(frozen=True)
class Adaptation:
    """One adaptation of the attacks to what the diagnostics found (spec adaptive-evaluation.md)."""

    name: str  # log_probabilities | straight_through | eot | gradient_free
    reason: str  # the flag codes that triggered it
    detail: str = ""
    draws: int = 0  # eot: draws per gradient and per decision

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "reason": self.reason, "detail": self.detail, "draws": self.draws}

    @staticmethod
    def from_json(d: dict[str, object]) -> Adaptation:
        return Adaptation(str(d["name"]), str(d["reason"]), str(d.get("detail", "")), int(str(d.get("draws", 0))))


GRADIENT_FLAGS = ("zero_gradients", "nonfinite_gradients", "non_differentiable", "shattered_gradients",
                  "not_broken_at_large_eps", "gradient_masking")
GRADIENT_FREE_QUERIES = 5000  # Square's budget when no gradient can be repaired (AutoAttack's)


def choose_adaptations(flags: list[Flag], model: LabelModel, eot: int) -> list[Adaptation]:
    """Per model: log-probabilities for probability outputs, EOT over `eot` draws for randomised outputs, BPDA
    where masked gradients come from rounding-type steps that can be located, else a gradient-free attack."""
    from robustaudit.models.adapt import straight_through
    from robustaudit.models.torch import TorchModel

    codes = {f.code for f in flags}
    plan = []
    if "probability_outputs" in codes:
        plan.append(Adaptation("log_probabilities", "probability_outputs",
                               "margin losses on log-probabilities computed in float64"))
    if "randomized" in codes:
        plan.append(Adaptation("eot", "randomized", f"gradients averaged over {eot} draws; success and clean "
                                                    f"predictions by the majority of {eot} fresh draws", draws=eot))
    masked = sorted(codes & set(GRADIENT_FLAGS))
    if masked and Access(model.access) >= Access.GRADIENTS:
        located = straight_through(model) if isinstance(model, TorchModel) else None
        if located is not None:
            plan.append(Adaptation("straight_through", ",".join(masked), "BPDA (identity backward) on "
                                   + ", ".join(sorted(set(located[1])))))
        elif "probability_outputs" not in codes and "randomized" not in codes:
            plan.append(Adaptation("gradient_free", ",".join(masked),
                                   f"no masking step located: Square (Sparse-RS at L0) with {GRADIENT_FREE_QUERIES} "
                                   "queries"))
    return plan


def adapt(model: LabelModel, plan: list[Adaptation]) -> tuple[LabelModel, LabelModel]:
    """(the model the naive cascade attacks, the model the adapted cascade attacks) under `plan`; with EOT both
    decide labels by majority vote, so no lucky draw counts as a success."""
    from robustaudit.models.adapt import EOT, LogScores, log_probabilities, straight_through
    from robustaudit.models.torch import TorchModel

    names = {a.name for a in plan}
    naive, adapted = model, model
    if "log_probabilities" in names:
        adapted = log_probabilities(adapted)[0] if isinstance(adapted, TorchModel) else LogScores(adapted)
    if isinstance(adapted, TorchModel) and "straight_through" in names:
        adapted = (straight_through(adapted) or (adapted, []))[0]
    if "eot" in names:
        votes = next(a.draws for a in plan if a.name == "eot")
        naive, adapted = EOT(model, samples=1, votes=votes), EOT(adapted, samples=votes, votes=votes)
    return naive, adapted
