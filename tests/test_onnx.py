"""ONNX files through ONNX Runtime at score access: same scores, same audit as the in-process module."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robustaudit.attacks.score.square import Square
from robustaudit.cli import app
from robustaudit.errors import InputError
from robustaudit.models import TorchModel, as_score_only, load_model
from robustaudit.models.onnx import OnnxModel
from robustaudit.threat import ThreatModel
from robustaudit.types import Access


def export(net: torch.nn.Module, path: Path, batch: int | None = None) -> str:
    x = torch.rand(batch or 4, 1, 8, 8)
    dynamic = None if batch else ({0: torch.export.Dim("batch")},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), dynamic_shapes=dynamic, verbose=False)
    return str(path)


@pytest.fixture(scope="module")
def onnx_file(trained_cnn, tmp_path_factory) -> str:
    return export(trained_cnn, tmp_path_factory.mktemp("onnx") / "cnn.onnx")


def test_scores_match_the_module(onnx_file: str, trained_cnn, digits8, tmp_path: Path) -> None:
    x = digits8[0][:37]
    m = load_model(onnx_file)
    assert isinstance(m, OnnxModel) and m.access == Access.SCORES
    with torch.no_grad():
        ref = trained_cnn(x)
    assert torch.allclose(m.predict_scores(x), ref, atol=1e-4)
    fixed = OnnxModel(export(trained_cnn, tmp_path / "fixed.onnx", batch=4))  # padded last batch
    assert torch.allclose(fixed.predict_scores(x), ref, atol=1e-4)
    assert torch.equal(load_model(onnx_file, access=Access.LABELS).predict_labels(x), ref.argmax(1))


def test_same_audit_as_the_in_process_module(onnx_file: str, trained_cnn, digits8) -> None:
    x, y = digits8[0][1500:1530], digits8[1][1500:1530]
    threat = ThreatModel(eps=0.15, max_queries=200)
    a = Square(n_queries=200)(load_model(onnx_file), x, y, threat, seed=4)
    b = Square(n_queries=200)(as_score_only(TorchModel(trained_cnn)), x, y, threat, seed=4)
    assert torch.equal(a.success, b.success)
    assert torch.equal(a.queries, b.queries)
    assert torch.allclose(a.x_adv, b.x_adv, atol=1e-5)


def test_bad_onnx_inputs(onnx_file: str, tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_text("junk")
    for call in (lambda: load_model(str(tmp_path / "junk.onnx")), lambda: load_model(str(tmp_path / "none.onnx")),
                 lambda: load_model(onnx_file, access=Access.GRADIENTS),
                 lambda: load_model(onnx_file, output_key="nope")):
        with pytest.raises(InputError):
            call()


def test_cli_audits_an_onnx_file_with_square(onnx_file: str, digits8, tmp_path: Path) -> None:
    x, y = digits8
    data = tmp_path / "d.npz"
    np.savez(data, x=x[1500:1520].numpy(), y=y[1500:1520].numpy())
    r = CliRunner().invoke(app, ["evaluate", "--model", onnx_file, "--data", str(data), "--eps", "0.15",
                                 "--budget", "100", "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [a["name"] for a in res["attacks"]] == ["square", "genetic"]
    assert res["robust_accuracy"] < res["clean_accuracy"]
    r = CliRunner().invoke(app, ["evaluate", "--model", onnx_file, "--data", str(data), "--eps", "0.15",
                                 "--attacks", "pgd", "--out", str(tmp_path / "p")])
    assert r.exit_code == 2 and not (tmp_path / "p").exists()
