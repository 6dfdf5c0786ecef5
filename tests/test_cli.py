"""The `evaluate` command end to end on the demo model, and every bad input: one line, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from robustaudit.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def small_data(demo_paths, tmp_path_factory) -> str:
    """The first 40 demo test digits."""
    _, data = demo_paths
    d = np.load(data)
    p = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(p, x=d["x"][:40], y=d["y"][:40])
    return str(p)


def test_evaluate_end_to_end(demo_paths, small_data, tmp_path: Path) -> None:
    model, _ = demo_paths
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "robustaudit", "evaluate", "--model", model, "--data", small_data, "--norm", "linf",
         "--eps", "0.1", "--attacks", "fgsm,pgd,apgd-t", "--seed", "0", "--batch-size", "16", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    for key in ("clean_accuracy", "robust_accuracy", "robust_accuracy_ci95", "n", "threat", "attacks", "flags",
                "examples"):
        assert key in res
    assert res["n"] == 40 and res["threat"]["norm"] == "linf" and res["threat"]["eps"] == 0.1
    assert res["threat"]["bounds"] == [0.0, 1.0]
    assert [a["name"] for a in res["attacks"]] == ["fgsm", "pgd", "apgd-t"]
    assert res["flags"] == []
    assert res["robust_accuracy"] < res["clean_accuracy"]
    lo, hi = res["robust_accuracy_ci95"]
    assert lo <= res["robust_accuracy"] <= hi
    keys = {"index", "label", "clean_prediction", "robust", "broken_by", "linf", "l2", "queries", "gradients"}
    assert all(keys <= set(e) for e in res["examples"])
    adv = np.load(out / "adversarial.npz")["x_adv"]
    x = np.load(small_data)["x"]
    assert adv.shape == x.shape and adv.dtype == np.float32
    for e in res["examples"]:
        i = e["index"]
        if e["broken_by"] is None:
            assert np.array_equal(adv[i], x[i])
        else:
            assert np.abs(adv[i] - x[i]).max() <= 0.1 + 1e-6
    assert "robust accuracy" in proc.stdout


def test_evaluate_fast_preset_l2(demo_paths, small_data, tmp_path: Path) -> None:
    model, _ = demo_paths
    r = runner.invoke(app, ["evaluate", "--model", model, "--data", small_data, "--norm", "l2", "--eps", "1.0",
                            "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [a["name"] for a in res["attacks"]] == ["pma", "apgd-t"]
    assert all(e["l2"] <= 1.0 + 1e-6 for e in res["examples"])


def _bad_files(tmp: Path, good: str) -> dict[str, tuple[str, str]]:
    d = np.load(good)
    x, y = d["x"], d["y"]
    files = {
        "wrong_keys": {"images": x, "labels": y},
        "shape": {"x": x[:, 0, 0], "y": y},
        "ndim": {"x": x[0], "y": y[:1]},
        "dtype": {"x": x.astype(np.float64), "y": y},
        "nan": {"x": np.where(x > 0.5, np.nan, x).astype(np.float32), "y": y},
        "bounds": {"x": x * 3, "y": y},
        "labels": {"x": x, "y": y + 20},
        "float_labels": {"x": x, "y": y.astype(np.float32)},
        "length": {"x": x, "y": y[:-1]},
    }
    out = {}
    for name, arrays in files.items():
        p = tmp / f"{name}.npz"
        np.savez(p, **arrays)
        out[name] = (str(p), "0.1")
    (tmp / "garbage.npz").write_text("not a zip")
    out["garbage"] = (str(tmp / "garbage.npz"), "0.1")
    out["missing"] = (str(tmp / "nope.npz"), "0.1")
    out["eps_zero"] = (good, "0")
    out["eps_negative"] = (good, "-0.5")
    return out


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(demo_paths, small_data, tmp_path: Path) -> None:
    model, _ = demo_paths
    for name, (data, eps) in _bad_files(tmp_path, small_data).items():
        out = tmp_path / f"out_{name}"
        r = runner.invoke(app, ["evaluate", "--model", model, "--data", data, "--eps", eps, "--out", str(out)])
        assert r.exit_code == 2, (name, r.output)
        assert "error" in r.output.lower(), name
        assert not out.exists(), name
    for args in (["--attacks", "nope"], ["--norm", "l7"], ["--model", str(tmp_path / "missing.pt")],
                 ["--model", "not_a_module_xyz:build"], ["--batch-size", "0"],
                 ["--access", "labels", "--attacks", "cgba"],
                 ["--eps", "1/0"], ["--eps", "a/b"], ["--output-key", "nope"],
                 ["--access", "bogus"], ["--mean", "0.5"], ["--mean", "0.5", "--std", "0"],
                 ["--mean", "a", "--std", "1"],
                 ["--bounds", "1,0"]):
        out = tmp_path / "o_args"
        base = {"--model": model, "--data": small_data, "--eps": "0.1", "--out": str(out)}
        for k, v in zip(args[::2], args[1::2], strict=True):
            base[k] = v
        r = runner.invoke(app, ["evaluate", *[t for kv in base.items() for t in kv]])
        assert r.exit_code == 2, (args, r.output)
        assert r.output.strip().count("\n") == 0 or "Usage" in r.output, (args, r.output)
        assert not out.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_model_sources(tmp_path: Path, small_data: str) -> None:
    """TorchScript, torch.export and python callables load to the same predictions."""
    import torch

    from robustaudit.models import load_model

    (tmp_path / "net.py").write_text(
        "import torch\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1024, 10))\n"
    )
    m = load_model(f"{tmp_path / 'net.py'}:build")
    x = torch.from_numpy(np.load(small_data)["x"][:4])
    ref = m.predict_scores(x)
    torch.jit.save(torch.jit.script(m.module), str(tmp_path / "net.pt"))
    torch.export.save(torch.export.export(m.module, (x,)), str(tmp_path / "net.pt2"))
    for spec in ("net.pt", "net.pt2"):
        assert torch.allclose(load_model(str(tmp_path / spec)).predict_scores(x), ref, atol=1e-5)
    normalised = load_model(f"{tmp_path / 'net.py'}:build", mean=[0.5], std=[0.25])
    assert torch.allclose(normalised.predict_scores(x), m.predict_scores((x - 0.5) / 0.25), atol=1e-5)


def test_score_access_defaults_to_square_and_refuses_white_box(demo_paths, small_data, tmp_path: Path) -> None:
    model, _ = demo_paths
    base = ["evaluate", "--model", model, "--data", small_data, "--eps", "0.1", "--access", "scores", "--quiet"]
    r = runner.invoke(app, [*base, "--attacks", "apgd-ce", "--out", str(tmp_path / "refused")])
    assert r.exit_code == 2 and "needs gradients access" in r.output
    assert not (tmp_path / "refused").exists()
    r = runner.invoke(app, [*base, "--budget", "50", "--out", str(tmp_path / "sq")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "sq" / "results.json").read_text())
    assert [a["name"] for a in res["attacks"]] == ["square", "genetic"]
    assert all(e["gradients"] == 0 for e in res["examples"])
    # the budget holds per example across both attacks; the clean pass, two probe passes and the one
    # verification of the breaking attack come on top
    assert max(e["queries"] for e in res["examples"]) <= 50 + 4


def test_attacks_command_lists_registry_and_presets() -> None:
    r = runner.invoke(app, ["attacks"])
    assert r.exit_code == 0
    for name in ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "pma", "square", "preset fast"):
        assert name in r.output


def test_surrogate_seeds_the_genetic_attack(demo_paths, small_data, tmp_path: Path) -> None:
    model, _ = demo_paths
    base = ["evaluate", "--model", model, "--data", small_data, "--eps", "0.1", "--access", "scores", "--quiet",
            "--budget", "30"]
    r = runner.invoke(app, [*base, "--attacks", "genetic", "--surrogate", model, "--out", str(tmp_path / "g")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "g" / "results.json").read_text())
    assert res["attacks"][0]["broken"] > 0 and all(e["gradients"] == 0 for e in res["examples"])
    r = runner.invoke(app, [*base, "--attacks", "square", "--surrogate", model, "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and not (tmp_path / "s").exists()
