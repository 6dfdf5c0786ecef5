"""Model inversion at every access level (spec model-inversion.md): what does a classifier reveal about the inputs
of each class it was trained on?

Label access: LOKT (Nguyen et al., NeurIPS 2023). Stage 1 trains a Target-model-assisted ACGAN on an unlabelled
public set: the discriminator's class head learns the target's top-1 labels of generated images (the only use of
the target), the generator learns class-conditional generation consistent with it. Stage 2 trains surrogate
classifiers on generated images labelled by the target. Stage 3 optimises the generator's latent z (the class
fixed) with the margin loss against the surrogates, under augmentations, for several seeds. Score access: the same,
with the target's probability vectors as soft labels. Gradient access: stage 3 against the target itself (its
gradients, counted), with the stage-1 generator trained on the public set alone (no target query).

One deviation, a setting: the paper weights the class loss by the same alpha in D's and G's steps; here G's weight
`alpha_g` defaults to 0.1 (D keeps alpha = 1.5), chosen by measurement: on the digits demo the evaluator's top-1
rose from 0.57 to 0.83 (mean over three stage-1 seeds). With few conditional iterations (hundreds) the weak pull
has not yet made G class-conditional; then alpha_g = alpha is the better choice.

Every target query goes through one `Oracle` (a single budget for the whole attack). Each stage checkpoints into
the output folder, so a killed run resumes where its last checkpoint was and reaches the same result.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustaudit.errors import InputError
from robustaudit.models.base import LabelModel
from robustaudit.models.torch import accuracy
from robustaudit.ops.losses import log_probabilities, neg_margin
from robustaudit.ops.rng import derive_seed, generator
from robustaudit.oracle import Oracle
from robustaudit.privacy.nets import ClassHead, Discriminator, Generator, surrogate
from robustaudit.progress import progress_bar
from robustaudit.types import Access, Bounds

SURROGATES = ((16, 2), (32, 3))  # (width, depth) of the surrogate CNNs / MLPs


@dataclass(frozen=True)
class InversionSettings:
    """The scale of each stage; the defaults run the digits demo on 2 CPU cores in minutes."""

    iterations: int = 2000  # stage 1: generator updates
    n_uncond: int = 300  # ... of which the first are a plain GAN (alpha = 0, no target query)
    n_dis: int = 2  # discriminator updates per generator update (the paper: 5)
    alpha: float = 1.5  # weight of the class loss in D's step (D learns the target's labels)
    alpha_g: float = 0.1  # ... and in G's step (the paper: alpha; see the module docstring)
    batch_size: int = 64
    z_dim: int = 16
    per_class: int = 500  # stage 2: generated images per class labelled by the target
    surrogate_epochs: int = 30
    discriminator_surrogate: bool = True  # D's class head joins the surrogates (LOKT's "D")
    steps: int = 300  # stage 3: Adam steps on z
    lr: float = 0.1
    seeds: int = 5
    samples: int = 4  # reconstructions per class and seed
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        positive = ("iterations", "n_dis", "batch_size", "z_dim", "steps", "seeds", "samples", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise InputError(f"inversion setting {name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.n_uncond <= self.iterations:
            raise InputError(f"n_uncond must lie in 0..iterations ({self.iterations}), got {self.n_uncond}")
        if self.per_class < 10 or self.surrogate_epochs < 0 or not min(self.alpha, self.alpha_g) >= 0 \
                or not math.isfinite(self.alpha + self.alpha_g + self.lr) or not self.lr > 0:
            raise InputError("per_class must be at least 10, surrogate_epochs, alpha and alpha_g at least 0, lr "
                             "positive (finite numbers)")

    def planned_queries(self, classes: int, access: Access, inverted: int | None = None) -> int:
        """Target queries the attack makes without a budget: every fake of every conditional D step, then the
        stage-2 labels (label/score access); the stage-3 gradients of the `inverted` classes (gradient access)."""
        if access >= Access.GRADIENTS:
            return self.seeds * self.steps * 2 * (classes if inverted is None else inverted) * self.samples
        return (self.iterations - self.n_uncond) * self.n_dis * self.batch_size + self.per_class * classes


@dataclass
class InversionResult:
    images: torch.Tensor  # seeds × (classes·samples) × input shape
    labels: torch.Tensor  # the class each reconstruction inverts
    random_images: torch.Tensor  # unoptimised G samples of the same classes (a baseline)
    queries: int  # target queries on the path that produced the result
    queries_total: int  # ... plus those repeated after a resume
    stage_queries: dict[str, int]
    stage_seconds: dict[str, float]
    predicted: list[int]  # per class: how often the target predicted it on generated images
    agreement: dict[str, float]  # per surrogate: agreement with the target on held-out labelled fakes
    surrogates: dict[str, nn.Module]  # the trained surrogates by name (none at gradient access)
    stopped_querying_at: int | None  # stage-1 iteration where the budget stopped the class loss


class _Target:
    """The target behind one oracle with a single budget; persists the total of every query made (a resumed run
    repeats the queries made after its last checkpoint) in `ledger`."""

    def __init__(self, model: LabelModel, classes: int, budget: int | None, ledger: Path) -> None:
        self.access, self.classes = Access(model.access), classes
        self.ledger = ledger
        self.total = json.loads(ledger.read_text())["queries_total"] if ledger.exists() else 0
        self.model, self.budget = model, budget
        self.oracle = Oracle(model, 1, max_queries=budget)

    def restore(self, path_queries: int) -> None:
        """Resume: the path's count is the checkpoint's; the budget caps every query made, repeats included."""
        self.oracle.queries[0] = path_queries
        if self.budget is not None:
            self.oracle.max_queries = torch.tensor([self.budget - (self.total - path_queries)])

    @property
    def spent(self) -> int:
        return int(self.oracle.queries[0])

    def left(self) -> int:
        return 2**62 if self.budget is None else int(self.oracle.remaining(torch.zeros(1, dtype=torch.long))[0])

    def _paid(self, n: int) -> None:
        self.total += n
        tmp = self.ledger.with_suffix(".tmp")
        tmp.write_text(json.dumps({"queries_total": self.total}))
        tmp.replace(self.ledger)

    def soft_labels(self, x: torch.Tensor) -> torch.Tensor:
        """The target's answer as a distribution: one-hot top-1 labels, or its probabilities at score access."""
        idx = torch.zeros(len(x), dtype=torch.long)
        if self.access >= Access.SCORES:
            out = log_probabilities(self.oracle.scores(x, idx)).exp()
        else:
            labels = self.oracle.labels(x, idx)
            if bool((labels >= self.classes).any()) or bool((labels < 0).any()):
                raise InputError(f"the target returned label {int(labels.max())}, outside the {self.classes} classes "
                                 "given (--num-classes)")
            out = F.one_hot(labels.long().cpu(), self.classes).float().to(x.device)
        self._paid(len(x))
        return out

    def margin_grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """White box: the margin loss on x and its gradient, through the oracle."""
        _, loss, g = self.oracle.value_and_grad(x, torch.zeros(len(x), dtype=torch.long),
                                                lambda z: neg_margin(z, y.to(z.device)))
        self._paid(len(x))
        return loss, g


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """LOKT's augmentation scaled to small inputs, differentiable: per image a random resized crop (scale 0.8-1),
    a rotation of up to 5 degrees and a shift of up to 6% (images); rows get 1% Gaussian noise. No mirror: digits
    and text are not symmetric (the paper's faces are)."""
    n = len(x)
    if x.dim() != 4:
        return x + 0.01 * torch.randn(x.shape, generator=g).to(x)
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(5)
    scale = 1 / torch.sqrt(0.8 + 0.2 * torch.rand(n, generator=g))  # zoom in: the crop covers 80-100% of the area
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.12  # 6% of the side in [-1, 1] coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load(path: Path) -> dict[str, Any] | None:
    return torch.load(path, weights_only=False) if path.exists() else None  # our own checkpoint files


def train_gan(target: _Target, public: torch.Tensor, g: Generator, d: Discriminator, s: InversionSettings,
              *, transfer: bool, reserve: int, folder: Path, seed: int, progress: Any,
              hist: torch.Tensor) -> int | None:
    """Stage 1 (T-ACGAN, `train_tacgan.py`): with `transfer`, after `n_uncond` plain-GAN iterations D's class head
    learns the target's labels of the fakes (alpha · CE) and G learns to make D see its condition (alpha_g · CE,
    against D's class head); the class loss stops (and no more queries are made) once the budget left, less
    `reserve` for stage 2, cannot label a batch.
    Returns that iteration (None when the budget sufficed). Checkpointed every `checkpoint_every` iterations."""
    device = public.device
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.0, 0.9))
    rng = generator(seed, "tacgan")
    start, stopped = 0, None
    path = folder / "gan.pt"
    state = _load(path)
    if state is not None:
        g.load_state_dict(state["g"])
        d.load_state_dict(state["d"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        rng.set_state(state["rng"])
        hist.copy_(state["hist"])
        start, stopped = state["iteration"], state["stopped"]
        target.restore(state["queries"])
    k, bs = len(hist), s.batch_size
    ones, zeros = torch.ones(bs, device=device), torch.zeros(bs, device=device)

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(bs, s.z_dim, generator=rng).to(device), torch.randint(k, (bs,), generator=rng).to(device)

    task = progress.add_task("inversion, stage 1: T-ACGAN", total=s.iterations, completed=start)
    g.train()
    d.train()
    for it in range(start, s.iterations):
        conditional = transfer and it >= s.n_uncond and stopped is None
        if conditional and target.left() - reserve < bs:
            stopped, conditional = it, False
        alpha = s.alpha if conditional else 0.0
        for _ in range(s.n_dis):
            real = public[torch.randint(len(public), (bs,), generator=rng).to(device)]
            z, y_tilde = sample()
            with torch.no_grad():
                fake = g(z, y_tilde)
            rf_real, _ = d(real)
            rf_fake, cls_fake = d(fake)
            loss = F.binary_cross_entropy_with_logits(rf_real, ones) + \
                F.binary_cross_entropy_with_logits(rf_fake, zeros)
            if alpha > 0:
                y_hat = target.soft_labels(fake)
                hist += torch.bincount(y_hat.argmax(1).cpu(), minlength=k)
                loss = loss + alpha * F.cross_entropy(cls_fake, y_hat)
            opt_d.zero_grad()
            loss.backward()
            opt_d.step()
        z, y_tilde = sample()
        rf, cls = d(g(z, y_tilde))
        loss = F.binary_cross_entropy_with_logits(rf, ones)
        if alpha > 0 and s.alpha_g > 0:
            loss = loss + s.alpha_g * F.cross_entropy(cls, y_tilde)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        if (it + 1) % s.checkpoint_every == 0 or it + 1 == s.iterations:
            _save(path, {"g": g.state_dict(), "d": d.state_dict(), "opt_g": opt_g.state_dict(),
                         "opt_d": opt_d.state_dict(), "rng": rng.get_state(), "hist": hist, "iteration": it + 1,
                         "stopped": stopped, "queries": target.spent})
        progress.advance(task)
    g.eval()
    d.eval()
    return stopped


def train_surrogates(target: _Target, g: Generator, d: Discriminator, s: InversionSettings, *, classes: int,
                     folder: Path, seed: int, progress: Any, hist: torch.Tensor,
                     ) -> tuple[dict[str, nn.Module], dict[str, float]]:
    """Stage 2 (`create_dataset.py`, `train_surrogate_model.py`): `per_class` fakes per class labelled by the
    target; each surrogate trained on them with 0.5·CE(S(x)) + 0.5·CE(S(aug x)), SGD 0.1, momentum 0.9, weight
    decay 5e-4, cosine schedule; agreement with the target measured on a held-out tenth."""
    shape = g.shape
    path = folder / "surrogates.pt"
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(seed, "surrogate nets"))
        nets = [surrogate(shape, classes, w, depth) for w, depth in SURROGATES]
    device = next(g.parameters()).device
    state = _load(path)
    if state is not None:
        for net, sd in zip(nets, state["nets"], strict=True):
            net.load_state_dict(sd)
        hist.copy_(state["hist"])
        target.restore(state["queries"])
        agreement = state["agreement"]
    else:
        rng = generator(seed, "surrogates")
        xs, ps = [], []
        with torch.no_grad():
            for c in range(classes):
                z = torch.randn(s.per_class, s.z_dim, generator=rng).to(device)
                x = g(z, torch.full((s.per_class,), c, device=device))
                xs.append(x)
                ps.append(target.soft_labels(x))
        x, p = torch.cat(xs), torch.cat(ps)
        hist += torch.bincount(p.argmax(1).cpu(), minlength=classes)
        order = torch.randperm(len(x), generator=rng).to(device)
        held = order[: len(x) // 10]
        train = order[len(x) // 10:]
        task = progress.add_task("inversion, stage 2: surrogates", total=len(nets) * max(s.surrogate_epochs, 1))
        for net in nets:
            net.to(device)
            if s.surrogate_epochs > 0:
                _fit(net, x[train], p[train], s.surrogate_epochs, rng, progress, task)
        agreement = {name: accuracy(net, x[held], p[held].argmax(1)) for name, net in _named(nets, d, s).items()}
        _save(path, {"nets": [n.state_dict() for n in nets], "hist": hist, "queries": target.spent,
                     "agreement": agreement})
    return _named([n.to(device) for n in nets], d, s), agreement


def _named(nets: Sequence[nn.Module], d: Discriminator, s: InversionSettings) -> dict[str, nn.Module]:
    """The surrogates in eval mode by the names the results use; D's class head last when it is one of them."""
    out: dict[str, nn.Module] = {f"surrogate{i}": n.eval() for i, n in enumerate(nets)}
    if s.discriminator_surrogate:
        out["discriminator"] = ClassHead(d).eval()
    return out


def _fit(net: nn.Module, x: torch.Tensor, p: torch.Tensor, epochs: int, rng: torch.Generator, progress: Any,
         task: Any) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    batches = math.ceil(len(x) / 64)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * batches)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=rng).to(x.device).split(64):
            loss = 0.5 * F.cross_entropy(net(x[idx]), p[idx]) + 0.5 * F.cross_entropy(net(augment(x[idx], rng)), p[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        progress.advance(task)


def invert(g: Generator, classes: Sequence[int], s: InversionSettings, *, seed: int, folder: Path, progress: Any,
           surrogates: Sequence[nn.Module] | None = None, target: _Target | None = None) -> torch.Tensor:
    """Stage 3 (`plg_tacgan.py::inversion`): per seed, fresh z for `samples` images of each class, Adam on z only
    against the margin loss (max_{j != k} logit_j - logit_k) summed over two augmentations and averaged over the
    surrogates, or taken through the target's own gradients (white box). Each seed's result is checkpointed."""
    device = next(g.parameters()).device
    y = torch.tensor(classes, device=device).repeat_interleave(s.samples)
    task = progress.add_task("inversion, stage 3: latent optimisation", total=s.seeds * s.steps)
    out = []
    for k in range(s.seeds):
        path = folder / f"inversion_seed{k}.pt"
        state = _load(path)
        if state is not None:
            if target is not None:
                target.restore(state["queries"])
            out.append(state["images"])
            progress.advance(task, s.steps)
            continue
        rng = generator(seed, "inversion", k)
        z = torch.randn(len(y), s.z_dim, generator=rng).to(device).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=s.lr)
        for _ in range(s.steps):
            x = g(z, y)
            views = [augment(x, rng), augment(x, rng)]
            opt.zero_grad()
            if target is not None:
                for v in views:
                    _, grad = target.margin_grad(v.detach(), y)
                    v.backward(grad, retain_graph=True)
            else:
                loss = sum(neg_margin(net(v), y).sum() for net in surrogates or () for v in views)
                (loss / max(len(surrogates or ()), 1)).backward()  # type: ignore[union-attr]
            opt.step()
            progress.advance(task)
        with torch.no_grad():
            images = g(z, y).detach()
        _save(path, {"images": images, "queries": None if target is None else target.spent})
        out.append(images)
    return torch.stack(out)


def inversion_attack(target_model: LabelModel, public: torch.Tensor, classes: int, invert_classes: Sequence[int],
                     bounds: Bounds, settings: InversionSettings, *, budget: int | None, folder: Path, seed: int = 0,
                     progress: bool = False) -> InversionResult:
    """Run the stages for the target's access level (see the module docstring) into `folder`, resuming whatever
    it already holds; `budget` caps every target query of the attack."""
    if public.dim() not in (2, 4):
        raise InputError(f"the public set must hold images N×C×H×W or rows N×D, got shape {tuple(public.shape)}")
    access = Access(target_model.access)
    s = settings
    plan = s.planned_queries(classes, access, len(invert_classes))
    if budget is not None and budget < 1:
        raise InputError(f"the budget must allow at least one target query, got {budget}")
    if budget is not None and access < Access.GRADIENTS and budget < s.per_class * classes + s.batch_size:
        raise InputError(f"a budget of {budget} target queries cannot label the surrogates' training set "
                         f"({s.per_class} per class × {classes} = {s.per_class * classes}) and one stage-1 batch: give "
                         f"at least {s.per_class * classes + s.batch_size} or lower per_class")
    if budget is not None and access >= Access.GRADIENTS and budget < plan:
        raise InputError(f"white-box inversion needs {plan} target gradients ({s.seeds} seeds × {s.steps} steps × 2 "
                         f"views × {len(invert_classes) * s.samples} images); the budget is {budget}")
    folder.mkdir(parents=True, exist_ok=True)
    config = {"settings": asdict(s), "classes": classes, "invert": list(invert_classes), "seed": seed,
              "budget": budget, "access": access.name.lower(), "shape": list(public.shape[1:])}
    cfg_path = folder / "inversion-config.json"
    if cfg_path.exists() and json.loads(cfg_path.read_text()) != config:
        raise InputError(f"{folder} holds a run with other settings: give another --out, or the same settings to "
                         "resume it")
    cfg_path.write_text(json.dumps(config, indent=2))
    target = _Target(target_model, classes, budget, folder / "queries.json")
    shape = tuple(public.shape[1:])
    device = public.device
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(seed, "nets"))
        g = Generator(shape, classes, bounds, s.z_dim).to(device)
        d = Discriminator(shape, classes).to(device)
    hist = torch.zeros(classes, dtype=torch.long)
    seconds, stage_queries = {}, {}
    white_box = access >= Access.GRADIENTS
    reserve = 0 if white_box else s.per_class * classes
    with progress_bar(progress) as bar:
        t = time.perf_counter()
        stopped = train_gan(target, public, g, d, s, transfer=not white_box, reserve=reserve, folder=folder,
                            seed=seed, progress=bar, hist=hist)
        seconds["gan"], stage_queries["gan"] = time.perf_counter() - t, target.spent
        t = time.perf_counter()
        agreement: dict[str, float] = {}
        nets: dict[str, nn.Module] = {}
        if white_box:
            images = invert(g, invert_classes, s, seed=seed, folder=folder, progress=bar, target=target)
        else:
            nets, agreement = train_surrogates(target, g, d, s, classes=classes, folder=folder, seed=seed,
                                               progress=bar, hist=hist)
            seconds["surrogates"], stage_queries["surrogates"] = time.perf_counter() - t, \
                target.spent - stage_queries["gan"]
            t = time.perf_counter()
            images = invert(g, invert_classes, s, seed=seed, folder=folder, progress=bar,
                            surrogates=list(nets.values()))
        seconds["inversion"] = time.perf_counter() - t
        stage_queries["inversion"] = target.spent - sum(stage_queries.values())
    y = torch.tensor(list(invert_classes), device=device).repeat_interleave(s.samples)
    with torch.no_grad():
        rng = generator(seed, "random samples")
        random_images = g(torch.randn(len(y), s.z_dim, generator=rng).to(device), y)
    return InversionResult(images=images, labels=y.cpu(), random_images=random_images, queries=target.spent,
                           queries_total=target.total, stage_queries=stage_queries, stage_seconds=seconds,
                           predicted=hist.tolist(), agreement=agreement, surrogates=nets,
                           stopped_querying_at=stopped)


def evaluate_reconstructions(images: torch.Tensor, labels: torch.Tensor, scores: Callable[[torch.Tensor],
                             torch.Tensor]) -> dict[str, Any]:
    """The evaluator's top-1 / top-5 accuracy on each seed's reconstructions; mean with a t-interval over seeds."""
    from scipy import stats

    top1, top5 = [], []
    for batch in images:
        z = scores(batch).cpu()
        k = min(5, z.shape[1])
        top1.append(float((z.argmax(1) == labels).float().mean()))
        top5.append(float((z.topk(k, 1).indices == labels[:, None]).any(1).float().mean()))

    def summary(v: list[float]) -> dict[str, Any]:
        mean = sum(v) / len(v)
        if len(v) < 2:
            return {"mean": mean, "ci95": None, "per_seed": v}
        sd = (sum((a - mean) ** 2 for a in v) / (len(v) - 1)) ** 0.5
        half = float(stats.t.ppf(0.975, len(v) - 1)) * sd / len(v) ** 0.5
        return {"mean": mean, "ci95": [max(0.0, mean - half), min(1.0, mean + half)], "per_seed": v}

    return {"top1": summary(top1), "top5": summary(top5)}


def knn_distance(recon: torch.Tensor, labels: torch.Tensor, private_x: torch.Tensor, private_y: torch.Tensor,
                 features: Callable[[torch.Tensor], torch.Tensor]) -> float | None:
    """Mean squared L2 distance, in `features` space, from each reconstruction to the nearest private example of
    its class (None when the private set holds none of these classes)."""
    fr, fp = features(recon).flatten(1), features(private_x).flatten(1)
    out = []
    for c in labels.unique().tolist():
        mine, theirs = fr[labels == c], fp[private_y.to(fp.device) == c]
        if len(theirs):
            out.append(torch.cdist(mine, theirs).pow(2).amin(1))
    return None if not out else float(torch.cat(out).mean())
