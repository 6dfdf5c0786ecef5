"""The HTML report, rendered by a real headless Chromium: the page loads from disk, its headline is the
number in results.json, and every image (plots and gallery, all embedded) decodes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

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
