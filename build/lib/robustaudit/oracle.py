"""The oracle: the only door from an attack to the model.

It counts, per example, every forward pass (`queries`) and every forward+backward pass (`gradients`;
each gradient's forward is also a query), and enforces a hard per-example query budget: a call that
would take any example past its budget raises `BudgetExhausted` before the model runs, so attacks ask
`affordable()` first and drop exhausted examples from their active set. An audit keeps one oracle per
shard: the clean check, target choice, labelling, diagnostics, every attack and every verification are
paid from it (through `sub` oracles whose counts it `absorb`s), so the budget is the total per example.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from robustaudit.errors import AccessError, BudgetExhausted, InputError
from robustaudit.models.base import LabelModel, MapModel
from robustaudit.types import Access

LossFn = Callable[[torch.Tensor], torch.Tensor]


class Oracle:
    """Counted, budgeted access to `model` for `n` examples, addressed by position 0..n-1."""

    def __init__(
        self, model: LabelModel, n: int, *, max_queries: int | torch.Tensor | None = None
    ) -> None:
        self.model = model
        self.access = Access(model.access)
        self.n = n
        # per-example budget (one number for all, or what each example has left of a cascade's budget)
        self.max_queries = None if max_queries is None else torch.as_tensor(max_queries, dtype=torch.long).expand(n)
        self.queries = torch.zeros(n, dtype=torch.long)
        self.gradients = torch.zeros(n, dtype=torch.long)

    def sub(self, idx: torch.Tensor, model: LabelModel | None = None) -> Oracle:
        """An oracle for the examples at idx (addressed 0..len(idx)-1) that may spend what each has left here,
        through `model` (default: this oracle's; an adapted view of it); `absorb` adds what it spent back."""
        left = None if self.max_queries is None else self.budget_left(idx).clamp(min=0)
        return Oracle(self.model if model is None else model, len(idx), max_queries=left)

    def absorb(self, idx: torch.Tensor, queries: torch.Tensor, gradients: torch.Tensor | None = None) -> None:
        """Add the passes spent on the examples at idx through another oracle (a sub-oracle, an attack's own)."""
        i = idx.cpu()
        self.queries[i] += queries.cpu()
        if gradients is not None:
            self.gradients[i] += gradients.cpu()

    def limit(self, max_queries: int) -> None:
        """Lower the per-example budget to an attack's own query cap (never raises it)."""
        cap = torch.full((self.n,), max_queries, dtype=torch.long)
        self.max_queries = cap if self.max_queries is None else torch.minimum(self.max_queries, cap)

    @contextmanager
    def reserved(self, n: int) -> Iterator[None]:
        """Hold back n queries of every example's budget for the duration (e.g. a final confirmation)."""
        if self.max_queries is None:
            yield
            return
        self.max_queries = self.max_queries - n
        try:
            yield
        finally:
            self.max_queries = self.max_queries + n

    def budget_left(self, idx: torch.Tensor) -> torch.Tensor:
        """Model passes each example in idx may still spend (a large number when there is no budget): what a
        budget handed down to another oracle is made of."""
        if self.max_queries is None:
            return torch.full((len(idx),), 2**62, dtype=torch.long)
        i = idx.cpu()
        return self.max_queries[i] - self.queries[i]

    def remaining(self, idx: torch.Tensor) -> torch.Tensor:
        """Queries each example in idx may still make through this oracle's model; a model that runs several
        passes per query (EOT) affords fewer (counted at its costliest kind of query)."""
        unit = max(self.model.passes(k) for k in ("scores", "labels", "gradients")) \
            if hasattr(self.model, "passes") else 1
        return self.budget_left(idx) // unit

    def affordable(self, idx: torch.Tensor, cost: int = 1) -> torch.Tensor:
        """Mask over idx of the examples that can still pay `cost` queries."""
        return (self.remaining(idx) >= cost).to(idx.device)

    def _counts(self, idx: torch.Tensor, kind: str = "scores") -> torch.Tensor:
        """Per-example counts of a call on idx, refused before the model runs if any budget would be passed. A
        model that runs several passes per query (EOT) says how many with `passes(kind)`."""
        passes = self.model.passes(kind) if hasattr(self.model, "passes") else 1
        counts = torch.bincount(idx.cpu(), minlength=self.n) * passes
        if self.max_queries is not None and bool((((self.queries + counts) > self.max_queries) & (counts > 0)).any()):
            raise BudgetExhausted("an attack asked for a query beyond an example's budget")
        return counts

    def _charge(self, counts: torch.Tensor, *, grad: bool) -> None:
        """Count a call once the model answered it (a remote call that failed for good is not counted)."""
        self.queries += counts
        if grad:
            self.gradients += counts

    def extra_backward(self, idx: torch.Tensor) -> None:
        """Count one more backward pass through the model's output for idx, within the current forward pass (e.g.
        an interpreter's gradient inside a loss): a gradient, not a new query."""
        self._need(Access.GRADIENTS, "computing gradients")
        self.gradients += torch.bincount(idx.cpu(), minlength=self.n)

    def _need(self, level: Access, what: str) -> None:
        if self.access < level:
            raise AccessError(f"{what} needs {level.name.lower()} access but the model offers only "
                              f"{self.access.name.lower()}")

    def scores(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Scores (logits) of x, one row per entry of idx; costs one query per row."""
        self._need(Access.SCORES, "reading scores")
        if len(idx) == 0:
            return torch.zeros(0, 0, device=x.device)
        counts = self._counts(idx)
        out = self.model.predict_scores(x).to(x.device)  # type: ignore[attr-defined]
        self._charge(counts, grad=False)
        return out

    def scores_and_maps(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and attribution maps of x from an interpretable system; one query per row."""
        self._need(Access.SCORES, "reading scores")
        if not isinstance(self.model, MapModel):
            raise AccessError("this attack option needs a model that returns attribution maps with its scores")
        counts = self._counts(idx)
        z, maps = self.model.predict_scores_and_maps(x)
        self._charge(counts, grad=False)
        return z.to(x.device), maps.to(x.device)

    def labels(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Top-1 labels of x; costs one query per row."""
        if len(idx) == 0:
            return torch.zeros(0, dtype=torch.long, device=x.device)
        counts = self._counts(idx, "labels")
        out = self.model.predict_labels(x).to(x.device)
        self._charge(counts, grad=False)
        return out

    def value_and_grad(
        self, x: torch.Tensor, idx: torch.Tensor, loss_fn: LossFn
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, per-example loss, d sum(loss) / dx) at x; costs one gradient (and one query) per row."""
        self._need(Access.GRADIENTS, "computing gradients")
        if len(idx) == 0:
            e = torch.zeros(0, device=x.device)
            return torch.zeros(0, 0, device=x.device), e, torch.zeros_like(x)
        counts = self._counts(idx, "gradients")
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            z = self.model.logits(xg)  # type: ignore[attr-defined]
            loss = loss_fn(z)
            g = torch.autograd.grad(loss.sum(), xg, allow_unused=True)[0] if loss.requires_grad else None
        if g is None:
            raise InputError(
                "the model's output is not differentiable with respect to its input; "
                "audit it with a score-based attack (--access scores) instead"
            )
        self._charge(counts, grad=True)
        return z.detach().float(), loss.detach(), g.detach()
