"""`robustaudit harden`: the inner maximisation against the closed form of a linear model, exact resume, PubDef's
source game, the convex program against cvxpy's optimum and PGD, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import linear_model
from torch import nn
from typer.testing import CliRunner

from robustaudit.cli import app
from robustaudit.defend.adversarial import inner_max, pgd_at_loss, trades_loss
from robustaudit.defend.loop import train
from robustaudit.defend.pubdef import choose_sources, pubdef_loss, transfer_copy
from robustaudit.errors import InputError
from robustaudit.models.load import as_model
from robustaudit.threat import ThreatModel
from robustaudit.types import Bounds, Norm


@pytest.mark.parametrize("norm", [Norm.LINF, Norm.L2])
def test_inner_max_stays_in_the_ball_and_climbs(norm: Norm) -> None:
    net = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = torch.rand(32, 12), torch.randint(0, 3, (32,))
    threat = ThreatModel(norm=norm, eps=0.3 if norm is Norm.LINF else 1.0, bounds=Bounds(0, 1))
    adv = inner_max(net, x, x.clone(), lambda z: F.cross_entropy(z, y, reduction="sum"), threat, steps=10)
    dist = (adv - x).abs().amax(1) if norm is Norm.LINF else (adv - x).norm(dim=1)
    assert float(dist.max()) <= threat.eps + 1e-6 and float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert F.cross_entropy(net(adv), y) > F.cross_entropy(net(x), y)


def test_pgd_at_loss_is_the_closed_form_worst_case_of_a_linear_model() -> None:
    """For logits Wx + b the worst Linf perturbation of the cross-entropy of two classes is the corner
    -eps·sign(w_y - w_other): PGD-AT's loss must equal the cross-entropy there."""
    lin = linear_model(20, 2, seed=3)
    x, y = torch.rand(64, 20) * 2 - 1, torch.randint(0, 2, (64,))
    eps = 0.2
    threat = ThreatModel(norm=Norm.LINF, eps=eps, bounds=Bounds(-10, 10))
    got = pgd_at_loss(lin, x, y, threat, steps=5, gen=torch.Generator().manual_seed(0))
    w = lin.weight.detach()
    direction = (w[y] - w[1 - y]).sign()
    exact = F.cross_entropy(lin(x - eps * direction), y)
    assert abs(float(got.detach()) - float(exact.detach())) < 1e-5
    assert float(got) > float(F.cross_entropy(lin(x), y))


def test_trades_is_cross_entropy_when_the_prediction_cannot_move() -> None:
    """A model that ignores its input has KL 0 in every ball: TRADES reduces to the natural cross-entropy."""
    bias = nn.Parameter(torch.randn(4))
    net = nn.Module()
    net.forward = lambda x: bias.expand(len(x), 4) + 0 * x.sum(1, keepdim=True)  # type: ignore[method-assign]
    x, y = torch.rand(8, 5), torch.randint(0, 4, (8,))
    threat = ThreatModel(norm=Norm.LINF, eps=0.1)
    got = trades_loss(net, x, y, threat, steps=3, gen=torch.Generator().manual_seed(0))
    assert abs(float(got) - float(F.cross_entropy(bias.expand(8, 4), y))) < 1e-6


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


def test_a_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    x, y = torch.rand(100, 10), torch.randint(0, 3, (100,))

    def loss(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return F.cross_entropy(m(xb + 0.01 * torch.randn(xb.shape, generator=g)), yb)

    whole = _mlp()
    log = train(whole, loss, x, y, epochs=3, folder=tmp_path / "a", tag="t", settings={"k": 1}, batch_size=16)
    part = _mlp()
    train(part, loss, x, y, epochs=1, folder=tmp_path / "b", tag="t", settings={"k": 1}, batch_size=16)
    torch.manual_seed(123)  # the global stream moved on, as in a new process
    resumed = _mlp()
    log2 = train(resumed, loss, x, y, epochs=3, folder=tmp_path / "b", tag="t", settings={"k": 1}, batch_size=16)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [e["loss"] for e in log] == [e["loss"] for e in log2]
    assert len((tmp_path / "b" / "t.log.jsonl").read_text().splitlines()) == 3
    with pytest.raises(InputError, match="other settings"):
        train(_mlp(), loss, x, y, epochs=3, folder=tmp_path / "b", tag="t", settings={"k": 2})


def test_pubdef_game_picks_one_source_per_group() -> None:
    """Two groups whose examples fool each other inside the group and not across: the worst attacker is covered
    only by one source of each group."""
    a = torch.full((5, 5), 0.9)
    for group in ([0, 1, 2], [3, 4]):
        for i in group:
            for j in group:
                a[i, j] = 0.1
    chosen = choose_sources(a, 2)
    assert len(chosen) == 2 and sum(c < 3 for c in chosen) == 1
    assert choose_sources(a, 9) == [0, 1, 2, 3, 4]


def test_pubdef_copies_and_loss() -> None:
    lin = linear_model(16, 3, seed=1)
    model = as_model(lin)
    x, y = torch.rand(40, 16), torch.randint(0, 3, (40,))
    threat = ThreatModel(norm=Norm.LINF, eps=0.1)
    adv = transfer_copy(model, x, y, threat, seed=0, batch_size=16)  # type: ignore[arg-type]
    assert float((adv - x).abs().max()) <= 0.1 + 1e-6 and float(adv.min()) >= 0
    assert F.cross_entropy(lin(adv), y) > F.cross_entropy(lin(x), y)
    assert torch.equal(adv, transfer_copy(model, x, y, threat, seed=0, batch_size=16))  # type: ignore[arg-type]
    same = pubdef_loss(lin, x, [x, x], y)
    assert abs(float(same) - float(F.cross_entropy(lin(x), y))) < 1e-6
    mixed = pubdef_loss(lin, x, [adv], y)
    expected = 0.5 * F.cross_entropy(lin(x), y) + 0.5 * F.cross_entropy(lin(adv), y)
    assert abs(float(mixed) - float(expected)) < 1e-6


def _breast_cancer(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = ((d.data - d.data.min(0)) / (d.data.max(0) - d.data.min(0))).astype(np.float32)
    idx = np.random.default_rng(seed).permutation(len(x))
    return x[idx[:n]], d.target[idx[:n]], x[idx[n:]], d.target[idx[n:]]


def _pgd_hinge(net: nn.Module, x: torch.Tensor, t: torch.Tensor, eps: float) -> torch.Tensor:
    """Per example, the largest hinge loss PGD finds in the Linf ball (random restarts)."""
    best = torch.zeros(len(x))
    for r in range(5):
        g = torch.Generator().manual_seed(r)
        delta = (torch.rand(x.shape, generator=g) * 2 - 1) * eps
        for _ in range(40):
            delta.requires_grad_(True)
            z = net(x + delta)
            margin = z[:, 1] - z[:, 0]
            (grad,) = torch.autograd.grad((-t * margin).sum(), delta)
            delta = (delta + eps / 8 * grad.sign()).clamp(-eps, eps).detach()
        with torch.no_grad():
            z = net(x + delta)
            best = torch.maximum(best, torch.relu(1 - t * (z[:, 1] - z[:, 0])))
    return best


def test_convex_optimum_is_the_recovered_networks_objective_and_the_robust_bound_holds() -> None:
    pytest.importorskip("cvxpy")
    from robustaudit.defend.convex import solve

    x, y, _, _ = _breast_cancer(120)
    plain = solve(x, y, 2, patterns=8, beta=1e-3)
    net = plain.network
    assert net.width > 0
    assert abs(net.objective(x, y, 1e-3) - plain.optimum) <= 1e-4 * plain.optimum
    with torch.no_grad():  # the exported module computes the same network on raw inputs
        z = net.module()(torch.from_numpy(x))
    assert np.allclose((z[:, 1] - z[:, 0]).numpy(), net.outputs(x)[:, 0], atol=1e-4)
    eps = 0.05
    robust = solve(x, y, 2, eps=eps, patterns=8, beta=1e-3)
    bound = robust.network.robust_hinge(x, y, eps)
    reg = 1e-3 / 2 * ((robust.network.u ** 2).sum() + (robust.network.a ** 2).sum())
    assert abs(bound.mean() + reg - robust.optimum) <= 1e-4 * robust.optimum
    found = _pgd_hinge(robust.network.module().double(), torch.from_numpy(x).double(),
                       torch.from_numpy(2.0 * y - 1), eps)
    assert bool((found.numpy() <= bound + 1e-6).all())
    assert float(found.max()) > 0  # the attack does move the hinge: the bound is not vacuous by construction


def test_convex_is_no_worse_than_the_network_it_starts_from() -> None:
    pytest.importorskip("cvxpy")
    from robustaudit.defend.convex import solve, train_nonconvex

    x, y, _, _ = _breast_cancer(150, seed=1)
    warm = train_nonconvex(x, y, 2, width=8, beta=1e-3, seed=0, steps=1500)
    r = solve(x, y, 2, patterns=4, beta=1e-3, warm=warm)
    assert r.optimum <= warm.objective(x, y, 1e-3) + 1e-6


def _write_mlp_recipe(folder: Path) -> str:
    path = folder / "recipe.py"
    path.write_text("import torch\nfrom torch import nn\n\n\ndef net(n_classes):\n    torch.manual_seed(0)\n"
                    "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, n_classes))\n")
    return f"{path}:net"


def test_harden_cli_pgd_at_writes_the_layout_and_resumes(tmp_path: Path,
                                                         digits8: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = digits8
    np.savez(tmp_path / "train.npz", x=x[:600].numpy(), y=y[:600].numpy())
    np.savez(tmp_path / "test.npz", x=x[1400:1440].numpy(), y=y[1400:1440].numpy())
    recipe = _write_mlp_recipe(tmp_path)
    args = ["harden", "--method", "pgd-at", "--data", str(tmp_path / "train.npz"), "--test",
            str(tmp_path / "test.npz"), "--recipe", recipe, "--eps", "0.1", "--epochs", "2", "--steps", "3",
            "--audit", "pgd", "--out", str(tmp_path / "out"), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    for name in ("model.pt2", "unhardened.pt2", "harden.json", "summary.md", "report.html", "pgd-at.log.jsonl",
                 "unhardened.log.jsonl", "audit/hardened/results.json", "audit/unhardened/results.json"):
        assert (out / name).is_file(), name
    doc = json.loads((out / "harden.json").read_text())
    assert set(doc["audit"]) == {"unhardened", "hardened"} and len(doc["log"]) == 2
    hardened = json.loads((out / "audit/hardened/results.json").read_text())
    assert abs(hardened["robust_accuracy"] - doc["audit"]["hardened"]["robust_accuracy"]) < 1e-12
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len((out / "pgd-at.log.jsonl").read_text().splitlines()) == 2  # resumed: no epoch trained twice
    assert json.loads((out / "harden.json").read_text())["audit"] == doc["audit"]


@pytest.mark.parametrize("extra, message", [
    (["--method", "bogus", "--recipe", "X"], "--method must be one of"),
    (["--method", "pgd-at"], "needs --recipe"),
    (["--method", "pubdef", "--recipe", "R"], "at least one --sources"),
    (["--method", "convex", "--norm", "l2"], "linf"),
    (["--method", "trades", "--recipe", "BAD"], "fails on inputs shaped (1, 8, 8)"),
])
def test_harden_cli_refuses_bad_input(tmp_path: Path, digits8: tuple[torch.Tensor, torch.Tensor], extra: list[str],
                                      message: str) -> None:
    x, y = digits8
    np.savez(tmp_path / "d.npz", x=x[:50].numpy(), y=y[:50].numpy())
    recipe = _write_mlp_recipe(tmp_path)
    bad = tmp_path / "bad.py"
    bad.write_text("from torch import nn\n\n\ndef net():\n    return nn.Linear(100, 10)\n")
    extra = [recipe if a == "R" else f"{bad}:net" if a == "BAD" else a for a in extra]
    result = CliRunner().invoke(app, ["harden", "--data", str(tmp_path / "d.npz"), "--eps", "0.1", "--epochs", "1",
                                      "--out", str(tmp_path / "o"), "--quiet", *extra])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_pubdef_raises_held_out_transfer_robustness(tmp_path: Path) -> None:
    """The issue's setting on the 32x32 digits: public CNN and MLP as sources, a wide CNN held out as the attacker,
    the demo CNN defended for 5 epochs: worst-case transfer robust accuracy +0.2 or more, clean accuracy -0.05 or
    less (the issue's 0.03 holds at the CLI default of 10 epochs: see the closing note)."""
    from robustaudit.commands import harden
    from robustaudit.demo import digits_32, train_digits_cnn

    xtr, ytr, xte, yte = digits_32()
    sources = [train_digits_cnn(xtr, ytr, arch=a, epochs=4, seed=i + 1) for i, a in enumerate(("cnn", "mlp"))]
    attacker = train_digits_cnn(xtr, ytr, arch="cnn-wide", epochs=4, seed=3)
    doc = harden("pubdef", torch.from_numpy(xtr), torch.from_numpy(ytr),
                 test=(torch.from_numpy(xte[:150]), torch.from_numpy(yte[:150])), recipe="robustaudit.demo:DigitsCNN",
                 eps=0.2, epochs=5, sources=sources, attackers=[attacker], transfer_attacks=["ifgsm", "mi"],
                 out=tmp_path / "out")
    before, after = doc["audit"]["unhardened"], doc["audit"]["hardened"]
    assert after["robust_accuracy"] - before["robust_accuracy"] >= 0.2, doc["audit"]
    assert before["clean_accuracy"] - after["clean_accuracy"] <= 0.05, doc["audit"]  # 5 epochs; 10: see the note
    assert sorted(doc["pubdef"]["chosen"]) == ["0:Sequential", "1:Sequential"]
    assert (tmp_path / "out" / "audit" / "hardened" / "transfer.json").is_file()


def test_robust_convex_training_raises_robust_accuracy_under_evaluate(tmp_path: Path) -> None:
    pytest.importorskip("cvxpy")
    from robustaudit.commands import harden

    x, y, xte, yte = _breast_cancer(200, seed=2)
    doc = harden("convex", torch.from_numpy(x), torch.from_numpy(y),
                 test=(torch.from_numpy(xte[:150]), torch.from_numpy(yte[:150])), eps=0.05, patterns=6, warm=8,
                 out=tmp_path / "out")
    before, after = doc["audit"]["unhardened"], doc["audit"]["hardened"]
    assert after["robust_accuracy"] >= before["robust_accuracy"] + 0.1, doc["audit"]
    cvx = doc["convex"]
    for program in ("standard", "robust"):
        assert abs(cvx[program]["recovered_objective"] - cvx[program]["optimum"]) <= 1e-4 * cvx[program]["optimum"]
    assert cvx["standard"]["optimum"] <= cvx["warm_start_objective"] + 1e-6


def test_convex_many_classes_and_a_rerun_reads_the_checkpoints(tmp_path: Path,
                                                               digits8: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Three classes (one output each against the rest): the recovered network's objective is the optimum and the
    exported module predicts as the network does; a second run with the same settings loads both programs."""
    pytest.importorskip("cvxpy")
    from robustaudit.defend.run import convex

    x, y = digits8
    keep = (y < 3).nonzero().flatten()[:120]
    xs, ys = x[keep].flatten(1).double().numpy(), y[keep].numpy()
    std, robust, _ = convex(xs, ys, 3, 0.05, patterns=3, warm=4, reg=1e-3, solver="clarabel", rounds=0, seed=0,
                            folder=tmp_path, progress=False)
    net = std.network
    assert net.a.shape[1] == 3 and abs(net.objective(xs, ys, 1e-3) - std.optimum) <= 1e-4 * std.optimum
    with torch.no_grad():
        logits = net.module()(torch.from_numpy(xs).float())
    assert torch.equal(logits.argmax(1), torch.from_numpy(net.outputs(xs).argmax(1)))
    assert (tmp_path / "checkpoints" / "convex-robust.npz").is_file()
    std2, robust2, _ = convex(xs, ys, 3, 0.05, patterns=3, warm=4, reg=1e-3, solver="clarabel", rounds=0, seed=0,
                              folder=tmp_path, progress=False)
    assert std2.seconds == std.seconds and robust2.optimum == robust.optimum  # read back, not solved again
    assert np.array_equal(robust2.network.u, robust.network.u)
