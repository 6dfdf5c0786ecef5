"""Distribution inference (spec distribution-inference.md; Suri & Evans, PETS 2022): does a model reveal the
share of a property in its training data?

The game: the challenger trains a model on n records drawn with property share alpha_0 or alpha_1 (b hidden) and
hands it over; the adversary, who can train models with the same recipe on its own disjoint split, says which.
Black box (predictions only): the loss test and the threshold test on accuracies over test sets drawn from each
distribution. White box: a permutation-invariant meta-classifier over the weights of MLPs. Risk: accuracy over
games with an exact interval, and n_leaked, the number of i.i.d. samples that would leak as much.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from robustaudit.errors import InputError
from robustaudit.models.torch import TorchModel
from robustaudit.oracle import Oracle
from robustaudit.progress import progress_bar
from robustaudit.stats import clopper_pearson

ATTACKS = ("loss", "threshold", "meta")
TrainFn = Callable[..., nn.Module]


def bound(a0: float, a1: float, n: float) -> float:
    """The best accuracy an adversary seeing n i.i.d. training records can reach telling alpha_0 from alpha_1."""
    lo, hi = min(a0, a1), max(a0, a1)
    ra = lo / hi if hi > 0 else 1.0
    rb = (1 - hi) / (1 - lo) if lo < 1 else 1.0
    return 0.5 + 0.5 * min(math.sqrt(1 - ra**n), math.sqrt(1 - rb**n))


def n_leaked(accuracy: float, a0: float, a1: float) -> float:
    """The n at which `bound` equals `accuracy` (a fraction): 0 for equal ratios or accuracy <= 0.5, inf where
    the ratios are 0 and 1 apart, max(alpha) is 0 or the accuracy is 1."""
    if not 0 <= accuracy <= 1:
        raise InputError(f"accuracy must be a fraction in [0, 1], got {accuracy}")
    if a0 == a1 or accuracy <= 0.5:
        return 0.0
    lo, hi = min(a0, a1), max(a0, a1)
    if hi == 0 or accuracy >= 1 or hi - lo >= 1:
        return math.inf
    ra, rb = lo / hi, (1 - hi) / (1 - lo)
    return math.log(1 - (2 * accuracy - 1) ** 2) / math.log(max(ra, rb))


@dataclass(frozen=True)
class Property:
    """Records with the property: labels in `classes`, or feature `feature` above `threshold`."""

    classes: tuple[int, ...] = ()
    feature: int | None = None
    threshold: float = 0.0

    @staticmethod
    def parse(text: str) -> Property:
        """'class:K[,K...]' or 'feature:J:THRESHOLD'."""
        kind, _, rest = text.partition(":")
        try:
            if kind == "class" and rest:
                return Property(classes=tuple(int(k) for k in rest.split(",")))
            if kind == "feature" and rest.count(":") == 1:
                j, t = rest.split(":")
                return Property(feature=int(j), threshold=float(t))
        except ValueError:
            pass
        raise InputError(f"--property must be class:K[,K...] or feature:J:THRESHOLD, got {text!r}")

    def holds(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.feature is not None:
            flat = x.flatten(1)
            if not 0 <= self.feature < flat.shape[1]:
                raise InputError(f"feature {self.feature} does not exist: the inputs have {flat.shape[1]} features")
            return flat[:, self.feature] > self.threshold
        return torch.isin(y, torch.tensor(self.classes, dtype=y.dtype))

    def __str__(self) -> str:
        if self.feature is not None:
            return f"feature {self.feature} > {self.threshold:g}"
        return f"label in {{{', '.join(map(str, self.classes))}}}"


def sample(idx_p: torch.Tensor, idx_q: torch.Tensor, alpha: float, n: int, g: torch.Generator) -> torch.Tensor:
    """n record indices, round(alpha·n) with the property (from idx_p) and the rest without (from idx_q)."""
    k = round(alpha * n)
    if k > len(idx_p) or n - k > len(idx_q):
        raise InputError(f"cannot draw {n} records with share {alpha:g}: the split has {len(idx_p)} records with "
                         f"the property and {len(idx_q)} without; lower --size")
    return torch.cat([idx_p[torch.randperm(len(idx_p), generator=g)[:k]],
                      idx_q[torch.randperm(len(idx_q), generator=g)[: n - k]]])


def _linear_layers(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


class PermInv(nn.Module):
    """Permutation-invariant meta-classifier over an MLP's layers (Ganju et al., as extended by Suri & Evans):
    each neuron's incoming weights and bias (after the first layer, with the previous layer's neuron
    representations) go through a per-layer MLP; the sum over neurons per layer, concatenated, gives 1 logit."""

    def __init__(self, shapes: list[tuple[int, int]], inside: int = 8) -> None:
        super().__init__()
        dims = [shapes[0][1] + 1] + [s[1] + 1 + shapes[i][0] * inside for i, s in enumerate(shapes[1:])]
        self.phi = nn.ModuleList(nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, inside), nn.ReLU(),
                                               nn.Dropout(0.5)) for d in dims)
        self.rho = nn.Linear(inside * len(shapes), 1)

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        """layers[l]: [models, neurons_l, inputs_l + 1]; returns [models] logits."""
        pooled, prev = [], None
        for phi, w in zip(self.phi, layers, strict=True):
            if prev is not None:  # each neuron also sees the whole previous layer's representation
                w = torch.cat([w, prev.flatten(1)[:, None, :].expand(-1, w.shape[1], -1)], 2)
            rep = phi(w)
            pooled.append(rep.sum(1))
            prev = rep
        return self.rho(torch.cat(pooled, 1))[:, 0]


def _features(nets: Sequence[nn.Module]) -> list[torch.Tensor]:
    """Per layer, [models, neurons, inputs + 1]: each neuron's incoming weights with its bias."""
    per_model = [[torch.cat([lin.weight, lin.bias[:, None]], 1).detach().float() for lin in _linear_layers(n)]
                 for n in nets]
    return [torch.stack([m[i] for m in per_model]) for i in range(len(per_model[0]))]


def meta_classifier(train: Sequence[nn.Module], labels: torch.Tensor, *, epochs: int = 200,
                    seed: int = 0) -> Callable[[Sequence[nn.Module]], torch.Tensor]:
    """Train PermInv on models labelled 0/1 (Adam 1e-3, weight decay 0.01, BCE, full batch); returns a function
    giving models' predicted labels."""
    shapes = [tuple(lin.weight.shape) for lin in _linear_layers(train[0])]
    if not shapes:
        raise InputError("the meta-classifier reads MLP weights: the recipe's models have no nn.Linear layer")
    for net in train:
        if [tuple(lin.weight.shape) for lin in _linear_layers(net)] != shapes:
            raise InputError("the meta-classifier needs models of one architecture: the recipe's shapes differ")
    torch.manual_seed(seed)
    meta = PermInv([(int(a), int(b)) for a, b in shapes])
    opt = torch.optim.Adam(meta.parameters(), lr=1e-3, weight_decay=0.01)
    feats, target = _features(train), labels.float()
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(meta(feats), target).backward()
        opt.step()
    meta.eval()

    def predict(nets: Sequence[nn.Module]) -> torch.Tensor:
        with torch.no_grad():
            return (meta(_features(nets)) > 0).long()

    return predict


def best_threshold(values: np.ndarray, labels: np.ndarray) -> tuple[float, bool, float]:
    """(t, rule, accuracy): the threshold over a grid of the values and the direction ("value >= t means 1" when
    rule is True, "<= t" otherwise) that classify `labels` best."""
    best = (0.0, True, -1.0)
    for t in np.unique(np.r_[values, np.linspace(values.min(), values.max(), 200)]):
        for rule in (True, False):
            acc = float((((values >= t) if rule else (values <= t)).astype(int) == labels).mean())
            if acc > best[2]:
                best = (float(t), rule, acc)
    return best


@dataclass
class DistributionRecord:
    """Per attack: accuracy over the games, its interval and n_leaked; the cost of everything."""

    alphas: tuple[float, float]
    n: int
    games: int
    results: dict[str, dict[str, object]] = field(default_factory=dict)
    seconds_training: float = 0.0
    queries_per_model: int = 0


def _accuracy_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[float, int]:
    """Accuracy through a counted oracle (labels only); also returns the queries spent."""
    oracle = Oracle(TorchModel(model), len(x))
    hits = 0
    for idx in torch.arange(len(x)).split(batch):
        hits += int((oracle.labels(x[idx], idx).cpu() == y[idx].cpu()).sum())
    return hits / len(x), int(oracle.queries.sum())


def distribution_audit(x: torch.Tensor, y: torch.Tensor, prop: Property, train_fn: TrainFn,
                       alphas: tuple[float, float] = (0.5, 0.2), *, size: int = 200, victims: int = 20,
                       shadows: int = 50, attacks: Sequence[str] = ATTACKS, test_size: int = 500,
                       meta_epochs: int = 200, seed: int = 0, batch_size: int = 1024,
                       progress: bool = False) -> DistributionRecord:
    """Play the distribution-inference game `victims` times per ratio with `train_fn(x, y[, seed=...])`:
    the data are split in halves (victim, adversary); victims train on `size` records of the victim half with
    property share alpha_b; the adversary trains `shadows` models per ratio on its half and attacks."""
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise InputError(f"unknown distribution attack {unknown[0] if unknown else ''!r}: use {', '.join(ATTACKS)}")
    if not all(0 <= a <= 1 for a in alphas):
        raise InputError(f"the ratios must lie in [0, 1], got {alphas}")
    if victims < 1 or size < 1:
        raise InputError("--victims and --size must be >= 1")
    if ({"threshold", "meta"} & set(attacks)) and shadows < 2:
        raise InputError("the threshold test and the meta-classifier need --shadows >= 2 per ratio")
    g = torch.Generator().manual_seed(seed)
    has = prop.holds(x, y)
    if int(has.sum()) == 0 or int((~has).sum()) == 0:
        raise InputError(f"no record, or every record, has the property ({prop})")
    perm = torch.randperm(len(x), generator=g)
    halves = {"victim": perm[: len(x) // 2], "adversary": perm[len(x) // 2:]}
    split = {k: (v[has[v]], v[~has[v]]) for k, v in halves.items()}
    takes_seed = "seed" in inspect.signature(train_fn).parameters

    def train(where: str, alpha: float, i: int) -> nn.Module:
        idx = sample(*split[where], alpha, size, g)
        try:
            net = train_fn(x[idx], y[idx], seed=seed + i) if takes_seed else train_fn(x[idx], y[idx])
        except Exception as e:  # noqa: BLE001 - the user's training function failed
            raise InputError(f"the training function failed ({type(e).__name__}: {e})") from None
        if not isinstance(net, nn.Module):
            raise InputError(f"the training function returned {type(net).__name__}, expected an nn.Module")
        return net.eval()

    start = time.perf_counter()
    n_local = shadows if {"threshold", "meta"} & set(attacks) else 0
    with progress_bar(progress) as bar:
        task = bar.add_task("models", total=2 * (victims + n_local))
        models: dict[str, list[list[nn.Module]]] = {"victim": [[], []], "adversary": [[], []]}
        for where, count in (("victim", victims), ("adversary", n_local)):
            for b, alpha in enumerate(alphas):
                for i in range(count):
                    models[where][b].append(train(where, alpha, 10_000 * b + i + (0 if where == "victim" else 5000)))
                    bar.advance(task)
    record = DistributionRecord(alphas=alphas, n=size, games=2 * victims, seconds_training=time.perf_counter() - start)
    # test sets drawn from each distribution out of the adversary's half
    tests = [_test_set(split["adversary"], a, test_size, g) for a in alphas]
    truth = np.r_[np.zeros(victims, dtype=int), np.ones(victims, dtype=int)]

    def accuracies(nets: list[nn.Module]) -> tuple[np.ndarray, int]:
        """Each model's accuracy on the two test sets, and the label queries one model took (counted)."""
        out, queries = np.zeros((len(nets), 2)), 0
        for m, net in enumerate(nets):
            queries = 0
            for d, idx in enumerate(tests):
                out[m, d], q = _accuracy_on(net, x[idx], y[idx], batch_size)
                queries += q
        return out, queries

    victim_nets = models["victim"][0] + models["victim"][1]
    t0 = time.perf_counter()
    acc_v, record.queries_per_model = accuracies(victim_nets)
    t_query = time.perf_counter() - t0

    def report(name: str, guess: np.ndarray, seconds: float, **extra: object) -> None:
        correct = int((guess == truth).sum())
        a = correct / len(truth)
        lo, hi = clopper_pearson(correct, len(truth))
        record.results[name] = {"accuracy": a, "accuracy_ci95": [lo, hi], "n_leaked": n_leaked(a, *alphas),
                                "n_leaked_ci95": [n_leaked(lo, *alphas), n_leaked(hi, *alphas)],
                                "seconds": seconds, **extra}

    if "loss" in attacks:
        # b = 0 iff the model is more accurate on data from G_0 (strict, as the reference code)
        report("loss", np.where(acc_v[:, 0] > acc_v[:, 1], 0, 1), t_query,
               rule="b = 0 iff accuracy on G_0 data > accuracy on G_1 data; no shadow models")
    if "threshold" in attacks:
        t1 = time.perf_counter()
        local = models["adversary"][0] + models["adversary"][1]
        acc_l, _ = accuracies(local)
        labels_l = np.r_[np.zeros(n_local, dtype=int), np.ones(n_local, dtype=int)]
        fits = [best_threshold(acc_l[:, d], labels_l) for d in range(2)]
        d = int(np.argmax([f[2] for f in fits]))  # chosen on the adversary's own models, never the victims'
        t, rule, own = fits[d]
        guess = ((acc_v[:, d] >= t) if rule else (acc_v[:, d] <= t)).astype(int)
        report("threshold", guess, time.perf_counter() - t1 + t_query,
               rule=f"accuracy on G_{d} data {'>=' if rule else '<='} {t:.4f} means b = 1 (accuracy {own:.3f} on "
                    f"the adversary's {2 * n_local} models)")
    if "meta" in attacks:
        t2 = time.perf_counter()
        local = models["adversary"][0] + models["adversary"][1]
        predict = meta_classifier(local, torch.cat([torch.zeros(n_local), torch.ones(n_local)]),
                                  epochs=meta_epochs, seed=seed)
        report("meta", predict(victim_nets).numpy(), time.perf_counter() - t2,
               rule=f"permutation-invariant meta-classifier on {2 * n_local} models' weights, {meta_epochs} epochs "
                    "(white box)")
    return record


def _test_set(split: tuple[torch.Tensor, torch.Tensor], alpha: float, size: int, g: torch.Generator) -> torch.Tensor:
    """Up to `size` records of the adversary's half with property share alpha (as many as the half allows)."""
    idx_p, idx_q = split
    n = min(size, int(len(idx_p) / alpha) if alpha > 0 else size,
            int(len(idx_q) / (1 - alpha)) if alpha < 1 else size)
    return sample(idx_p, idx_q, alpha, max(n, 1), g)
