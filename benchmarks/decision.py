"""Decision-based benchmark, side by side in one run, on the demo model (40 digits, L2, label-only access):

median L2 of the smallest adversarial perturbation found within 250 and 1,000 queries, and wall time for the
1,000 queries per example, of our HSJA and CGBA against ART's and Foolbox's HopSkipJump (`make bench-peers`).

Peers are measured by a wrapper around the model that counts every row they send, records the smallest
adversarial L2 distance among them at each budget, and stops the peer at 1,000 queries. The peers run one
example at a time (so the count is per example) and start from the same adversarial points: uniform noise
found adversarial by the benchmark, outside their budget. Ours pay for their own start inside the budget.

    python benchmarks/decision.py [--ours-only] [--n 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import peer_module
from torch import nn

from robustaudit import ThreatModel, load_model
from robustaudit.attacks.registry import get
from robustaudit.demo import demo_files
from robustaudit.models import as_label_only
from robustaudit.types import Norm

BUDGETS = (250, 1000)


class _Stop(Exception):
    pass


class Budgeted(nn.Module):
    """Counts the rows a peer sends for one example, keeps the best adversarial L2 per budget, stops at the cap."""

    def __init__(self, net: nn.Module, x0: torch.Tensor, y0: int) -> None:
        super().__init__()
        self._net = [net]
        self.x0, self.y0 = x0, y0
        self.count = 0
        self.best = {b: float("inf") for b in BUDGETS}
        self.eval()

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            xb = xb.float()
            out = self._net[0](xb)
            adv = out.argmax(1) != self.y0
            dist = (xb - self.x0).flatten(1).norm(dim=1)
        for k in range(len(xb)):
            self.count += 1
            for b in BUDGETS:
                if self.count <= b and bool(adv[k]):
                    self.best[b] = min(self.best[b], float(dist[k]))
            if self.count >= max(BUDGETS):
                raise _Stop
        return out


def noise_starts(net: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    starts = x.clone()
    todo = torch.ones(len(x), dtype=torch.bool)
    with torch.no_grad():
        for _ in range(1000):
            idx = todo.nonzero()[:, 0]
            if len(idx) == 0:
                break
            u = torch.rand(len(idx), *x.shape[1:], generator=g)
            ok = net(u).argmax(1) != y[idx]
            starts[idx[ok]], todo[idx[ok]] = u[ok], False
    return starts


def run_peer(name: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor, starts: torch.Tensor
             ) -> tuple[dict[int, float], float]:
    best: dict[int, list[float]] = {b: [] for b in BUDGETS}
    seconds = 0.0
    for i in range(len(x)):
        w = Budgeted(net, x[i], int(y[i]))
        t = time.perf_counter()
        try:
            if name == "ART":
                from art.attacks.evasion import HopSkipJump as ArtHSJ
                from art.estimators.classification import PyTorchClassifier

                clf = PyTorchClassifier(w, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
                                        clip_values=(0.0, 1.0))
                ArtHSJ(clf, norm=2, max_iter=1000, verbose=False).generate(
                    x[i:i + 1].numpy(), x_adv_init=starts[i:i + 1].numpy())
            else:
                import foolbox as fb

                fmodel = fb.PyTorchModel(w, bounds=(0.0, 1.0))
                fb.attacks.HopSkipJumpAttack(steps=1000, constraint="l2").run(
                    fmodel, x[i:i + 1], fb.criteria.Misclassification(y[i:i + 1]), starting_points=starts[i:i + 1])
        except _Stop:
            pass
        seconds += time.perf_counter() - t
        for b in BUDGETS:
            best[b].append(w.best[b])
    return {b: float(np.median(v)) for b, v in best.items()}, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours-only", action="store_true")
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model_path, data_path = demo_files()
    model = load_model(str(model_path))
    d = np.load(data_path)
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"]).long()
    net = peer_module(str(model_path))
    with torch.no_grad():
        correct = (net(x).argmax(1) == y).nonzero()[:, 0][: args.n]
    x, y = x[correct], y[correct]
    rows = []
    for name in ("hsja", "cgba"):
        start = time.perf_counter()
        res = get(name)(as_label_only(model), x, y, ThreatModel(norm=Norm.L2, eps=1.5, max_queries=max(BUDGETS)))
        assert res.distance_at is not None
        rows.append((f"robustaudit {name}", {b: float(np.median(res.distance_at[b].numpy())) for b in BUDGETS},
                     time.perf_counter() - start))
    if not args.ours_only:
        starts = noise_starts(net, x, y)
        for peer in ("ART", "Foolbox"):
            try:
                medians, seconds = run_peer(peer, net, x, y, starts)
                rows.append((f"{peer} HSJA", medians, seconds))
            except ImportError:
                print(f"{peer} not installed: skipped")
    print(f"\nL2, label-only, {len(x)} correctly classified digits; median smallest L2 found within each budget")
    print(f"{'implementation':20s} " + " ".join(f"{'L2@' + str(b):>9s}" for b in BUDGETS) + f" {'seconds':>8s}")
    for impl, med, t in rows:
        print(f"{impl:20s} " + " ".join(f"{med[b]:9.3f}" for b in BUDGETS) + f" {t:8.2f}")


if __name__ == "__main__":
    main()
