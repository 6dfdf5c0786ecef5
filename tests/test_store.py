"""Crash-safe, resumable runs: a real `robustaudit evaluate` killed with SIGKILL mid-run, then resumed, gives the
results.json of an uninterrupted `robustaudit.audit()` run (timings aside); a resume with other options is
refused."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from conftest import demo_subset
from test_api import comparable
from typer.testing import CliRunner

import robustaudit
from robustaudit.cli import app
from robustaudit.run.store import STORE_NAME

N, SHARD = 120, 10


def _command(model: Path, data: Path, out: Path, eps: str = "0.1") -> list[str]:
    return ["evaluate", "--model", str(model), "--data", str(data), "--eps", eps, "--attacks", "apgd-ce",
            "--shard-size", str(SHARD), "--out", str(out), "--quiet", "--no-checks"]


def _rows(out: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows of a read-only query on the run's store while another process writes it (none before it exists)."""
    path = out / STORE_NAME
    if not path.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return list(db.execute(sql))
    except sqlite3.OperationalError:  # the table is not created yet
        return []


def _shards_done(out: Path) -> int:
    return len(_rows(out, "SELECT shard FROM shards"))


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path: Path, demo_paths) -> None:
    model, _ = demo_paths
    small = demo_subset(demo_paths, tmp_path, N)
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "robustaudit", *_command(model, small, crashed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _shards_done(crashed) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _shards_done(crashed)
    assert 2 <= done < N // SHARD, f"the kill came at {done} finished shards"
    assert not (crashed / "results.json").exists()
    runner = CliRunner()
    r = runner.invoke(app, _command(model, small, crashed))
    assert r.exit_code == 0, r.output
    assert "resuming" in r.output
    # the uninterrupted run from Python: the CLI is a thin layer over the same audit
    robustaudit.audit(str(model), str(small), eps="0.1", attacks="apgd-ce", shard_size=SHARD, out=clean, checks=False)
    a = json.loads((crashed / "results.json").read_text())
    b = json.loads((clean / "results.json").read_text())
    assert [e["index"] for e in a["examples"]] == list(range(N))
    assert comparable(a) == comparable(b)
    assert a["robust_accuracy"] == b["robust_accuracy"] and a["robust_accuracy_ci95"] == b["robust_accuracy_ci95"]
    assert a["attacks"][0]["attacked"] == b["attacks"][0]["attacked"]
    assert np.array_equal(np.load(crashed / "adversarial.npz")["x_adv"], np.load(clean / "adversarial.npz")["x_adv"])


def test_resume_with_other_options_is_refused(tmp_path: Path, demo_paths) -> None:
    model, _ = demo_paths
    small = demo_subset(demo_paths, tmp_path, 20)
    out = tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(app, _command(model, small, out)).exit_code == 0
    r = runner.invoke(app, _command(model, small, out, eps="0.2"))
    assert r.exit_code == 2 and "different configuration" in r.output and "threat" in r.output
    r = runner.invoke(app, [*_command(model, small, tmp_path / "none"), "--resume"])
    assert r.exit_code == 2 and "no run to resume" in r.output


def _journaled(out: Path) -> int:
    """Queries the store's journal says the unfinished shards have spent."""
    return sum(sum(json.loads(str(row[0]))) for row in _rows(out, "SELECT queries FROM spent"))


def test_the_budget_holds_across_a_kill_mid_shard(tmp_path: Path) -> None:
    from test_remote import NET_PY, served_examples, start_serve

    (tmp_path / "net.py").write_text(NET_PY)
    proc, base = start_serve("--model", f"{tmp_path / 'net.py'}:build", "--max-batch", "64")
    try:
        import torch
        from sklearn.datasets import load_digits

        from robustaudit.models.load import load_model

        x = (load_digits().images[:24, None] / 16.0).astype(np.float32)
        y = load_model(f"{tmp_path / 'net.py'}:build").predict_labels(torch.from_numpy(x))  # all clean-correct
        np.savez(tmp_path / "d.npz", x=x, y=y.numpy())
        out, budget = tmp_path / "run", 101
        args = ["evaluate", "--model", f"{base}/v2/models/model", "--data", str(tmp_path / "d.npz"), "--eps", "0.03",
                "--access", "scores", "--attacks", "square", "--budget", str(budget), "--shard-size", "24",
                "--batch-size", "3", "--quiet", "--out", str(out)]
        before = served_examples(base)
        client = subprocess.Popen([sys.executable, "-m", "robustaudit", *args], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while _journaled(out) < 5 * budget and client.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        client.send_signal(signal.SIGKILL)
        client.wait()
        assert _journaled(out) >= 5 * budget and _shards_done(out) == 0, "the kill must come inside the first shard"
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        res = json.loads((out / "results.json").read_text())
        queries = [e["queries"] for e in res["examples"]]
        assert max(queries) <= budget
        # every query the server answered is reported, but those of the batch in flight at the kill (a rerun that
        # forgot the first attempt would lose the 5 budgets journaled before it)
        lost = served_examples(base) - before - sum(queries)
        assert 0 <= lost <= 3 * budget
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_swapped_or_damaged_shard_record_is_refused(tmp_path: Path, demo_paths) -> None:
    model, _ = demo_paths
    small = demo_subset(demo_paths, tmp_path, 20)
    out = tmp_path / "run"
    args = ["evaluate", "--model", model, "--data", str(small), "--eps", "0.1", "--attacks", "fgsm",
            "--shard-size", "10", "--no-checks", "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    with sqlite3.connect(out / STORE_NAME) as db:
        first, second = (r[0] for r in db.execute("SELECT record FROM shards ORDER BY shard"))
        db.execute("UPDATE shards SET record = ? WHERE shard = 0", (second,))
        db.execute("UPDATE shards SET record = ? WHERE shard = 1", (first,))
    r = CliRunner().invoke(app, args)
    last = r.stderr.strip().splitlines()[-1]
    assert r.exit_code == 2 and last.startswith("error:") and "does not match" in last
    with sqlite3.connect(out / STORE_NAME) as db:
        db.execute("UPDATE shards SET record = '{\"n\": 3}' WHERE shard = 0")
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "damaged" in r.stderr and STORE_NAME in r.stderr
