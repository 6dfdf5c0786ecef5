"""Untrusted model files: a crafted .pt2 (a pickled payload that runs a command) and a pickled .pt never run
their code unless --trust-model-file is given; the refusal is one line and exit 2, nothing written."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import robustaudit
from robustaudit.cli import app
from robustaudit.errors import InputError


class Payload:
    """Unpickling this runs a command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (os.system, (f"touch '{self.marker}'",))


def _malicious_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(evil.pt2: a real exported program whose sample-inputs payload is the payload, evil.pt, the marker)."""
    marker = tmp_path / "PWNED"
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    torch.export.save(torch.export.export(net, (torch.rand(2, 1, 8, 8),)), tmp_path / "good.pt2")
    buf = io.BytesIO()
    torch.save((Payload(marker), {}), buf)
    with zipfile.ZipFile(tmp_path / "good.pt2") as src, zipfile.ZipFile(tmp_path / "evil.pt2", "w") as out:
        for item in src.infolist():
            data = src.read(item.filename)
            out.writestr(item, buf.getvalue() if item.filename.endswith("sample_inputs/model.pt") else data)
    torch.save(Payload(marker), tmp_path / "evil.pt")
    return tmp_path / "evil.pt2", tmp_path / "evil.pt", marker


@pytest.mark.filterwarnings("ignore")
def test_model_files_do_not_run_code_without_the_flag(tmp_path: Path) -> None:
    evil_pt2, evil_pt, marker = _malicious_files(tmp_path)
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(4, dtype=np.int64))
    for model in (evil_pt2, evil_pt):
        out = tmp_path / f"out-{model.suffix}"
        proc = subprocess.run([sys.executable, "-m", "robustaudit", "evaluate", "--model", str(model), "--data",
                               str(tmp_path / "d.npz"), "--eps", "0.1", "--out", str(out)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and "trust-model-file" in proc.stderr
        assert not marker.exists() and not out.exists()
        with pytest.raises(InputError, match="trust"):
            robustaudit.audit(str(model), torch.from_numpy(x), torch.zeros(4, dtype=torch.long), eps=0.1)
        assert not marker.exists()
    assert robustaudit.load_model(str(tmp_path / "good.pt2")) is not None  # a clean archive loads as before
    r = CliRunner().invoke(app, ["evaluate", "--model", str(evil_pt2), "--data", str(tmp_path / "d.npz"), "--eps",
                                 "0.1", "--attacks", "fgsm", "--trust-model-file", "--out", str(tmp_path / "t")])
    assert marker.exists(), r.output  # the flag is the only gate: with it, the payload ran
