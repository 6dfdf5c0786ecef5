"""Robust accuracy versus eps: on a linear model every point of the curve is known in closed form."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import demo_subset
from PIL import Image
from test_linear_oracle import make_problem, minimal_distance
from typer.testing import CliRunner

from robustaudit.cli import app
from robustaudit.models import TorchModel
from robustaudit.run.curve import robustness_curve
from robustaudit.threat import ThreatModel


def test_curve_matches_the_closed_form() -> None:
    lin, x, y = make_problem(10)
    with torch.no_grad():
        d = minimal_distance(lin, x, y, "l2")
    levels = [float(d.quantile(q)) for q in (0.2, 0.5, 0.8)]
    rows = robustness_curve(TorchModel(lin), x, y, ThreatModel(norm="l2", eps=1.0), levels, "fab-t", checks=False)
    assert [r["eps"] for r in rows] == sorted(levels)
    for r in rows:
        e = r["eps"]
        # breakable below eps (3% slack at the boundary, as in the linear oracle tests), never above
        assert float((d > e).double().mean()) <= r["robust_accuracy"] <= float((d > 0.97 * e).double().mean())
        lo, hi = r["robust_accuracy_ci95"]
        assert lo <= r["robust_accuracy"] <= hi
    assert [r["attacked"] for r in rows] == sorted((r["attacked"] for r in rows), reverse=True)
    assert rows[0]["attacked"] == len(x)


def test_curve_cli(tmp_path: Path, demo_paths) -> None:
    model, _ = demo_paths
    small = demo_subset(demo_paths, tmp_path, 20)
    out = tmp_path / "curve"
    r = CliRunner().invoke(app, ["curve", "--model", str(model), "--data", str(small), "--eps", "0.1,0.02,0.05",
                                 "--attacks", "pgd", "--out", str(out)])
    assert r.exit_code == 0, r.output
    curve = json.loads((out / "curve.json").read_text())["curve"]
    assert [c["eps"] for c in curve] == [0.02, 0.05, 0.1]
    ra = [c["robust_accuracy"] for c in curve]
    assert ra == sorted(ra, reverse=True)
    with Image.open(out / "curve.png") as im:
        assert im.size[0] > 100
    r = CliRunner().invoke(app, ["curve", "--model", str(model), "--data", str(small), "--eps", "0,0.1",
                                 "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2
