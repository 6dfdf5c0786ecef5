"""Interpreters (captum) against hand-computed maps, map similarity, and the joint classifier + interpreter attack."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from robustaudit.attacks.whitebox.joint import JointInterpretation
from robustaudit.attacks.whitebox.pgd import PGD
from robustaudit.cli import app
from robustaudit.errors import InputError
from robustaudit.interpret.maps import attribution_maps, map_similarity, pearson, topk_iou
from robustaudit.models import TorchModel
from robustaudit.threat import ThreatModel

runner = CliRunner()


class GapNet(nn.Module):
    """conv -> ReLU -> global average pooling -> linear: CAM's layout."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def gap_cnn(digits8: tuple[torch.Tensor, torch.Tensor]) -> nn.Module:
    """A digits CNN with global average pooling before its linear layer (Grad-CAM maps are informative)."""
    x, y = digits8
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(15):
        for idx in torch.randperm(1200, generator=g).split(64):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def _grad(net: nn.Module, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net(xg).gather(1, c[:, None]).sum(), xg)
    return g


def test_captum_maps_equal_hand_computed_ones() -> None:
    net = GapNet().eval()
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(2))
    c = torch.tensor([0, 2, 1])
    g = _grad(net, x, c)
    torch.testing.assert_close(attribution_maps(net, x, c, "gradient"), g.abs().sum(1))
    torch.testing.assert_close(attribution_maps(net, x, c, "gradxinput"), (g * x).sum(1))
    acts = F.relu(net.conv(x))
    cam = F.relu(torch.einsum("nkhw,nk->nhw", acts, net.head.weight[c]))
    # the hook sits on the conv layer (before its ReLU): CAM of the pre-activation maps
    pre = net.conv(x)
    torch.testing.assert_close(attribution_maps(net, x, c, "cam", layer="conv"),
                               F.relu(torch.einsum("nkhw,nk->nhw", pre, net.head.weight[c])))
    # Grad-CAM on a GAP net: weights = mean gradient = W_c/(HW) where the unit is active
    a = pre.detach().requires_grad_(True)
    (da,) = torch.autograd.grad(net.head(F.relu(a).mean((2, 3))).gather(1, c[:, None]).sum(), a)
    gradcam = F.relu((da.mean((2, 3))[:, :, None, None] * pre).sum(1))
    torch.testing.assert_close(attribution_maps(net, x, c, "gradcam"), gradcam.detach())
    assert cam.shape == (3, 6, 6)
    with pytest.raises(InputError, match="unknown interpreter"):
        attribution_maps(net, x, c, "lime")


def test_similarity_measures() -> None:
    a = torch.rand(4, 8, 8)
    assert torch.allclose(pearson(a, a), torch.ones(4)) and torch.allclose(topk_iou(a, a), torch.ones(4))
    assert torch.allclose(pearson(a, 2 * a + 1), torch.ones(4), atol=1e-6)
    assert float(pearson(a, -a).max()) < -0.999
    flipped = torch.flip(a, dims=[2])
    assert float(topk_iou(a, flipped).mean()) < 1


def test_joint_attack_keeps_maps_closer_than_pgd(digits8: tuple[torch.Tensor, torch.Tensor],
                                                 gap_cnn: nn.Module) -> None:
    x, y = digits8
    x, y = x[1500:1560], y[1500:1560]
    with torch.no_grad():
        assert float((gap_cnn(x).argmax(1) == y).float().mean()) > 0.85
    threat = ThreatModel(eps=0.2)
    pgd = PGD(steps=30)(TorchModel(gap_cnn), x, y, threat)
    joint = JointInterpretation(steps=30)(TorchModel(gap_cnn), x, y, threat)
    both = pgd.success & joint.success
    assert int(pgd.success.sum()) >= 40 and int(joint.success.sum()) >= 0.9 * int(pgd.success.sum())
    s_pgd = map_similarity(gap_cnn, x[both], pgd.x_adv[both], "gradcam")
    s_joint = map_similarity(gap_cnn, x[both], joint.x_adv[both], "gradcam")
    assert float(s_joint["pearson"].mean()) > float(s_pgd["pearson"].mean()) + 0.1
    assert int(joint.gradients.max()) <= 61 and int(joint.queries.max()) <= 33  # + the clean check and the verification


def test_cli_interpreter_option(tmp_path: Path, digits8: tuple[torch.Tensor, torch.Tensor],
                                trained_cnn: nn.Module) -> None:
    x, y = digits8
    np.savez(tmp_path / "d.npz", x=x[1500:1520].numpy(), y=y[1500:1520].numpy())
    torch.save(trained_cnn.state_dict(), tmp_path / "w.pt")
    (tmp_path / "net.py").write_text(
        "import torch\nfrom conftest import small_cnn\n"
        f"def build():\n    m = small_cnn()\n    m.load_state_dict(torch.load({str(tmp_path / 'w.pt')!r}))\n"
        "    return m.eval()\n")
    model = f"{tmp_path / 'net.py'}:build"
    r = runner.invoke(app, ["evaluate", "--model", model, "--data", str(tmp_path / "d.npz"), "--eps", "0.2",
                            "--attacks", "pgd", "--interpreter", "gradcam", "--out", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["interpretation"]["interpreter"] == "gradcam" and res["interpretation"]["broken"] > 0
    broken = [e for e in res["examples"] if e["broken_by"]]
    assert all(-1 <= e["map_pearson"] <= 1 and 0 <= e["map_topk_iou"] <= 1 for e in broken)
    r = runner.invoke(app, ["evaluate", "--model", model, "--data", str(tmp_path / "d.npz"), "--eps", "0.2",
                            "--map-weight", "2", "--out", str(tmp_path / "run2")])
    assert r.exit_code == 2 and "--interpreter" in r.output
