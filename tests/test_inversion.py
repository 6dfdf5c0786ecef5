"""Model inversion (LOKT) on the digits demo: private classes 0-4 behind the target, public digits 5-9 unlabelled,
an independent evaluator (an MLP) never used by the attack. Settings are scaled down from the CLI defaults so the
file runs in a few minutes; `benchmarks/inversion.py` measures the defaults (issue 21's figures)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import Counting
from typer.testing import CliRunner

from robustaudit import load_model
from robustaudit.cli import app
from robustaudit.commands import inversion
from robustaudit.errors import InputError
from robustaudit.models import TorchModel
from robustaudit.models.wrappers import as_label_only
from robustaudit.privacy.inversion import InversionSettings, inversion_attack
from robustaudit.types import Access, Bounds

# 500 conditional iterations are too few for the default weak class pull on G (alpha_g 0.1 gives 0.42-0.60 here):
# the paper's alpha_g = alpha
SMALL = InversionSettings(iterations=600, n_uncond=100, n_dis=1, alpha_g=1.5, per_class=200, surrogate_epochs=10,
                          steps=100, seeds=3, samples=4, checkpoint_every=50)
TINY = InversionSettings(iterations=40, n_uncond=10, n_dis=1, per_class=10, surrogate_epochs=1, steps=5, seeds=2,
                         samples=2, checkpoint_every=10)
TINY_ARGS = ["--iterations", "40", "--n-uncond", "10", "--n-dis", "1", "--per-class", "10", "--surrogate-epochs", "1",
             "--steps", "5", "--seeds", "2", "--samples", "2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from robustaudit.demo import inversion_files

    return inversion_files(tmp_path_factory.mktemp("inversion"))


def _public(demo: dict[str, Path]) -> torch.Tensor:
    return torch.from_numpy(np.load(demo["public"])["x"])


def _with_random_surrogates(demo: dict[str, Path], stage1: Path, folder: Path) -> float:
    """The evaluator's top-1 of the same inversion from the finished stage-1 generator in `stage1`, with untrained
    surrogates (and no discriminator among them)."""
    folder.mkdir()
    shutil.copy(stage1 / "gan.pt", folder / "gan.pt")
    r = inversion(str(demo["target"]), demo["public"], classes=5, evaluator=str(demo["evaluator"]),
                  settings=InversionSettings(**{**SMALL.__dict__, "surrogate_epochs": 0,
                                                "discriminator_surrogate": False}), access=Access.LABELS, out=folder)
    return float(r["attack_accuracy"]["top1"]["mean"])


def test_label_only_inversion_beats_random_surrogates(demo, tmp_path: Path) -> None:
    """The evaluator's top-1 on LOKT reconstructions is >= 0.6; above the same pipeline with untrained surrogates
    (same T-ACGAN), and at least twice the pipeline without knowledge transfer (a GAN that never saw the target's
    labels, untrained surrogates: chance); white-box inversion of the target at least as high."""
    r = inversion(str(demo["target"]), demo["public"], classes=5, evaluator=str(demo["evaluator"]), settings=SMALL,
                  access=Access.LABELS, out=tmp_path / "lokt")
    white = inversion(str(demo["target"]), demo["public"], classes=5, evaluator=str(demo["evaluator"]), settings=SMALL,
                      out=tmp_path / "white")
    lokt = r["attack_accuracy"]["top1"]["mean"]
    same_generator = _with_random_surrogates(demo, tmp_path / "lokt", tmp_path / "random")
    no_transfer = _with_random_surrogates(demo, tmp_path / "white", tmp_path / "none")
    assert r["method"].startswith("LOKT") and white["access"] == "gradients" and white["target_queries"] > 0
    assert lokt >= 0.6, r["attack_accuracy"]
    assert lokt > same_generator, (lokt, same_generator)
    assert lokt >= 2 * no_transfer, (lokt, no_transfer)
    assert white["attack_accuracy"]["top1"]["mean"] >= lokt - 0.05, (white["attack_accuracy"], lokt)
    assert min(r["surrogate_agreement"].values()) > 0.5
    assert r["uninvertible_classes"] == []


def test_queries_are_exact_and_the_budget_holds(demo, tmp_path: Path) -> None:
    net = Counting(load_model(str(demo["target"])).module)  # type: ignore[attr-defined]
    target = as_label_only(TorchModel(net))
    pub = _public(demo)
    r = inversion_attack(target, pub, 5, range(5), Bounds(), TINY, budget=None, folder=tmp_path / "a")
    assert r.queries == net.forward_rows == TINY.planned_queries(5, Access.LABELS) == r.queries_total
    assert r.stage_queries == {"gan": 30 * 64, "surrogates": 50, "inversion": 0}
    net.forward_rows = 0
    budget = 50 + 64 * 10 + 5  # stage 2 and ten stage-1 batches (and 5 more that no batch can use)
    r = inversion_attack(target, pub, 5, range(5), Bounds(), TINY, budget=budget, folder=tmp_path / "b")
    assert net.forward_rows == r.queries == 50 + 640 <= budget
    assert r.stopped_querying_at == 20
    white = Counting(load_model(str(demo["target"])).module)  # type: ignore[attr-defined]
    r = inversion_attack(TorchModel(white), pub, 5, [1, 3], Bounds(), TINY, budget=None, folder=tmp_path / "c")
    assert r.queries == white.forward_rows == white.backward_rows == 2 * 5 * 2 * 4
    assert r.images.shape == (2, 4, 1, 8, 8) and r.labels.tolist() == [1, 1, 3, 3]
    with pytest.raises(InputError, match="white-box inversion needs 80"):
        inversion_attack(TorchModel(white), pub, 5, [1, 3], Bounds(), TINY, budget=79, folder=tmp_path / "d")
    with pytest.raises(InputError, match="cannot label the surrogates"):
        inversion_attack(target, pub, 5, range(5), Bounds(), TINY, budget=100, folder=tmp_path / "e")


def test_resume_after_a_kill_gives_the_same_result(demo, tmp_path: Path) -> None:
    args = ["privacy", "inversion", "--model", str(demo["target"]), "--public", str(demo["public"]),
            "--num-classes", "5", "--access", "labels", "--quiet", "--iterations", "400", "--n-uncond", "10",
            "--n-dis", "1",
            "--per-class", "10", "--surrogate-epochs", "1", "--steps", "5", "--seeds", "2", "--samples", "2"]
    whole = tmp_path / "whole"
    assert CliRunner().invoke(app, [*args, "--out", str(whole)]).exit_code == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "robustaudit", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "gan.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not (killed / "inversion.json").exists(), "the run ended before it could be killed"
    r = CliRunner().invoke(app, [*args, "--out", str(killed)])
    assert r.exit_code == 0, r.output
    a, b = np.load(whole / "reconstructions.npz"), np.load(killed / "reconstructions.npz")
    assert np.array_equal(a["x"], b["x"])
    ja, jb = json.loads((whole / "inversion.json").read_text()), json.loads((killed / "inversion.json").read_text())
    assert ja["target_queries"] == jb["target_queries"] <= jb["target_queries_total"]


def test_cli_files_and_refusals(demo, tmp_path: Path) -> None:
    base = ["privacy", "inversion", "--model", str(demo["target"]), "--public", str(demo["public"]),
            "--num-classes", "5", "--access", "labels", "--quiet", *TINY_ARGS]
    out = tmp_path / "o"
    r = CliRunner().invoke(app, [*base, "--evaluator", str(demo["evaluator"]), "--private-eval", str(demo["private"]),
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "inversion.json").read_text())
    for key in ("attack_accuracy", "target_queries", "surrogate_agreement", "uninvertible_classes", "knn_distance",
                "knn_distance_random", "stage_queries", "provenance"):
        assert key in res
    assert res["knn_space"] == "evaluator scores"  # an exported graph has no nn.Linear to hook
    accuracy = res["surrogate_private_accuracy"]  # scored on the private labels: no target query
    assert set(accuracy) == set(res["surrogate_agreement"]) and all(0 <= a <= 1 for a in accuracy.values())
    assert res["target_queries"] == TINY.planned_queries(5, Access.LABELS)
    assert len(res["attack_accuracy"]["top1"]["per_seed"]) == 2
    for name in ("report.html", "summary.md", "grid.png", "reconstructions.npz"):
        assert (out / name).is_file()
    assert "Model inversion" in (out / "report.html").read_text()
    rerun = CliRunner().invoke(app, [*base, "--steps", "6", "--out", str(out)])
    assert rerun.exit_code == 2 and "other settings" in rerun.output
    common = ["privacy", "inversion", "--model", str(demo["target"]), "--public", str(demo["public"]), "--quiet",
              *TINY_ARGS, "--out", str(tmp_path / "bad")]
    for extra, message in ((["--num-classes", "5", "--budget", "0"], "at least one target query"),
                           (["--num-classes", "5", "--invert", "7"], "--invert takes"),
                           (["--num-classes", "1"], "at least 2"),
                           (["--num-classes", "5", "--alpha-g", "-1"], "alpha_g at least 0"),
                           (["--num-classes", "5", "--alpha-g", "nan"], "finite numbers"),
                           (["--num-classes", "4", "--access", "labels"], "outside"),
                           (["--num-classes", "4"], "returns 5 scores")):
        r = CliRunner().invoke(app, [*common, *extra])
        assert r.exit_code == 2 and message in r.output, (extra, r.output)
