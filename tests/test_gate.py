"""The release gate: --fail-under on the lower end of the exact interval (or the estimate), untrustworthy flags
failing it unless allowed, `robustaudit check` from robustaudit.toml or pyproject.toml, the pytest fixture, and
one JSON line per run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import demo_subset
from typer.testing import CliRunner

from robustaudit.cli import app
from robustaudit.gate import Gate

pytest_plugins = ["pytester"]


def test_the_rule_and_the_flags() -> None:
    gate = Gate(0.4)
    assert gate.judge("robust accuracy", 0.45, (0.41, 0.5))["passed"]
    assert not gate.judge("robust accuracy", 0.45, (0.35, 0.55))["passed"]  # the estimate passes, the bound not
    assert Gate(0.4, "point").judge("robust accuracy", 0.45, (0.35, 0.55))["passed"]
    blocked = gate.judge("robust accuracy", 0.9, (0.8, 0.95), ["training_mode"])
    assert not blocked["passed"] and "training_mode" in blocked["line"]
    assert Gate(0.4, allow_flags=("training_mode",)).judge("robust accuracy", 0.9, (0.8, 0.95),
                                                          ["training_mode"])["passed"]
    assert gate.judge("robust accuracy", 0.9, (0.8, 0.95), ["randomized"], handled={"randomized"})["passed"]
    with pytest.raises(ValueError):
        Gate(1.5)


def test_evaluate_exits_1_below_the_threshold(demo_paths, tmp_path: Path) -> None:
    model, _ = demo_paths
    data = demo_subset(demo_paths, tmp_path, 40)
    base = ["evaluate", "--model", model, "--data", str(data), "--eps", "0.1", "--attacks", "fgsm"]
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "a"), "--fail-under", "0.99",
                                 "--jsonl", str(tmp_path / "runs.jsonl")])
    assert r.exit_code == 1 and "gate FAILED" in r.output
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["gate"]["passed"] is False and res["gate"]["figure"] == res["robust_accuracy_ci95"][0]
    assert "gate FAILED" in (tmp_path / "a" / "report.html").read_text()
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "b"), "--fail-under", "0.0", "--gate", "point",
                                 "--jsonl", str(tmp_path / "runs.jsonl")])
    assert r.exit_code == 0 and "gate passed" in r.output
    lines = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[1]["gate"]["passed"] and "robust_accuracy" in lines[0]


def test_check_runs_from_a_toml_file(demo_paths, tmp_path: Path) -> None:
    model, _ = demo_paths
    demo_subset(demo_paths, tmp_path, 24)
    (tmp_path / "robustaudit.toml").write_text(f"""
[model]
source = "{model}"
[data]
path = "demo24.npz"
[threat]
eps = "8/255"
[audit]
attacks = "fgsm"
[gate]
fail_under = 0.0
[track]
jsonl = "audits.jsonl"
""")
    r = CliRunner().invoke(app, ["check", str(tmp_path / "robustaudit.toml")])
    assert r.exit_code == 0 and "gate passed" in r.output, r.output
    assert (tmp_path / "robustaudit-report" / "report.html").is_file() and (tmp_path / "audits.jsonl").is_file()
    (tmp_path / "pyproject.toml").write_text(
        (tmp_path / "robustaudit.toml").read_text().replace("[", "[tool.robustaudit.").replace("0.0", "1.0"))
    r = CliRunner().invoke(app, ["check", str(tmp_path / "pyproject.toml")])
    assert r.exit_code == 1 and "gate FAILED" in r.output
    (tmp_path / "bad.toml").write_text("[model]\nsource = 'm.pt'\nflavour = 1\n")
    r = CliRunner().invoke(app, ["check", str(tmp_path / "bad.toml")])
    assert r.exit_code == 2 and "flavour" in r.stderr


def test_certify_and_transfer_gates(demo_paths, tmp_path: Path) -> None:
    model, _ = demo_paths
    data = demo_subset(demo_paths, tmp_path, 8)
    r = CliRunner().invoke(app, ["certify", "--model", model, "--data", str(data), "--sigma", "0.25", "--n", "50",
                                 "--n0", "10", "--out", str(tmp_path / "c"), "--fail-under", "0.99", "--radius",
                                 "0.25"])
    assert r.exit_code == 1 and "certified accuracy at L2 radius 0.25" in r.output
    r = CliRunner().invoke(app, ["transfer", "--target", model, "--surrogates", model, "--data", str(data), "--eps",
                                 "0.1", "--attacks", "fgsm", "--out", str(tmp_path / "t"), "--fail-under", "0"])
    assert r.exit_code == 0 and "worst-case transfer robust accuracy" in r.output


def test_pytest_fixture_fails_a_weak_model(pytester: pytest.Pytester, demo_paths) -> None:
    model, data = demo_paths
    d = np.load(data)
    np.savez(pytester.path / "d.npz", x=d["x"][:16], y=d["y"][:16])
    pytester.makepyfile(f"""
def test_strong_enough(robustness_gate):
    robustness_gate({model!r}, "d.npz", eps=0.1, attacks="fgsm", fail_under=0.0)

def test_too_weak(robustness_gate):
    robustness_gate({model!r}, "d.npz", eps=0.1, attacks="fgsm", fail_under=0.99)
""")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")  # the plugin loads by its entry point
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*gate FAILED*report: *report.html*"])


def test_mlflow_logs_params_metrics_and_the_report(demo_paths, tmp_path: Path, monkeypatch) -> None:
    """--mlflow logs to a local MLflow file store: the metrics equal results.json, the report is an artifact."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps file stores behind this switch
    model, _ = demo_paths
    data = demo_subset(demo_paths, tmp_path, 24)
    r = CliRunner().invoke(app, ["evaluate", "--model", model, "--data", str(data), "--eps", "0.1", "--attacks", "fgsm",
                                 "--out", str(tmp_path / "a"), "--mlflow", "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    client = mlflow.tracking.MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.metrics["robust_accuracy"] == pytest.approx(res["robust_accuracy"])
    assert run.data.metrics["robust_accuracy_ci95_low"] == pytest.approx(res["robust_accuracy_ci95"][0])
    assert run.data.params["model_sha256"] == res["model_sha256"] and run.data.tags["robustaudit.command"] == \
        "evaluate"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "robustaudit")}
    assert {"robustaudit/report.html", "robustaudit/results.json", "robustaudit/summary.md"} <= artifacts
    with mlflow.start_run() as active:  # inside an active run (a training script's), it logs there
        r = CliRunner().invoke(app, ["evaluate", "--model", model, "--data", str(data), "--eps", "0.1", "--attacks",
                                     "fgsm", "--out", str(tmp_path / "b"), "--mlflow", "--quiet"])
        assert r.exit_code == 0, r.output
    assert "robust_accuracy" in client.get_run(active.info.run_id).data.metrics
