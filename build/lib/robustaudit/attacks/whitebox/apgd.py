"""Auto-PGD: APGD-CE, APGD-DLR and the targeted APGD-T (spec gradient-attacks.md §3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robustaudit.attacks.base import Attack, Context, Pair, over_targets
from robustaudit.ops import losses
from robustaudit.ops.lp import per_example
from robustaudit.ops.schedules import apgd_checkpoint_periods
from robustaudit.oracle import LossFn


def apgd_single_run(
    ctx: Context, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, loss_fn: LossFn, n_iter: int,
    rho: float, key: tuple[object, ...],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run on the examples at positions idx: (last adversarial iterate or x, fooled mask)."""
    eps, oracle = ctx.threat.eps, ctx.oracle
    x0 = ctx.project(x + eps * ctx.ops.normalize(ctx.start_noise(x, idx, *key)), x)
    z, loss, g = oracle.value_and_grad(x0, idx, loss_fn)
    fooled = ctx.success(z, y, idx)
    x_out = torch.where(per_example(fooled, x), x0, x)
    x_best, loss_best, g_best = x0.clone(), loss.clone(), g.clone()
    eta = torch.full((len(x),), 2 * eps, device=x.device)
    x_prev, x_cur = x0, x0
    k, decr, k_min = apgd_checkpoint_periods(n_iter)
    cnt = 0
    reduced_last = torch.ones(len(x), dtype=torch.bool, device=x.device)
    loss_best_last = loss_best.clone()
    hist = torch.zeros(n_iter, len(x), device=x.device)  # the loss at x0 is not stored
    for i in range(n_iter):
        delta, x_prev = x_cur - x_prev, x_cur
        a = 1.0 if i == 0 else 0.75
        zstep = ctx.project(x_cur + per_example(eta, x) * ctx.ops.direction(g), x)
        x_new = ctx.project(x_cur + a * (zstep - x_cur) + (1 - a) * delta, x)
        z, loss, g = oracle.value_and_grad(x_new, idx, loss_fn)
        hist[i] = loss
        f = ctx.success(z, y, idx)
        x_out[f] = x_new[f]  # the LAST adversarial iterate is kept
        fooled |= f
        better = loss > loss_best
        x_best[better], g_best[better], loss_best[better] = x_new[better], g[better], loss[better]
        x_cur = x_new
        cnt += 1
        if cnt == k:
            js = torch.arange(i - k + 1, i + 1, device=x.device)
            rises = (hist[js] > hist[(js - 1) % n_iter]).sum(0)  # index -1 wraps to hist[N-1] (still 0)
            cond1 = rises <= rho * k
            cond2 = ~reduced_last & (loss_best_last >= loss_best)
            reduce = cond1 | cond2
            reduced_last, loss_best_last = reduce, loss_best.clone()
            eta = torch.where(reduce, eta / 2, eta)
            x_cur = torch.where(per_example(reduce, x), x_best, x_cur)
            g = torch.where(per_example(reduce, x), g_best, g)
            k, cnt = max(k - decr, k_min), 0
    return x_out, fooled


@dataclass(frozen=True, kw_only=True)
class APGD(Attack):
    """APGD-CE / APGD-DLR, Linf/L2, white box; Croce & Hein, "Reliable evaluation of adversarial robustness
    with an ensemble of diverse parameter-free attacks", ICML 2020.

    Cost: 1 fwd (clean) + restarts × (n_iter + 1) grads per example that stays robust (APGD iterates the
    whole batch; a restart only gets the examples still robust). Examples whose query budget cannot
    cover a whole run are not attacked.

    >>> APGD(loss="dlr")(model, x, y, ThreatModel(norm="l2", eps=0.5))  # doctest: +SKIP
    """

    name = "apgd-ce"
    loss: str = "ce"
    n_iter: int = 100
    restarts: int = 1
    rho: float = 0.75

    def _loss_name(self, ctx: Context) -> str:
        if self.loss == "dlr" and ctx.num_classes is not None and ctx.num_classes < 3:
            ctx.note(f"{self.name}: the DLR loss needs >= 3 classes; used the logit margin instead")
            return "margin"
        return self.loss

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_adv = x.clone()
        success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        loss_name = self._loss_name(ctx)
        for restart in range(self.restarts):
            act = (~success).nonzero()[:, 0]
            act = act[ctx.oracle.affordable(act, self.n_iter + 1)]
            if len(act) == 0:
                break
            x_r, f = apgd_single_run(
                ctx, x[act], y[act], act, ctx.loss(loss_name, y[act], act), self.n_iter, self.rho,
                (self.name, restart),
            )
            x_adv[act[f]], success[act[f]] = x_r[f], True
        return x_adv, success


@dataclass(frozen=True, kw_only=True)
class APGDDLR(APGD):
    """APGD with the DLR loss (see `APGD`)."""

    name = "apgd-dlr"
    loss: str = "dlr"


@dataclass(frozen=True, kw_only=True)
class APGDT(Attack):
    """APGD-T, Linf/L2, white box: targeted DLR against the 2nd..(n_targets+1)-th most likely classes in turn;
    Croce & Hein, ICML 2020.

    Cost per example that stays robust: n_targets × restarts × (1 fwd + n_iter + 1 grads), plus 1 fwd clean.
    With fewer than 4 classes the targeted DLR loss does not exist: targeted cross-entropy is used and the
    result says so. Under a targeted threat model it attacks the given target only.

    >>> APGDT()(model, x, y, ThreatModel(norm="linf", eps=8/255))  # doctest: +SKIP
    """

    name = "apgd-t"
    n_iter: int = 100
    n_targets: int = 9
    restarts: int = 1
    rho: float = 0.75

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def single_run(act: torch.Tensor, t: torch.Tensor, rank: int, restart: int) -> Pair:
            loss_fn = self._loss(ctx, y[act], t, ctx.num_classes or 0)
            key = (self.name, rank, restart)
            return apgd_single_run(ctx, x[act], y[act], act, loss_fn, self.n_iter, self.rho, key)

        # 1 query for the target + n_iter + 1 gradients
        return over_targets(ctx, x, self.n_targets, self.restarts, self.n_iter + 2, single_run)

    def _loss(self, ctx: Context, y: torch.Tensor, t: torch.Tensor, n_classes: int) -> LossFn:
        if 0 < n_classes < 4:
            ctx.note(f"{self.name}: the targeted DLR loss needs >= 4 classes; used targeted cross-entropy")
            return lambda z: losses.ce_targeted(z, y, t)
        return lambda z: losses.dlr_targeted(z, y, t)
