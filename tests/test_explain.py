"""Explanations: the linear-model identities of every explainer (locally and through a real server, counts equal),
no free lunch on an MLP, the tabular probing + surrogate, the CLI contract and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import Counting, serve_label_only, served_examples

from robustaudit.commands import explain
from robustaudit.errors import AccessError, InputError
from robustaudit.explain.explainers import GRADIENT_METHODS, QUERY_METHODS, Settings, explain_gradients, explain_queries
from robustaudit.models import TorchModel, as_score_only
from robustaudit.oracle import Oracle
from robustaudit.types import Bounds

ALL = ",".join(GRADIENT_METHODS + QUERY_METHODS)


def _linear(d: int = 64, k: int = 3, seed: int = 0) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(d, k)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g))
        lin.bias.copy_(torch.randn(k, generator=g))
    return lin, torch.rand(4, d, generator=g), torch.tensor([0, 1, 2, 1])


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(1).double(), b.flatten(1).double()).min())


# the identities of spec explanations.md for f(x) = w·x + b: which methods give w, which w ⊙ x
GIVES_W = {"saliency", "smoothgrad", "clime"}


def test_every_explainer_meets_its_linear_identity() -> None:
    lin, x, t = _linear()
    w = lin.weight.detach()[t]
    s = Settings(n_samples=2000)
    for m in GRADIENT_METHODS:
        a = explain_gradients(lin, x, t, m, s, seed=0)
        assert _cos(a, w if m in GIVES_W else w * x) >= 0.999, m
    counted = Counting(lin)
    oracle = Oracle(as_score_only(TorchModel(counted)), len(x))
    for m in QUERY_METHODS:
        a = torch.cat([explain_queries(oracle, x[i:i + 1], i, int(t[i]), m, s, seed=0) for i in range(len(x))])
        assert _cos(a, w if m in GIVES_W else w * x) >= (0.99 if m == "kernelshap" else 0.999), m
    # exact counts: occlusion 64 features + the input, 2000 samples for each of the three others
    assert oracle.queries.tolist() == [65 + 3 * 2000] * 4 and counted.forward_rows == int(oracle.queries.sum())
    # the sum over features is the attribution of the whole (efficiency), here f(x) - f(0)
    a = explain_queries(Oracle(as_score_only(TorchModel(lin)), 1), x[:1], 0, 0, "kernelshap", s, seed=1)
    assert float(a.sum()) == pytest.approx(float(lin.weight[0] @ x[0]), rel=1e-3)


def test_query_explainers_through_serve_count_what_the_server_saw(tmp_path: Path) -> None:
    lin, x, t = _linear(seed=1)
    url, server = serve_label_only(lin, labels=False)
    try:
        before = served_examples(url)
        doc = explain(url, x, t, methods="occlusion,lime,kernelshap", target="label", seeds=1, n_samples=2000,
                      n_eval=20, global_top=0, budget=7000, bounds=Bounds(0.0, 1.0), out=tmp_path)
        assert doc["queries_total"] == served_examples(url) - before
        assert max(doc["queries_per_example"]) <= 7000
        maps = np.load(tmp_path / "attributions.npz")
        w = lin.weight.detach()[t]
        for m in maps.files:  # the identities hold through the server too
            assert _cos(torch.from_numpy(maps[m]), w * x) >= (0.99 if m == "kernelshap" else 0.999), m
        with pytest.raises(AccessError, match="gradients"):
            explain(url, x, t, methods="saliency,lime", seeds=1, global_top=0)
        with pytest.raises(InputError, match="budget"):
            explain(url, x, t, methods="lime", seeds=1, global_top=0, budget=100)
    finally:
        server.should_exit = True  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mlp = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        opt = torch.optim.Adam(mlp.parameters(), 1e-2)
        for _ in range(200):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(mlp(x[:1500]), y[:1500]).backward()
            opt.step()
    return mlp, x[1500:1508], y[1500:1508]


def test_no_free_lunch_the_recommendation_follows_the_neighbourhood(digits_mlp) -> None:
    mlp, x, y = digits_mlp
    picks = {}
    for nb in ("gaussian:0.1", "removal"):
        doc = explain(mlp, x, y, methods=ALL, neighbourhood=nb, n_samples=400, n_eval=100, seeds=2, global_top=0)
        f = doc["faithfulness"]
        picks[nb] = doc["recommended"]
        assert doc["recommended"] == min(f, key=lambda m: f[m]["lfa_loss"]["mean"])
        assert all(f[m]["lfa_loss"]["ci95"] is not None for m in f)
    # small Gaussian noise: a gradient-like method; removing features: a removal-based one (Han et al. 2022)
    assert picks["gaussian:0.1"] in GIVES_W
    assert picks["removal"] in ("lime", "kernelshap", "occlusion")


def test_tabular_probing_recovers_the_informative_features() -> None:
    from sklearn.datasets import make_classification

    xs, ys = make_classification(n_samples=4000, n_features=500, n_informative=10, n_redundant=0, shuffle=False,
                                 class_sep=2.0, random_state=0)
    order = np.random.default_rng(0).permutation(len(xs))  # shuffle=False keeps the informative columns first
    xs, ys = xs[order], ys[order]
    xs = (xs - xs.min(0)) / (xs.max(0) - xs.min(0))
    x, y = torch.tensor(xs, dtype=torch.float32), torch.tensor(ys)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mlp = torch.nn.Sequential(torch.nn.Linear(500, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
        opt = torch.optim.Adam(mlp.parameters(), 1e-3, weight_decay=1e-3)
        for _ in range(300):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(mlp(x[:3000]), y[:3000]).backward()
            opt.step()
    counted = Counting(mlp)
    doc = explain(as_score_only(TorchModel(counted)), x[3000:3300], y[3000:3300], methods="occlusion", seeds=1,
                  n_eval=10, neighbourhood="removal")
    g = doc["global"]
    assert len(set(g["top"]) & set(range(10))) >= 8
    lo, hi = g["fidelity_ci95"]
    assert 0 <= lo <= g["fidelity"] <= hi <= 1 and g["fidelity"] > 0.6
    assert "|---" in g["rules"] and g["local"][0]["path"]
    assert doc["queries_total"] == counted.forward_rows


def test_explain_cli_contract(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 8 * 8, 3))
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    data = tmp_path / "d.npz"
    np.savez(data, x=x.numpy(), y=np.array([0, 1, 2]))
    model = tmp_path / "m.pt"
    torch.jit.script(net).save(str(model))
    out = tmp_path / "run"
    base = [sys.executable, "-m", "robustaudit", "explain", "--model", str(model), "--data", str(data)]
    proc = subprocess.run(base + ["--methods", "saliency,ig,occlusion,lime", "--target", "label", "--seeds", "2",
                                  "--n-samples", "100", "--n-eval", "20", "--features", "patches:2", "--out",
                                  str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    maps = np.load(out / "attributions.npz")
    assert sorted(maps.files) == ["ig", "lime", "occlusion", "saliency"]
    assert all(maps[m].shape == tuple(x.shape) for m in maps.files)
    doc = json.loads((out / "explanations.json").read_text())
    assert doc["recommended"] in maps.files and doc["explained_class"] == [0, 1, 2]
    assert doc["n_features"] == [16, 16, 16]
    # patches: every element of a 2x2 patch carries a quarter of the patch's attribution
    lime = maps["lime"][0, 0]
    assert np.allclose(lime[0:2, 0:2], lime[0, 0])
    assert (out / "report.html").is_file() and (out / "summary.md").is_file()
    bad = subprocess.run(base + ["--methods", "saliency", "--access", "scores", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "gradients" in bad.stderr
    bad = subprocess.run(base + ["--methods", "shap", "--out", str(tmp_path / "c")], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "unknown explainer" in bad.stderr
