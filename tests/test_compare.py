"""Paired comparison of two runs: McNemar's exact test and the paired difference, against independent oracles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import binomtest
from typer.testing import CliRunner

from robustaudit.cli import app
from robustaudit.stats import mcnemar_exact, paired_difference


@pytest.mark.parametrize("b,c", [(0, 0), (3, 0), (7, 2), (10, 10), (1, 25), (40, 55)])
def test_mcnemar_matches_scipy_binomtest(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_paired_difference_interval() -> None:
    d, lo, hi = paired_difference(15, 3, 100)
    assert d == pytest.approx(0.12) and 0 < lo < d < hi  # 15 vs 3 discordant: significant (McNemar p < 0.01)
    assert mcnemar_exact(15, 3) < 0.01
    d, lo, hi = paired_difference(12, 4, 100)
    assert lo < 0 < d < hi and mcnemar_exact(12, 4) > 0.05  # the interval and the test agree
    d, lo, hi = paired_difference(5, 5, 100)
    assert d == 0 and lo == pytest.approx(-hi)
    d, lo, hi = paired_difference(0, 0, 10)
    assert lo < d == 0 < hi  # no disagreement in 10 examples does not prove equality
    d, lo, hi = paired_difference(6, 0, 100)
    assert lo < d < hi  # one side 0: the estimate is not on a bound by construction


def test_paired_difference_covers_the_truth() -> None:
    # Oracle: simulate paired outcomes with known p_b, p_c; the 95% interval must cover p_b - p_c >= 95% of the time
    import numpy as np

    rng = np.random.default_rng(0)
    for p_b, p_c, n in [(0.03, 0.0, 60), (0.10, 0.05, 100), (0.2, 0.2, 40)]:
        counts = rng.multinomial(n, [p_b, p_c, 1 - p_b - p_c], size=2000)
        pairs, seen = [(int(b), int(c)) for b, c, _ in counts], {}
        for pair in set(pairs):
            _, lo, hi = paired_difference(*pair, n)
            seen[pair] = lo <= p_b - p_c <= hi
        assert sum(seen[pair] for pair in pairs) / len(pairs) >= 0.95


def _run(folder: Path, robust: list[bool], labels: list[int]) -> Path:
    folder.mkdir()
    examples = [{"index": i, "label": lab, "robust": r} for i, (r, lab) in enumerate(zip(robust, labels, strict=True))]
    (folder / "results.json").write_text(json.dumps({"examples": examples}))
    return folder


def test_compare_cli(tmp_path: Path) -> None:
    labels = [i % 10 for i in range(40)]
    a = _run(tmp_path / "a", [i < 30 for i in range(40)], labels)  # robust on 0..29
    b = _run(tmp_path / "b", [i < 18 or i >= 38 for i in range(40)], labels)  # robust on 0..17 and 38, 39
    r = CliRunner().invoke(app, ["compare", str(a), str(b), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["robust_only_in_a"] == 12 and out["robust_only_in_b"] == 2
    assert out["difference"] == pytest.approx(0.25)
    assert out["mcnemar_exact_p"] == pytest.approx(binomtest(2, 14, 0.5).pvalue)
    other = _run(tmp_path / "c", [True] * 40, [0] * 40)
    r = CliRunner().invoke(app, ["compare", str(a), str(other)])
    assert r.exit_code == 2 and "same examples" in r.output
    r = CliRunner().invoke(app, ["compare", str(a), str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in r.output
