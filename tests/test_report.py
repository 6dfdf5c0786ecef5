"""The HTML report, rendered by a real headless Chromium: the page loads from disk, its headline is the
number in results.json, and every image (plots and gallery, all embedded) decodes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import demo_subset
from typer.testing import CliRunner

from robustaudit.cli import app


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    if os.geteuid() == 0 and shutil.which("apt-get"):  # Debian's chromium package, as the README says
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, capture_output=True,
                           timeout=900, env=env)
        except (subprocess.SubprocessError, OSError) as e:
            pytest.skip(f"headless Chromium is not installed and apt-get could not install it: {e}")
        if found := shutil.which("chromium"):
            return found
    pytest.skip("headless Chromium is not installed (apt-get install chromium) and cannot be installed here")


def _dom(browser: str, page: Path) -> str:
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    return out.stdout


def test_report_renders_in_chromium(tmp_path: Path, demo_paths) -> None:
    model, _ = demo_paths
    small = demo_subset(demo_paths, tmp_path, 20)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["evaluate", "--model", str(model), "--data", str(small), "--eps", "0.1",
                                 "--attacks", "pgd", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    dom = _dom(_chromium(), out / "report.html")
    headline = re.search(r'id="headline">([^<]+)<', dom)
    assert headline is not None and headline.group(1).strip() == f"{results['robust_accuracy']:.3f}"
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert loaded is not None
    ok, total = int(loaded.group(1)), int(loaded.group(2))
    broken = sum(1 for e in results["examples"] if e["broken_by"])
    assert total >= 2 + 3 * min(broken, 8) and ok == total  # plots + clean/adversarial/difference per example
    (out / "report.html").unlink()
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    assert (out / "report.html").read_text() == html


SHOTS = os.environ.get("ROBUSTAUDIT_SCREENSHOTS")  # a folder to keep the screenshots in (docs/screenshots)


def _runs(demo_paths, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """One small run of every command with a report: (its folder, the headline its JSON gives)."""
    model, _ = demo_paths
    data = str(demo_subset(demo_paths, tmp_path, 16))
    runner = CliRunner()
    commands = {
        "evaluate": ["evaluate", "--model", model, "--data", data, "--eps", "0.1", "--attacks", "pgd", "--quiet",
                     "--fail-under", "0.0"],
        "certify": ["certify", "--model", model, "--data", data, "--sigma", "0.25", "--n0", "10", "--n", "100",
                    "--quiet", "--fail-under", "0.0"],
        "transfer": ["transfer", "--target", model, "--surrogates", model, "--attacks", "mi", "--eps", "0.1",
                     "--data", data, "--quiet", "--no-ensemble"],
        "topk": ["topk", "--model", model, "--data", data, "--k", "2", "--attacks", "cwk", "--budget", "1x5",
                 "--quiet"],
        "online": ["online", "--target", model, "--surrogate", model, "--data", data, "--k", "3", "--eps", "0.1",
                   "--permutations", "5", "--quiet"],
    }
    files = {"evaluate": "results.json", "certify": "certify.json", "transfer": "transfer.json",
             "topk": "topk.json", "online": "online.json"}
    runs = {}
    for name, argv in commands.items():
        out = tmp_path / name
        r = runner.invoke(app, [*argv, "--out", str(out)])
        assert r.exit_code == 0, (name, r.output)
        j = json.loads((out / files[name]).read_text())
        headline = {
            "evaluate": lambda j: f"{j['robust_accuracy']:.3f}",
            "certify": lambda j: f"{j['certified_accuracy']['0.5']['certified_accuracy']:.3f}",
            "transfer": lambda j: f"{j['worst_case_robust_accuracy']:.3f}",
            "topk": lambda j: f"{max(r['success_rate'] for r in j['results']):.3f}",
            "online": lambda j: f"{max(s['competitive_ratio'] for s in j['strategies'].values()):.3f}",
        }[name](j)
        runs[name] = (out, headline)
    return runs


def test_every_report_renders_with_its_provenance(tmp_path: Path, demo_paths) -> None:
    """Each command's report in headless Chromium: the headline is its JSON's figure, every image decodes, the
    provenance block names the data's sha256 and the versions, summary.md carries the same block; a screenshot
    of each page decodes and is not blank."""
    from PIL import Image

    from robustaudit.version import __version__

    browser = _chromium()
    for name, (out, headline) in _runs(demo_paths, tmp_path).items():
        dom = _dom(browser, out / "report.html")
        shown = re.search(r'id="headline">([^<]+)<', dom)
        assert shown is not None and shown.group(1).strip() == headline, name
        loaded = re.search(r'data-images="(\d+)/(\d+)"', dom)
        assert loaded is not None and loaded.group(1) == loaded.group(2), name
        block = dom[dom.index('id="provenance"'):]
        assert f"robustaudit {__version__}" in block and "data sha256" in block and "seed" in block, name
        assert re.search(r"[0-9a-f]{64}", block), name  # the data's (and the model file's) sha256
        assert "## Provenance" in (out / "summary.md").read_text(), name
        shot = (Path(SHOTS) if SHOTS else tmp_path) / f"{name}.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--virtual-time-budget=5000", "--window-size=1100,1600", f"--screenshot={shot}",
                        (out / "report.html").as_uri()], capture_output=True, timeout=120)
        with Image.open(shot) as im:
            pixels = np.asarray(im.convert("L"), dtype=np.float64)
        assert pixels.shape == (1600, 1100) and pixels.std() > 5, name  # a rendered page, not a blank one
