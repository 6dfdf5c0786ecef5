"""Side-by-side benchmark on the golden digits CNN (shared/golden) or the demo model, in one run.

Prints, for Linf eps=0.1 on 360 digits with 2 torch threads: the floor (20 forward+backward passes of the
whole batch); our PGD-20 and APGD-CE against torchattacks, ART and Foolbox (wall time as a multiple of the
floor, robust accuracy); our `fast`, `standard` and `strongest` presets against torchattacks' AutoAttack.
Peers are used only when installed (`make bench-peers` installs them into .venv-peers).

    python benchmarks/peers.py [--model M --data D.npz] [--ours-only] [--skip-presets]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import peer_module, robust_accuracy

from robustaudit import ThreatModel, evaluate, load_model
from robustaudit.attacks.whitebox.apgd import APGD
from robustaudit.attacks.whitebox.pgd import PGD
from robustaudit.demo import demo_files
from robustaudit.models import TorchModel

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: shared/golden/digits_cnn.pt, else the demo model")
    ap.add_argument("--data", default=None)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ours-only", action="store_true")
    ap.add_argument("--skip-presets", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model is None:
        if (GOLDEN / "digits_cnn.pt").is_file():
            args.model, args.data = str(GOLDEN / "digits_cnn.pt"), str(GOLDEN / "digits_test.npz")
        else:
            m, d = demo_files()
            args.model, args.data = str(m), str(d)
    model = load_model(args.model)
    if not isinstance(model, TorchModel):
        raise SystemExit("the benchmark needs a white-box torch model")
    net = peer_module(args.model)
    data = np.load(args.data)
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"]).long()
    eps = args.eps
    threat = ThreatModel(eps=eps)
    rows: list[Row] = []

    def floor() -> torch.Tensor:
        for _ in range(20):
            xg = x.clone().requires_grad_(True)
            torch.nn.functional.cross_entropy(net(xg), y).backward()
        return x

    floor()  # warm-up
    _, t_floor = timed(floor)
    print(f"model {args.model}, {len(x)} examples, eps {eps}, {args.threads} threads; floor {t_floor:.2f} s")

    def ours(attack: object) -> Callable[[], torch.Tensor]:
        return lambda: attack(model, x, y, threat, seed=0).x_adv  # type: ignore[operator]

    for label, fn in [("PGD-20", ours(PGD(steps=20))), ("APGD-CE 20", ours(APGD(n_iter=20))),
                      ("APGD-CE 100", ours(APGD(n_iter=100)))]:
        adv, t = timed(fn)
        rows.append((label, "robustaudit", robust_accuracy(net, x, y, adv), t))

    if not args.ours_only:
        rows += peer_rows(net, x, y, eps)

    if not args.skip_presets:
        for preset in ("fast", "standard", "strongest"):
            start = time.perf_counter()
            rec = evaluate(model, x, y, threat, preset, seed=0, checks=False)
            rows.append((f"preset {preset}", "robustaudit", rec.robust_accuracy, time.perf_counter() - start))
        if not args.ours_only:
            try:
                import torchattacks

                aa = torchattacks.AutoAttack(net, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
                adv, t = timed(lambda: aa(x, y))
                rows.append(("AutoAttack standard", "torchattacks", robust_accuracy(net, x, y, adv), t))
            except ImportError:
                print("torchattacks not installed: skipped its AutoAttack")

    print(f"\n{'attack':22s} {'implementation':14s} {'RA':>6s} {'seconds':>8s} {'floors':>7s}")
    for label, impl, ra, t in rows:
        print(f"{label:22s} {impl:14s} {ra:6.3f} {t:8.2f} {t / t_floor:7.2f}")


Row = tuple[str, str, float, float]


def peer_rows(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> list[Row]:
    rows: list[Row] = []
    alpha = 2.5 * eps / 20
    try:
        import torchattacks

        pgd = torchattacks.PGD(net, eps=eps, alpha=alpha, steps=20, random_start=True)
        adv, t = timed(lambda: pgd(x, y))
        rows.append(("PGD-20", "torchattacks", robust_accuracy(net, x, y, adv), t))
        apgd = torchattacks.APGD(net, norm="Linf", eps=eps, steps=20, n_restarts=1, loss="ce", seed=0)
        adv, t = timed(lambda: apgd(x, y))
        rows.append(("APGD-CE 20", "torchattacks", robust_accuracy(net, x, y, adv), t))
    except ImportError:
        print("torchattacks not installed: skipped")
    try:
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier

        clf = PyTorchClassifier(net, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
                                clip_values=(0.0, 1.0))
        art_pgd = ProjectedGradientDescentPyTorch(clf, norm=np.inf, eps=eps, eps_step=alpha, max_iter=20,
                                                  num_random_init=1, batch_size=len(x), verbose=False)
        adv, t = timed(lambda: torch.from_numpy(art_pgd.generate(x.numpy(), y.numpy())))
        rows.append(("PGD-20", "ART", robust_accuracy(net, x, y, adv), t))
    except ImportError:
        print("adversarial-robustness-toolbox not installed: skipped")
    try:
        import foolbox

        fmodel = foolbox.PyTorchModel(net, bounds=(0, 1))
        fb_pgd = foolbox.attacks.LinfPGD(abs_stepsize=alpha, steps=20, random_start=True)
        adv, t = timed(lambda: fb_pgd(fmodel, x, y, epsilons=eps)[1])
        rows.append(("PGD-20", "Foolbox", robust_accuracy(net, x, y, adv), t))
    except ImportError:
        print("foolbox not installed: skipped")
    return rows


if __name__ == "__main__":
    main()
