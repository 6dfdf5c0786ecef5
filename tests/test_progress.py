"""Progress: a long audit is never silent. Where stderr is not a terminal (a CI log), plain lines name the attack
under way and its examples, batch by batch inside each shard, not only finished shards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import demo_subset
from rich.console import Console

from robustaudit.progress import AuditProgress


def test_plain_lines_when_stderr_is_not_a_terminal(demo_paths, tmp_path: Path) -> None:
    model, _ = demo_paths
    data = demo_subset(demo_paths, tmp_path, 40)
    exe = Path(sys.executable).with_name("robustaudit")
    r = subprocess.run([str(exe), "evaluate", "--model", model, "--data", str(data), "--eps", "0.1", "--attacks",
                        "fgsm,pgd", "--shard-size", "16", "--batch-size", "8", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "ROBUSTAUDIT_PROGRESS_EVERY": "0"})
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("progress: ")]
    assert any("pgd (robust so far" in line for line in lines)  # an attack inside a shard, batch by batch
    assert any("examples done" in line and "/40" in line for line in lines)  # the whole run
    quiet = subprocess.run([str(exe), "evaluate", "--model", model, "--data", str(data), "--eps", "0.1", "--attacks",
                            "fgsm", "--quiet", "--out", str(tmp_path / "quiet")], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "ROBUSTAUDIT_PROGRESS_EVERY": "0"})
    assert quiet.returncode == 0 and "progress:" not in quiet.stderr


def test_plain_lines_are_periodic(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROBUSTAUDIT_PROGRESS_EVERY", "3600")
    with open(tmp_path / "log", "w") as f:
        bar = AuditProgress(True, console=Console(file=f))
        task = bar.add_task("attack", total=10)
        for _ in range(10):
            bar.advance(task)
    assert bar.plain and "progress:" not in (tmp_path / "log").read_text()  # nothing before the period is up
    monkeypatch.setenv("ROBUSTAUDIT_PROGRESS_EVERY", "0")
    with open(tmp_path / "log", "w") as f:
        bar = AuditProgress(True, console=Console(file=f))
        task = bar.add_task("attack", total=10)
        bar.advance(task, 4)
    assert "progress: attack: 4/10" in (tmp_path / "log").read_text()
