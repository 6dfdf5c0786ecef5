"""The Python API is the CLI's twin: `audit()` takes a plain nn.Module (or a path, or a wrapper), finds the scores in
tuple/dict/`.logits` outputs, and writes the same results.json as `robustaudit evaluate`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import demo_subset
from torch import nn
from typer.testing import CliRunner

import robustaudit
from robustaudit.cli import app
from robustaudit.errors import InputError
from robustaudit.results import EvalRecord

VOLATILE = {"seconds", "date"}


def comparable(results: dict[str, Any]) -> dict[str, Any]:
    """results.json without what differs between two identical runs (timings, the date)."""
    out = {k: v for k, v in results.items() if k not in VOLATILE}
    out["attacks"] = [{k: v for k, v in a.items() if k != "seconds"} for a in results["attacks"]]
    return out


@dataclass
class Output:
    """What a Hugging Face classifier returns: an object with `.logits` (and more)."""

    logits: torch.Tensor
    hidden_states: torch.Tensor


class Wrapped(nn.Module):
    def __init__(self, inner: nn.Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x: torch.Tensor) -> Any:
        z = self.inner(x)
        h = x.flatten(1)
        return {"tuple": lambda: (z, h), "dict": lambda: {"hidden": h, "logits": z}, "object": lambda: Output(z, h),
                "ambiguous": lambda: {"scores": z, "hidden": h}, "one": lambda: {"scores": z}}[self.kind]()


def test_a_plain_module_in_three_lines(trained_cnn, digits8) -> None:
    x, y = digits8[0][1500:1540], digits8[1][1500:1540]
    rec = robustaudit.audit(trained_cnn, x, y, eps=0.1, attacks="fgsm,pgd")
    assert isinstance(rec, EvalRecord) and rec.n == 40
    assert rec.robust_accuracy < rec.clean_accuracy
    lo, hi = rec.robust_accuracy_ci95
    assert lo <= rec.robust_accuracy <= hi
    assert all(isinstance(e, robustaudit.ExampleRecord) for e in rec.examples)
    low = robustaudit.evaluate(trained_cnn, x, y, robustaudit.ThreatModel(eps=0.1), "fgsm,pgd")
    assert [e.robust for e in low.examples] == [e.robust for e in rec.examples]
    same = robustaudit.audit(trained_cnn, x.numpy(), y.numpy(), eps="1/10", attacks="fgsm,pgd")
    assert [e.to_json() for e in same.examples] == [e.to_json() for e in rec.examples]


@pytest.mark.parametrize("kind", ["tuple", "dict", "object", "one"])
def test_scores_are_found_in_structured_outputs(trained_cnn, digits8, kind: str) -> None:
    x, y = digits8[0][1500:1516], digits8[1][1500:1516]
    plain = robustaudit.audit(trained_cnn, x, y, eps=0.1, attacks="pgd")
    rec = robustaudit.audit(Wrapped(trained_cnn, kind), x, y, eps=0.1, attacks="pgd")
    assert [e.to_json() for e in rec.examples] == [e.to_json() for e in plain.examples]


def test_an_ambiguous_output_asks_for_the_key(trained_cnn, digits8) -> None:
    x, y = digits8[0][:8], digits8[1][:8]
    with pytest.raises(InputError, match="output-key"):
        robustaudit.audit(Wrapped(trained_cnn, "ambiguous"), x, y, eps=0.1, attacks="fgsm")
    rec = robustaudit.audit(Wrapped(trained_cnn, "ambiguous"), x, y, eps=0.1, attacks="fgsm", output_key="scores")
    assert rec.n == 8
    with pytest.raises(InputError, match="no field 'nope'"):
        robustaudit.audit(Wrapped(trained_cnn, "tuple"), x, y, eps=0.1, attacks="fgsm", output_key="nope")


def test_audit_and_cli_write_the_same_results(demo_paths, tmp_path: Path) -> None:
    model, _ = demo_paths
    data = demo_subset(demo_paths, tmp_path, 24)
    robustaudit.audit(model, data, eps="8/255", attacks="fgsm,pgd", seed=2, out=tmp_path / "py", shard_size=10)
    r = CliRunner().invoke(app, ["evaluate", "--model", model, "--data", str(data), "--eps", "8/255", "--attacks",
                                 "fgsm,pgd", "--seed", "2", "--shard-size", "10", "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    a = json.loads((tmp_path / "py" / "results.json").read_text())
    b = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert comparable(a) == comparable(b)
    assert a["threat"]["eps"] == 8 / 255 and a["schema_version"] >= 2
    for key in ("robustaudit_version", "torch_version", "date", "data_sha256", "model_options", "attack_settings"):
        assert key in a
    assert [s["name"] for s in a["attack_settings"]] == ["fgsm", "pgd"] and a["attack_settings"][1]["steps"] == 20
    assert np.array_equal(np.load(tmp_path / "py" / "adversarial.npz")["x_adv"],
                          np.load(tmp_path / "cli" / "adversarial.npz")["x_adv"])
    d = np.load(data)
    arrays = robustaudit.audit(model, d["x"], d["y"], eps="8/255", attacks="fgsm,pgd", seed=2, shard_size=10)
    assert arrays.provenance["data_sha256"] == a["data_sha256"]  # the same values, whatever their container
    assert [e.to_json() for e in arrays.examples] == a["examples"]
    assert (tmp_path / "py" / "report.html").is_file() and (tmp_path / "py" / "summary.md").is_file()


def test_results_json_reads_back(demo_paths, tmp_path: Path) -> None:
    model, _ = demo_paths
    data = demo_subset(demo_paths, tmp_path, 12)
    rec = robustaudit.audit(model, data, eps=0.1, attacks="fgsm", out=tmp_path / "run")
    again = EvalRecord.from_json(json.loads((tmp_path / "run" / "results.json").read_text()), rec.x_adv)
    assert again.examples == rec.examples and again.robust_accuracy == rec.robust_accuracy
    with pytest.raises(AttributeError):
        rec.n = 3  # type: ignore[misc]


def test_version_and_fractions_on_the_command_line(demo_paths, tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"robustaudit {robustaudit.__version__}"
    model, _ = demo_paths
    data = demo_subset(demo_paths, tmp_path, 8)
    r = CliRunner().invoke(app, ["evaluate", "--model", model, "--data", str(data), "--eps", "8/0", "--out",
                                 str(tmp_path / "bad")])
    assert r.exit_code == 2 and "fraction" in r.output and not (tmp_path / "bad").exists()
    assert robustaudit.ThreatModel(eps="4/255").eps == 4 / 255  # type: ignore[arg-type]
    assert robustaudit.attacks.PGD(steps=3).steps == 3 and robustaudit.attacks.Square.requires.name == "SCORES"


def test_py_typed_ships() -> None:
    assert (Path(robustaudit.__file__).parent / "py.typed").is_file()
