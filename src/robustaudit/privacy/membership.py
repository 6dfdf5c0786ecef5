"""Membership inference at every access level (spec membership-inference.md): does the model leak which examples
it was trained on?

Threat model: the auditor holds an evaluation pool of labelled examples known to be members (in the training set)
or not, and queries the model (local or remote) at the access it offers. Score access: LOSS and confidence
thresholds (Yeom et al., CSF 2018) and LiRA online/offline (Carlini et al., S&P 2022), which needs reference
(shadow) models trained by the auditor with the target's recipe. Label access: the gap attack, the
boundary-distance attack (HopSkipJump distances; Choquette-Choo et al., ICML 2021) and the augmentation attack.
Every model query goes through the `Oracle`, so queries per example are exact.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import norm
from torch import nn

from robustaudit.errors import AccessError, InputError
from robustaudit.models.base import LabelModel
from robustaudit.models.torch import TorchModel
from robustaudit.models.wrappers import as_label_only
from robustaudit.ops.losses import log_probabilities
from robustaudit.oracle import Oracle
from robustaudit.privacy import metrics
from robustaudit.progress import progress_bar
from robustaudit.threat import ThreatModel
from robustaudit.types import Access, Bounds, Norm

#: attack -> the lowest access level it needs
ATTACKS: dict[str, Access] = {
    "loss": Access.SCORES, "confidence": Access.SCORES, "lira": Access.SCORES, "gap": Access.LABELS,
    "boundary": Access.LABELS, "augmentation": Access.LABELS,
}
DEFAULT_ATTACKS = ("loss", "confidence", "lira", "gap", "boundary", "augmentation")
TrainFn = Callable[..., nn.Module]


@dataclass(frozen=True)
class Pool:
    """Labelled examples with member flags (True: in the target's training set)."""

    x: torch.Tensor
    y: torch.Tensor
    member: torch.Tensor

    def __post_init__(self) -> None:
        if not (len(self.x) == len(self.y) == len(self.member)):
            raise InputError(f"pool: x, y and member differ in length ({len(self.x)}, {len(self.y)}, "
                             f"{len(self.member)})")
        if int(self.member.sum()) == 0 or int((~self.member).sum()) == 0:
            raise InputError("the pool needs both members and non-members")

    def balanced(self, seed: int) -> tuple[Pool, str | None]:
        """The pool with the larger side subsampled (seeded) to the smaller one's size, and a warning if it was
        not balanced: accuracy on an unbalanced pool measures the base rate (spec, Pitfalls)."""
        m = self.member.nonzero()[:, 0]
        o = (~self.member).nonzero()[:, 0]
        if len(m) == len(o):
            return self, None
        g = torch.Generator().manual_seed(seed)
        k = min(len(m), len(o))
        m, o = m[torch.randperm(len(m), generator=g)[:k]], o[torch.randperm(len(o), generator=g)[:k]]
        keep = torch.cat([m, o]).sort().values
        warning = (f"unbalanced pool ({int(self.member.sum())} members, {int((~self.member).sum())} non-members): "
                   f"evaluated on a balanced random subsample of {k} + {k} (seed {seed})")
        return Pool(self.x[keep], self.y[keep], self.member[keep]), warning


@dataclass(frozen=True)
class Shadows:
    """Reference models trained by the auditor, each on a random half of the pool (plus any population data):
    `keep[i, j]` says whether pool example j was in model i's training set (each example in exactly half)."""

    models: list[nn.Module]
    keep: torch.Tensor
    seconds: float


def train_shadows(train_fn: TrainFn, pool: Pool, population: tuple[torch.Tensor, torch.Tensor] | None,
                  n_models: int, *, seed: int = 0, progress: bool = False) -> Shadows:
    """Train `n_models` models with the target's recipe `train_fn(x, y[, seed=...]) -> nn.Module` on random
    halves of pool ∪ population, LiRA's scheme: per example a random permutation of the models, IN for the
    first half (so each example is IN for exactly n_models/2 of them). The pool's true membership is never
    used."""
    if n_models < 2 or n_models % 2:
        raise InputError(f"LiRA needs an even number of shadow models >= 2, got {n_models}")
    x, y = pool.x, pool.y
    if population is not None:
        x, y = torch.cat([x, population[0].to(x.device)]), torch.cat([y, population[1].to(y.device)])
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(n_models, len(x), generator=g).argsort(0).argsort(0) < n_models // 2
    takes_seed = "seed" in inspect.signature(train_fn).parameters
    models = []
    start = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task("shadow models", total=n_models)
        for i in range(n_models):
            idx = keep[i].nonzero()[:, 0].to(x.device)
            try:
                net = train_fn(x[idx], y[idx], seed=seed + i) if takes_seed else train_fn(x[idx], y[idx])
            except Exception as e:  # noqa: BLE001 - the user's training function failed
                raise InputError(f"the shadow training function failed ({type(e).__name__}: {e})") from None
            if not isinstance(net, nn.Module):
                raise InputError(f"the shadow training function returned {type(net).__name__}, expected an "
                                 "nn.Module")
            models.append(net.eval())
            bar.advance(task)
    return Shadows(models, keep[:, : len(pool.x)], time.perf_counter() - start)


def _batches(n: int, size: int) -> list[torch.Tensor]:
    return list(torch.arange(n).split(size))


def _views(x: torch.Tensor, mirror: bool) -> list[torch.Tensor]:
    """LiRA's query augmentations: the input and, for images, its horizontal mirror."""
    return [x, x.flip(-1)] if mirror and x.dim() == 4 else [x]


def lira_score(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LiRA's logit scaling in float64: log p_y - log(sum_{y' != y} p_y') (from logits when given logits)."""
    lp = log_probabilities(scores.double())
    own = lp.gather(1, y[:, None])[:, 0]
    others = lp.scatter(1, y[:, None], float("-inf")).logsumexp(1)
    return own - others


def _target_signals(oracle: Oracle, pool: Pool, mirror: bool, batch: int) -> torch.Tensor:
    """[n, views] LiRA-scaled scores of the target, one query per example and view."""
    out = []
    for idx in _batches(len(pool.x), batch):
        xs, ys = pool.x[idx], pool.y[idx].to(pool.x.device)
        out.append(torch.stack([lira_score(oracle.scores(v, idx.to(v.device)), ys) for v in _views(xs, mirror)], 1))
    return torch.cat(out).cpu()


def _shadow_signals(shadows: Shadows, pool: Pool, mirror: bool, batch: int, device: torch.device) -> torch.Tensor:
    """[models, n, views] LiRA-scaled scores of each shadow model (the auditor's own: not counted)."""
    rows = []
    for net in shadows.models:
        model = TorchModel(net, device=str(device))
        parts = []
        for idx in _batches(len(pool.x), batch):
            xs, ys = pool.x[idx], pool.y[idx].to(device)
            parts.append(torch.stack([lira_score(model.predict_scores(v), ys) for v in _views(xs, mirror)], 1))
        rows.append(torch.cat(parts).cpu())
    return torch.stack(rows)


def lira(target: torch.Tensor, shadow: torch.Tensor, keep: torch.Tensor, *, online: bool,
         fix_variance: bool) -> np.ndarray:
    """LiRA's test statistic per example (higher: member). target [n, V], shadow [N, n, V], keep [N, n].

    Online: mean over views of log N(s; mu_in, sd_in) - log N(s; mu_out, sd_out), mu = median over the IN (OUT)
    models. Offline: OUT models only, one-sided, -log P_out(S > s). fix_variance: one global sd per side (the
    LiRA README's advice below 64 models)."""
    s, t = shadow.numpy(), target.numpy()
    k = keep.numpy()
    n_in = k.sum(0)
    if (n_in == 0).any() or (n_in == len(k)).any():
        raise InputError("every example needs shadow models it was in and models it was out of")
    inside = np.where(k[:, :, None], s, np.nan)
    outside = np.where(~k[:, :, None], s, np.nan)
    mu_in, mu_out = np.nanmedian(inside, 0), np.nanmedian(outside, 0)
    if fix_variance:
        sd_in = np.full_like(mu_in, np.nanstd(inside))
        sd_out = np.full_like(mu_out, np.nanstd(outside))
    else:
        sd_in, sd_out = np.nanstd(inside, 0), np.nanstd(outside, 0)
    sd_in, sd_out = sd_in + 1e-30, sd_out + 1e-30
    out_part = norm.logpdf(t, mu_out, sd_out) if online else norm.logsf(t, mu_out, sd_out)
    in_part = norm.logpdf(t, mu_in, sd_in) if online else 0.0
    return np.asarray((in_part - out_part).mean(1))


def _shifts(x: torch.Tensor, d: int, fill: float) -> list[torch.Tensor]:
    """The augmentation attack's copies: x and its translations by 1..d pixels in the four directions (4d+1),
    the uncovered border filled with the lower bound."""
    out = [x]
    h, w = x.shape[-2:]
    for k in range(1, d + 1):
        padded = F.pad(x, (k, k, k, k), value=fill)
        out += [padded[..., 2 * k:2 * k + h, k:k + w], padded[..., :h, k:k + w],
                padded[..., k:k + h, 2 * k:2 * k + w], padded[..., k:k + h, :w]]
    return out


def _noisy(x: torch.Tensor, d: int, sigma: float, bounds: Bounds, seed: int) -> list[torch.Tensor]:
    """For tabular inputs: x and 4d Gaussian-noise copies (sigma times the bounds' width), clipped."""
    g = torch.Generator().manual_seed(seed)
    width = bounds.high - bounds.low
    return [x] + [(x + sigma * width * torch.randn(x.shape, generator=g).to(x.device)).clamp(bounds.low, bounds.high)
                  for _ in range(4 * d)]


def _label_oracle(model: LabelModel, n: int) -> Oracle:
    return Oracle(as_label_only(model), n)


@dataclass
class MembershipRecord:
    """Per attack: its scores (higher: member), queries per example, seconds and how it decides."""

    member: np.ndarray
    scores: dict[str, np.ndarray]
    queries: dict[str, np.ndarray]
    seconds: dict[str, float]
    calibration: dict[str, str]
    warnings: list[str]
    train_accuracy: float
    test_accuracy: float

    def results(self, seed: int = 0) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for name, s in self.scores.items():
            r = metrics.summary(self.member, s, seed=seed)
            if name == "gap":  # a fixed rule, not a threshold sweep: its own balanced accuracy
                r["accuracy"] = 0.5 + (self.train_accuracy - self.test_accuracy) / 2
            q = self.queries[name]
            r.update(queries_per_example=float(q.mean()), queries_max=int(q.max()), seconds=self.seconds[name],
                     calibration=self.calibration[name])
            out[name] = r
        return out


def membership_audit(model: LabelModel, pool: Pool, attacks: Sequence[str] = DEFAULT_ATTACKS, *,
                     shadow: TrainFn | None = None, population: tuple[torch.Tensor, torch.Tensor] | None = None,
                     n_shadows: int = 16, fix_variance: bool | None = None, mirror: bool = True,
                     budget: int = 1000, shift: int = 1, sigma: float = 0.05, bounds: Bounds = Bounds(),
                     seed: int = 0, batch_size: int = 256, progress: bool = False) -> MembershipRecord:
    """Run the membership attacks on `pool` against `model` at its access level.

    `shadow` is the target's training recipe (LiRA needs it: `shadow(x, y[, seed=...]) -> nn.Module`, called on
    `n_shadows` random halves of pool ∪ population); `budget` caps the boundary attack's label queries per
    example (HopSkipJump, L2); `shift` the augmentation attack's translation (4·shift+1 copies). Unbalanced
    pools are subsampled to balance, with a warning."""
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise InputError(f"unknown membership attack {unknown[0]!r}: use {', '.join(ATTACKS)}")
    if not attacks:
        raise InputError("no membership attack given")
    level = Access(model.access)
    for a in attacks:
        if level < ATTACKS[a]:
            raise AccessError(f"membership attack {a!r} needs {ATTACKS[a].name.lower()} access, but the model offers "
                              f"only {level.name.lower()}: use gap, boundary or augmentation")
    if "lira" in attacks and shadow is None:
        raise InputError("lira needs the target's training recipe to train shadow models (--shadow file.py:fn)")
    if budget < 1:
        raise InputError(f"the boundary attack's budget must be >= 1 query per example, got {budget}")
    pool, warning = pool.balanced(seed)
    pool = Pool(pool.x.to(model.device), pool.y.to(model.device), pool.member.cpu())
    warnings = [warning] if warning else []
    n = len(pool.x)
    member = pool.member.cpu().numpy()
    scores: dict[str, np.ndarray] = {}
    queries: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    calibration: dict[str, str] = {}

    def record(name: str, oracle: Oracle, values: np.ndarray, how: str, start: float) -> None:
        scores[name] = values
        queries[name] = oracle.queries.cpu().numpy().copy()
        seconds[name] = time.perf_counter() - start
        calibration[name] = how

    # the clean labels, one label query each: the gap attack itself, and train/test accuracy for the report
    labels_oracle = _label_oracle(model, n)
    pred = torch.cat([labels_oracle.labels(pool.x[i], i.to(pool.x.device)) for i in _batches(n, batch_size)]).cpu()
    correct = (pred == pool.y.cpu()).numpy()
    train_acc, test_acc = float(correct[member].mean()), float(correct[~member].mean())
    sweep = "threshold swept over the pool (ROC); accuracy at the best threshold on the pool itself (optimistic)"
    if "gap" in attacks:
        scores["gap"], queries["gap"] = correct.astype(np.float64), labels_oracle.queries.cpu().numpy().copy()
        seconds["gap"], calibration["gap"] = 0.0, "fixed rule: member iff correctly classified"
    if {"loss", "confidence"} & set(attacks):
        oracle = Oracle(model, n)
        start = time.perf_counter()
        lp = torch.cat([log_probabilities(oracle.scores(pool.x[i], i.to(pool.x.device)).double())
                        for i in _batches(n, batch_size)]).cpu()
        own = lp.gather(1, pool.y.cpu()[:, None])[:, 0].numpy()
        for name, value in (("loss", own), ("confidence", np.exp(own))):
            if name in attacks:  # the same query answers both: charge it to each
                record(name, oracle, value, sweep + ("; score -CE" if name == "loss" else "; score p_y"), start)
    if "augmentation" in attacks:
        oracle = _label_oracle(model, n)
        start = time.perf_counter()
        hits = torch.zeros(n)
        for i in _batches(n, batch_size):
            xs = pool.x[i]
            copies = _shifts(xs, shift, bounds.low) if xs.dim() == 4 else _noisy(xs, shift, sigma, bounds, seed)
            for c in copies:
                hits[i] += (oracle.labels(c, i.to(c.device)).cpu() == pool.y[i].cpu()).float()
        how = (f"{4 * shift + 1} translations (±{'1..' if shift > 1 else ''}{shift} px)" if pool.x.dim() == 4
               else f"{4 * shift + 1} copies with Gaussian noise (sigma {sigma:g} of the bounds' width)")
        record("augmentation", oracle, hits.numpy(), f"{how}, score = copies classified correctly; " + sweep, start)
    if "boundary" in attacks:
        from robustaudit.attacks.decision.hsja import HopSkipJump

        start = time.perf_counter()
        # min-norm: eps only decides "success", never stops the search; distances are L2 as in the paper
        threat = ThreatModel(norm=Norm.L2, eps=1e-9, bounds=bounds, max_queries=budget)
        res = HopSkipJump()(as_label_only(model), pool.x, pool.y, threat, seed=seed)
        assert res.min_distance is not None
        dist = res.min_distance.cpu().double().numpy()
        dist[~correct] = 0.0  # misclassified: distance 0 (counted as non-members), in calibration and inference
        big = np.nanmax(np.where(np.isfinite(dist), dist, np.nan)) if np.isfinite(dist).any() else 1.0
        scores["boundary"] = np.where(np.isfinite(dist), dist, 2 * big + 1)  # no adversarial found: farthest
        queries["boundary"] = res.queries.cpu().numpy() + 0
        seconds["boundary"] = time.perf_counter() - start
        calibration["boundary"] = (f"HopSkipJump L2 distance to the boundary, {budget} label queries per example "
                                   "(distances from a truncated search are upper bounds); " + sweep)
    if "lira" in attacks:
        assert shadow is not None
        device = pool.x.device
        shadows = train_shadows(shadow, pool, population, n_shadows, seed=seed, progress=progress)
        oracle = Oracle(model, n)
        start = time.perf_counter()
        target = _target_signals(oracle, pool, mirror, batch_size)
        theirs = _shadow_signals(shadows, pool, mirror, batch_size, device)
        fixed = n_shadows < 64 if fix_variance is None else fix_variance
        views = target.shape[1]
        what = (f"{n_shadows} shadow models, Gaussian fit ({'global' if fixed else 'per-example'} variance), "
                f"{views} quer{'y' if views == 1 else 'ies'} per example" + (" (input + mirror)" if views > 1 else ""))
        for name, online in (("lira", True), ("lira-offline", False)):
            record(name, oracle, lira(target, theirs, shadows.keep, online=online, fix_variance=fixed),
                   ("online: IN and OUT models; " if online else "offline: OUT models only, one-sided; ") + what,
                   start - shadows.seconds)
    return MembershipRecord(member=member, scores=scores, queries=queries, seconds=seconds, calibration=calibration,
                            warnings=warnings, train_accuracy=train_acc, test_accuracy=test_acc)
