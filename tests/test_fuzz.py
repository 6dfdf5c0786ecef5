"""The project's fuzz table: bad inputs for every command give exit code 2, one line on stderr, no traceback, and
leave --out as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from robustaudit.cli import app

NET = """
import torch
def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
"""
BROKEN = {  # user models that fail: on import, when built, in forward, with NaN or integer scores
    "import": "raise RuntimeError('boom')\ndef build(): pass\n",
    "build": "def build():\n    raise ValueError('cannot build')\n",
    "forward": "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
               "        return x @ torch.ones(3, 3)\ndef build(): return M()\n",
    "nan": "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
           "        return torch.full((len(x), 10), float('nan')) + 0 * x.sum()\ndef build(): return M()\n",
    "int": "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
           "        return torch.zeros(len(x), 10, dtype=torch.long)\ndef build(): return M()\n",
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("fuzz")
    (d / "net.py").write_text(NET)
    for kind, code in BROKEN.items():
        (d / f"broken_{kind}.py").write_text(code)
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 8, 8), dtype=np.float32)
    np.savez(d / "ok.npz", x=x, y=np.arange(6) % 10)
    np.savez(d / "nan.npz", x=np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x).astype(np.float32),
             y=np.arange(6) % 10)
    np.savez(d / "label10.npz", x=x, y=np.full(6, 10))
    np.savez(d / "empty.npz", x=x[:0], y=np.zeros(0, dtype=np.int64))
    (d / "a_file").write_text("not a folder")
    (d / "results.json").write_text(json.dumps({"examples": "wrong shape"}))
    return {"net": f"{d / 'net.py'}:build", "ok": str(d / "ok.npz"), "nan": str(d / "nan.npz"),
            "label10": str(d / "label10.npz"), "empty": str(d / "empty.npz"), "file": str(d / "a_file"),
            "under": str(d / "a_file" / "out"), "bad_results": str(d), "dir": str(d),
            **{f"broken_{k}": f"{d / f'broken_{k}.py'}:build" for k in BROKEN}}


def cases(f: dict[str, str]) -> list[tuple[str, list[str]]]:
    ev = ["evaluate", "--model", f["net"], "--eps", "0.1", "--attacks", "fgsm"]
    cu = ["curve", "--model", f["net"], "--eps", "0.05,0.1", "--attacks", "fgsm"]
    ce = ["certify", "--model", f["net"], "--sigma", "0.25", "--n", "20", "--n0", "5"]
    tr = ["transfer", "--target", f["net"], "--surrogates", f["net"], "--eps", "0.1", "--attacks", "fgsm"]
    on = ["online", "--target", f["net"], "--surrogate", f["net"], "--k", "2", "--eps", "0.1"]
    tk = ["topk", "--model", f["net"], "--k", "1", "--budget", "1x2"]
    ro = ["robustify", "--target", f["net"], "--sigma", "0.25", "--epochs", "1", "--pretrain-epochs", "0"]
    table = []
    for name, base, data_opt in (("evaluate", ev, "--data"), ("curve", cu, "--data"), ("certify", ce, "--data"),
                                 ("transfer", tr, "--data"), ("online", on, "--data"), ("topk", tk, "--data")):
        ok = [*base, data_opt, f["ok"]]
        table += [
            (f"{name}: NaN", [*base, data_opt, f["nan"], "--out", "OUT"]),
            (f"{name}: missing data", [*base, data_opt, f["file"] + ".npz", "--out", "OUT"]),
            (f"{name}: empty data", [*base, data_opt, f["empty"], "--out", "OUT"]),
            (f"{name}: out is a file", [*ok, "--out", f["file"]]),
            (f"{name}: out under a file", [*ok, "--out", f["under"]]),
            (f"{name}: bad model", [*[f["dir"] + "/nope.py:build" if a == f["net"] else a for a in ok],
                                    "--out", "OUT"]),
            (f"{name}: bounds nan", [*ok, "--bounds", "nan,1", "--out", "OUT"]),
        ]
        if name in ("evaluate", "curve", "transfer", "topk"):
            table.append((f"{name}: label 10", [*base, data_opt, f["label10"], "--out", "OUT"]))
        for kind in BROKEN if name != "certify" else ("import", "build", "forward"):
            table.append((f"{name}: model {kind}", [*[f[f"broken_{kind}"] if a == f["net"] else a for a in ok],
                                                    "--out", "OUT"]))
        if name in ("evaluate", "transfer", "online"):
            table.append((f"{name}: eps fraction by zero", [*[("1/0" if a == "0.1" else a) for a in ok], "--out",
                                                           "OUT"]))
    table += [
        ("robustify: NaN", [*ro, "--data", f["nan"], "--out", "OUT.pt"]),
        ("robustify: epochs -1", [*ro[:-4], "--epochs", "-1", "--data", f["ok"], "--out", "OUT.pt"]),
        ("robustify: out is a folder", [*ro, "--data", f["ok"], "--out", f["dir"]]),
        ("compare: wrong shape", ["compare", f["bad_results"], f["bad_results"]]),
        ("report: no run", ["report", f["file"] + "-missing"]),
        ("serve: max batch 0", ["serve", "--model", f["net"], "--max-batch", "0"]),
        ("serve: bad shape", ["serve", "--model", f["net"], "--input-shape", "-1,0"]),
        ("serve: empty name", ["serve", "--model", f["net"], "--name", ""]),
        ("serve: port -1", ["serve", "--model", f["net"], "--port", "-1"]),
        ("evaluate: interpreter layer", [*ev, "--data", f["ok"], "--interpreter", "gradcam", "--layer", "nosuch",
                                         "--out", "OUT"]),
        ("evaluate: adaptive", [*ev, "--data", f["ok"], "--adaptive", "maybe", "--out", "OUT"]),
        ("evaluate: eot 0", [*ev, "--data", f["ok"], "--eot", "0", "--out", "OUT"]),
        ("evaluate: eps overflow", [*[("1e308" if a == "0.1" else a) for a in ev], "--norm", "l2", "--data", f["ok"],
                                    "--out", "OUT"]),
        ("report: malformed results", ["report", f["bad_results"]]),
        ("scaling attack: missing", ["scaling", "attack", "--source", f["file"] + ".png", "--target",
                                     f["file"] + ".png", "--size", "8x8", "--out", "OUT.png"]),
        ("scaling detect: bad size", ["scaling", "detect", f["file"], "--size", "8by8"]),
    ]
    return table


def test_every_bad_input_is_one_line_and_exit_2(files: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    failures = []
    for name, args in cases(files):
        out = tmp_path / name.replace(" ", "_").replace(":", "")
        argv = [str(out) + (".pt" if a == "OUT.pt" else ".png" if a == "OUT.png" else "") if a.startswith("OUT")
                else a for a in args]
        r = runner.invoke(app, argv)
        line = r.stderr.strip()
        ok = r.exit_code == 2 and line.count("\n") == 0 and "Traceback" not in r.output and line.startswith("error:")
        written = [p for p in tmp_path.iterdir() if p.name.startswith(out.name)]
        if not ok or written:
            failures.append(f"{name}: exit {r.exit_code}, written {written}, stderr {line[:200]!r}")
    assert not failures, "\n".join(failures)
