"""Mixed precision and torch.compile of a torch model: same scores and gradients up to the precision's rounding,
fp32 scores out, fp16 input gradients that do not underflow, audits that stay sound, refusals and provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import small_cnn
from typer.testing import CliRunner

from robustaudit import audit, load_model
from robustaudit.cli import app
from robustaudit.errors import InputError
from robustaudit.models import TorchModel


def _grad(model: TorchModel, x: torch.Tensor, scale: float) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.logits(xg)[:, 0].sum() * scale, xg)
    return g


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_scores_and_gradients(trained_cnn, digits8, precision: str) -> None:
    x = digits8[0][1400:1432]
    ref, m = TorchModel(trained_cnn), TorchModel(trained_cnn, precision=precision)
    z = m.logits(x)
    assert z.dtype == torch.float32 and m.predict_scores(x).dtype == torch.float32
    tol = 0.1 if precision == "bf16" else 0.01  # bf16 keeps 8 mantissa bits, fp16 11
    assert (z - ref.logits(x)).abs().max() < tol * ref.logits(x).abs().max()
    # a loss scaled down to 1e-6 (input gradients ~1e-8): fp16 would flush them to zero without the backward's scale
    g, g_ref = _grad(m, x, 1e-6), _grad(ref, x, 1e-6)
    assert g.dtype == torch.float32
    assert ((g - g_ref).norm() / g_ref.norm()) < 0.1
    assert (g != 0).float().mean() > 0.9 * (g_ref != 0).float().mean()


def test_a_bf16_audit_is_sound_and_recorded(trained_cnn, digits8) -> None:
    x, y = digits8[0][1400:1440], digits8[1][1400:1440]
    ref = audit(trained_cnn, x, y, eps=0.1, attacks="apgd-ce", seed=0, checks=False)
    rec = audit(trained_cnn, x, y, eps=0.1, attacks="apgd-ce", seed=0, checks=False, precision="bf16")
    assert abs(rec.robust_accuracy - ref.robust_accuracy) <= 2 / len(x)
    m = TorchModel(trained_cnn, precision="bf16")
    broken = [e.index for e in rec.examples if e.broken_by is not None]
    assert (rec.x_adv - x).abs().max() <= 0.1 + 1e-6
    # every break holds on the model as audited (bf16)
    assert (m.predict_labels(rec.x_adv[broken]) != y[broken]).all()
    assert rec.provenance["model_options"]["precision"] == "bf16"


def test_compiled_model_matches_eager() -> None:
    net = small_cnn(k=3)
    x = torch.rand(6, 1, 8, 8)
    eager, compiled = TorchModel(net), TorchModel(net, compile=True)
    assert torch.allclose(compiled.logits(x), eager.logits(x), atol=1e-5)
    assert torch.allclose(_grad(compiled, x, 1.0), _grad(eager, x, 1.0), atol=1e-5)
    assert torch.allclose(compiled.predict_scores(x[:4]), eager.predict_scores(x[:4]), atol=1e-5)  # a new batch size


def test_refusals(trained_cnn, demo_paths, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="precision must be one of"):
        TorchModel(trained_cnn, precision="int8")
    with pytest.raises(InputError, match="torch models"):
        load_model("http://127.0.0.1:9/v2/models/m", precision="bf16")
    with pytest.raises(InputError, match="torch models"):
        load_model(str(tmp_path / "m.onnx"), compile_model=True)
    model, data = demo_paths
    r = CliRunner().invoke(app, ["evaluate", "--model", model, "--data", data, "--eps", "0.1", "--precision", "fp8",
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "precision must be one of" in r.output
    assert not (tmp_path / "o").exists()


def test_cli_records_precision(demo_paths, tmp_path: Path) -> None:
    import numpy as np

    model, data = demo_paths
    d = np.load(data)
    small = tmp_path / "small.npz"
    np.savez(small, x=d["x"][:16], y=d["y"][:16])
    r = CliRunner().invoke(app, ["evaluate", "--model", model, "--data", str(small), "--eps", "0.1", "--attacks",
                                 "pgd", "--precision", "bf16", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["model_options"]["precision"] == "bf16"
    assert "bf16" in (tmp_path / "o" / "report.html").read_text()
