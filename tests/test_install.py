"""The light install: the command line answers --help without loading torch; a missing optional dependency is a
one-line message naming the extra to install; the core dependencies are the light set."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIGHT = {"torch", "numpy", "scipy", "typer", "rich", "jinja2", "matplotlib", "pillow"}


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_does_not_load_torch() -> None:
    r = _python("import sys, robustaudit, robustaudit.cli; print('torch' in sys.modules, 'scipy' in sys.modules)")
    assert r.returncode == 0 and r.stdout.split() == ["False", "False"], r.stderr
    exe = Path(sys.executable).with_name("robustaudit")
    subprocess.run([str(exe), "--help"], capture_output=True, timeout=60)  # warm the file cache
    start = time.perf_counter()
    r2 = subprocess.run([str(exe), "evaluate", "--help"], capture_output=True, text=True, timeout=60)
    assert r2.returncode == 0 and "--fail-under" in r2.stdout
    assert time.perf_counter() - start < 2.0  # 0.2-0.3 s here; loose for a loaded CI machine


def test_core_dependencies_are_light() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]}
    assert names == LIGHT
    extras = project["optional-dependencies"]
    assert {"remote", "onnx", "scaling", "interpret", "ray", "parquet", "all", "mlflow"} <= set(extras)


@pytest.mark.parametrize("module,argv,extra", [
    ("cv2", ["scaling", "detect", "x.png", "--size", "8x8"], "robustaudit[scaling]"),
    ("httpx", ["evaluate", "--model", "http://127.0.0.1:9/m", "--data", "{data}", "--eps", "0.1", "--out", "{out}"],
     "robustaudit[remote]"),
    ("captum", ["evaluate", "--model", "{model}", "--data", "{data}", "--eps", "0.1", "--attacks", "fgsm",
                "--interpreter", "gradient", "--no-checks", "--quiet", "--out", "{out}"], "robustaudit[interpret]"),
])
def test_missing_extra_is_one_line(module: str, argv: list[str], extra: str, demo_paths, tmp_path: Path) -> None:
    model, data = demo_paths
    args = [a.format(model=model, data=data, out=tmp_path / "out") for a in argv]
    code = (f"import sys; sys.modules[{module!r}] = None; sys.argv = ['robustaudit'] + {args!r}\n"
            "from robustaudit.cli import main; main()")
    r = _python(code)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and extra in r.stderr, r.stderr
    assert len(lines) <= 2 and "Traceback" not in r.stderr  # one message (rich may wrap it once)


@pytest.mark.parametrize("command", ["evaluate", "curve", "certify", "robustify", "transfer", "online", "topk",
                                     "serve"])
def test_every_model_command_takes_the_model_options(command: str) -> None:
    """--mean/--std, --output-key and --bounds on every command that loads a model (serve answers any input the
    model takes, so it has no --bounds)."""
    from typer.testing import CliRunner

    from robustaudit.cli import app

    r = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "240"})
    assert r.exit_code == 0
    wanted = ["--mean", "--std", "--output-key", "--device"] + ([] if command == "serve" else ["--bounds"])
    assert all(option in r.output for option in wanted), [o for o in wanted if o not in r.output]


def test_normalisation_options_work_beyond_evaluate(demo_paths, tmp_path: Path) -> None:
    """`curve` and `topk` once refused --mean: now the identity normalisation gives the same figures."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from robustaudit.cli import app

    model, data = demo_paths
    d = np.load(data)
    np.savez(tmp_path / "d.npz", x=d["x"][:8], y=d["y"][:8])
    runner = CliRunner()
    for command, argv, name in [("curve", ["--eps", "0.05,0.1", "--attacks", "fgsm"], "curve.json"),
                                ("topk", ["--k", "2", "--attacks", "cwk", "--budget", "1x3", "--quiet"], "topk.json")]:
        figures = []
        for extra in ([], ["--mean", "0", "--std", "1"]):
            out = tmp_path / f"{command}{len(extra)}"
            r = runner.invoke(app, [command, "--model", model, "--data", str(tmp_path / "d.npz"), *argv, *extra,
                                    "--out", str(out)])
            assert r.exit_code == 0, r.output
            j = json.loads((out / name).read_text())
            figures.append(j["curve"] if command == "curve" else [row["success_rate"] for row in j["results"]])
        assert figures[0] == figures[1]
