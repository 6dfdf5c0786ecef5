"""Membership inference: exact identities (gap accuracy, LOSS AUC = scikit-learn's), the attacks' power on an
overfit digits MLP against a regularised one, exact label-query counts through `robustaudit serve`, access
refusals, unbalanced pools, and the command's files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import serve_label_only, served_examples
from sklearn.metrics import roc_auc_score
from torch import nn
from typer.testing import CliRunner

from robustaudit.cli import app
from robustaudit.commands import membership
from robustaudit.demo import digits_8, digits_mlp
from robustaudit.errors import AccessError, InputError
from robustaudit.models import TorchModel, as_label_only, as_score_only
from robustaudit.privacy import Pool, membership_audit
from robustaudit.privacy.metrics import auc, roc, tpr_at

RECIPE = """from robustaudit.demo import digits_mlp as train
"""
N = 100  # members and as many non-members


@pytest.fixture(scope="module")
def pool() -> Pool:
    """100 members (the training set of `digits_mlp`, which fits it) and 100 other digits."""
    return Pool(*digits_8(n=N))


@pytest.fixture(scope="module")
def overfit(pool) -> nn.Module:
    return digits_mlp(pool.x[:N], pool.y[:N])


@pytest.fixture(scope="module")
def overfit_record(pool, overfit):
    return membership_audit(TorchModel(overfit), pool, shadow=digits_mlp, n_shadows=8, budget=1000).results()


def test_gap_accuracy_is_half_plus_half_the_generalisation_gap(pool, overfit, overfit_record) -> None:
    with torch.no_grad():
        correct = (overfit(pool.x).argmax(1) == pool.y).double()
    gap = 0.5 + (float(correct[:N].mean()) - float(correct[N:].mean())) / 2
    assert overfit_record["gap"]["accuracy"] == pytest.approx(gap, abs=1e-12)
    assert overfit_record["gap"]["queries_per_example"] == 1.0


def test_loss_auc_is_scikit_learns_auc_of_the_negated_losses(pool, overfit, overfit_record) -> None:
    with torch.no_grad():
        losses = nn.functional.cross_entropy(overfit(pool.x), pool.y, reduction="none").double().numpy()
    member = pool.member.numpy()
    assert overfit_record["loss"]["auc"] == pytest.approx(roc_auc_score(member, -losses), abs=1e-9)
    assert overfit_record["confidence"]["auc"] == pytest.approx(roc_auc_score(member, -losses), abs=1e-6)
    assert overfit_record["loss"]["queries_per_example"] == 1.0


def test_metrics_match_scikit_learn_with_ties() -> None:
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(0)
    member = rng.random(300) < 0.4
    score = np.round(rng.normal(size=300) + member, 1)  # many ties
    fpr, tpr = roc(member, score)
    f2, t2, _ = roc_curve(member, score, drop_intermediate=False)
    assert np.allclose(fpr, f2) and np.allclose(tpr, t2)
    assert auc(member, score) == pytest.approx(roc_auc_score(member, score), abs=1e-12)
    assert tpr_at(fpr, tpr, 0.0) == float(tpr[fpr == 0].max())


def test_on_an_overfit_model_the_attacks_find_members(overfit_record) -> None:
    r = overfit_record
    assert r["loss"]["auc"] > 0.6
    assert r["lira"]["tpr_at_fpr"]["0.01"] > r["loss"]["tpr_at_fpr"]["0.01"]
    assert r["lira"]["auc"] > r["loss"]["auc"]
    assert r["boundary"]["auc"] > 0.55
    for name, a in r.items():
        lo, hi = a["auc_ci95"]
        assert lo <= a["auc"] <= hi, name
    assert 900 <= r["boundary"]["queries_per_example"] <= 1000 and r["boundary"]["queries_max"] <= 1000
    assert r["augmentation"]["queries_per_example"] == 5.0
    assert r["lira"]["queries_per_example"] == 2.0  # the input and its mirror


def test_on_a_regularised_model_the_boundary_attack_is_near_chance(pool) -> None:
    net = digits_mlp(pool.x[:N], pool.y[:N], weight_decay=0.3, epochs=20)
    r = membership_audit(as_label_only(TorchModel(net)), pool, ["gap", "boundary"], budget=500).results()
    assert abs(r["boundary"]["auc"] - 0.5) < 0.07
    assert abs(r["gap"]["accuracy"] - 0.5) < 0.05


def test_attacks_are_refused_above_the_offered_access(pool, overfit) -> None:
    with pytest.raises(AccessError, match="scores access"):
        membership_audit(as_label_only(TorchModel(overfit)), pool, ["loss"])
    with pytest.raises(InputError, match="shadow"):
        membership_audit(as_score_only(TorchModel(overfit)), pool, ["lira"])
    with pytest.raises(InputError, match="unknown membership attack"):
        membership_audit(TorchModel(overfit), pool, ["nope"])
    with pytest.raises(InputError, match="both members and non-members"):
        Pool(pool.x[:N], pool.y[:N], torch.ones(N, dtype=torch.bool))


def test_an_unbalanced_pool_is_balanced_with_a_warning(pool, overfit) -> None:
    lopsided = Pool(pool.x[: N + 30], pool.y[: N + 30], pool.member[: N + 30])  # 100 members, 30 non-members
    rec = membership_audit(TorchModel(overfit), lopsided, ["loss", "gap"])
    assert int(rec.member.sum()) == 30 and int((~rec.member).sum()) == 30
    assert "unbalanced" in rec.warnings[0]


def test_label_only_attacks_through_serve_count_every_query_exactly(pool, overfit, tmp_path) -> None:
    url, server = serve_label_only(overfit)
    try:
        before = served_examples(url)
        np.savez(tmp_path / "pool.npz", x=pool.x.numpy(), y=pool.y.numpy(), member=pool.member.numpy())
        r = membership(url, pool=tmp_path / "pool.npz", attacks=["gap", "augmentation", "boundary"], budget=200,
                       out=tmp_path / "run")
        served = served_examples(url) - before
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
    assert r["access"] == "labels"
    n = 2 * N
    counted = sum(r[a]["queries_per_example"] * n for a in ("augmentation", "boundary")) + n  # + clean labels
    assert served == pytest.approx(counted)
    assert r["boundary"]["queries_max"] <= 200


def test_cli_writes_membership_json_and_the_report(pool, overfit, tmp_path) -> None:
    (tmp_path / "recipe.py").write_text(RECIPE)
    model_path = tmp_path / "target.pt"
    torch.jit.trace(overfit, pool.x[:2]).save(str(model_path))
    np.savez(tmp_path / "members.npz", x=pool.x[:N].numpy(), y=pool.y[:N].numpy())
    np.savez(tmp_path / "nonmembers.npz", x=pool.x[N:].numpy(), y=pool.y[N:].numpy())
    out = tmp_path / "mia"
    recipe = f"{tmp_path / 'recipe.py'}:train"
    res = CliRunner().invoke(app, ["privacy", "membership", "--model", str(model_path), "--members",
                                   str(tmp_path / "members.npz"), "--nonmembers", str(tmp_path / "nonmembers.npz"),
                                   "--attacks", "loss,confidence,lira,gap", "--shadow", recipe,
                                   "--shadows", "4", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "membership.json").read_text())
    for name in ("loss", "confidence", "lira", "gap"):
        assert {"auc", "accuracy", "tpr_at_fpr", "queries_per_example"} <= set(data[name])
        assert data["attacks"][name] == data[name]
    assert (out / "summary.md").is_file() and "ROC" in (out / "report.html").read_text()
    bad = CliRunner().invoke(app, ["privacy", "membership", "--model", str(model_path), "--members",
                                   str(tmp_path / "members.npz"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--nonmembers" in bad.output
    label_only = CliRunner().invoke(app, ["privacy", "membership", "--model", str(model_path), "--pool",
                                          str(tmp_path / "members.npz"), "--out", str(tmp_path / "y")])
    assert label_only.exit_code == 2 and "member" in label_only.output
    refused = CliRunner().invoke(app, ["privacy", "membership", "--model", str(model_path), "--members",
                                       str(tmp_path / "members.npz"), "--nonmembers", str(tmp_path / "nonmembers.npz"),
                                       "--access", "labels", "--attacks", "loss", "--out", str(tmp_path / "z")])
    assert refused.exit_code == 2 and "scores access" in refused.output
