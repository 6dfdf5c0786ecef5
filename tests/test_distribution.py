"""Distribution inference: n_leaked against the spec's figures and its round trip through `bound`, a fair game
at equal ratios, every attack beating chance at class shares 0.2 vs 0.8 on digits MLPs, and the command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from robustaudit.cli import app
from robustaudit.errors import InputError
from robustaudit.privacy.distribution import Property, bound, distribution_audit, n_leaked

RECIPE = """from robustaudit.demo import digits_mlp_small as train
"""


@pytest.fixture(scope="module")
def train() -> object:
    from robustaudit.demo import digits_mlp_small

    return digits_mlp_small


@pytest.mark.parametrize(("a", "a0", "a1", "expected"), [(0.75, 0.5, 0.2, 0.612), (0.90, 0.5, 0.1, 1.738),
                                                         (0.99, 0.5, 0.0, 4.658)])
def test_n_leaked_matches_the_spec_and_round_trips(a: float, a0: float, a1: float, expected: float) -> None:
    n = n_leaked(a, a0, a1)
    assert n == pytest.approx(expected, abs=5e-4)
    assert bound(a0, a1, n) == pytest.approx(a, abs=1e-12)
    for m in (0.5, 3.0, 17.0):
        assert n_leaked(bound(a0, a1, m), a0, a1) == pytest.approx(m, abs=1e-9)


def test_n_leaked_edge_cases() -> None:
    assert n_leaked(0.8, 0.3, 0.3) == 0.0 and n_leaked(0.5, 0.2, 0.8) == 0.0
    assert math.isinf(n_leaked(1.0, 0.2, 0.8)) and math.isinf(n_leaked(0.7, 0.0, 1.0))
    with pytest.raises(InputError):
        n_leaked(75.0, 0.5, 0.2)  # a percentage, not a fraction


def test_property_parsing_and_bad_input(digits8) -> None:
    x, y = digits8
    assert Property.parse("class:0,1").holds(x, y).sum() == int(((y == 0) | (y == 1)).sum())
    assert Property.parse("feature:10:0.5").holds(x, y).sum() == int((x.flatten(1)[:, 10] > 0.5).sum())
    for bad in ("class:", "feature:3", "colour:red"):
        with pytest.raises(InputError):
            Property.parse(bad)
    with pytest.raises(InputError, match="cannot draw"):
        distribution_audit(x, y, Property((0,)), lambda a, b: nn.Linear(64, 10), (0.5, 0.9), size=500, victims=1,
                           attacks=["loss"])


@pytest.mark.slow
def test_every_attack_beats_chance_at_shares_02_and_08(digits8, train) -> None:
    x, y = digits8
    rec = distribution_audit(x, y, Property(tuple(range(5))), train, (0.2, 0.8), size=200, victims=15, shadows=25,
                             meta_epochs=150)
    for name in ("loss", "threshold", "meta"):
        r = rec.results[name]
        assert r["accuracy"] > 0.5 and r["accuracy_ci95"][0] > 0.5, (name, r)  # type: ignore[index]
        assert r["n_leaked"] > 0 and r["seconds"] > 0  # type: ignore[operator]
    assert rec.queries_per_model > 0


@pytest.mark.slow
def test_equal_ratios_are_a_fair_game(digits8, train) -> None:
    """Spec acceptance check 2: at equal shares every attack is at 50 +- 5% over 5 repetitions."""
    x, y = digits8
    accuracy: dict[str, list[float]] = {"loss": [], "threshold": []}
    for seed in range(5):
        rec = distribution_audit(x, y, Property(tuple(range(5))), train, (0.5, 0.5), size=200, victims=20,
                                 shadows=10, attacks=["loss", "threshold"], seed=seed)
        for name, values in accuracy.items():
            values.append(rec.results[name]["accuracy"])  # type: ignore[arg-type]
            assert rec.results[name]["n_leaked"] == 0.0
    for values in accuracy.values():
        assert abs(sum(values) / len(values) - 0.5) <= 0.05


def test_cli_writes_distribution_json(digits8, tmp_path) -> None:
    x, y = digits8
    (tmp_path / "recipe.py").write_text(RECIPE)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    out, recipe = tmp_path / "dist", f"{tmp_path / 'recipe.py'}:train"
    res = CliRunner().invoke(app, ["privacy", "distribution", "--data", str(tmp_path / "d.npz"), "--property",
                                   "class:0,1,2,3,4", "--ratios", "0.2,0.8", "--train", recipe, "--victims", "3",
                                   "--shadows", "4", "--train-size", "150", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    text = (out / "distribution.json").read_text()
    assert "Infinity" not in text and "NaN" not in text  # strict JSON: an unbounded n_leaked is null
    data = json.loads(text)
    for name in ("loss", "threshold", "meta"):
        assert {"accuracy", "accuracy_ci95", "n_leaked", "seconds"} <= set(data[name])
    assert data["ratios"] == [0.2, 0.8] and (out / "report.html").is_file() and (out / "summary.md").is_file()
    bad = CliRunner().invoke(app, ["privacy", "distribution", "--data", str(tmp_path / "d.npz"), "--property",
                                   "class:0", "--ratios", "0.2", "--train", recipe,
                                   "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--ratios" in bad.output


def test_torch_generator_is_the_only_randomness(digits8, train) -> None:
    x, y = digits8
    a = distribution_audit(x, y, Property((0, 1, 2, 3, 4)), train, (0.2, 0.8), size=100, victims=2, shadows=2,
                           attacks=["loss"], seed=3)
    torch.manual_seed(123)
    b = distribution_audit(x, y, Property((0, 1, 2, 3, 4)), train, (0.2, 0.8), size=100, victims=2, shadows=2,
                           attacks=["loss"], seed=3)
    assert a.results["loss"]["accuracy"] == b.results["loss"]["accuracy"]
