"""The Ray backend on a real local cluster (num_cpus=2) gives the local backend's results, shard by shard."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustaudit.models.load import load_model
from robustaudit.run.backends import RayBackend
from robustaudit.run.data import ArraySource
from robustaudit.run.sharded import evaluate_sharded
from robustaudit.run.store import Store
from robustaudit.threat import ThreatModel

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'robustaudit[ray]'")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_equals_local(cluster, demo_paths, tmp_path: Path) -> None:
    model_path, data_path = demo_paths
    d = np.load(data_path)
    x, y = torch.from_numpy(d["x"][:48]), torch.from_numpy(d["y"][:48]).long()
    factory = functools.partial(load_model, str(model_path))
    threat = ThreatModel(eps=0.1)
    local = evaluate_sharded(factory(), ArraySource(x, y), threat, "pgd", seed=3, shard_size=12, checks=False)
    store = Store(tmp_path / "store.sqlite")
    remote = evaluate_sharded(factory(), ArraySource(x, y), threat, "pgd", seed=3, shard_size=12, checks=False,
                              store=store, backend=RayBackend(factory))
    assert store.done() == {0, 1, 2, 3}  # the driver wrote every shard as it arrived
    store.close()
    strip = ("linf", "l2")  # worker threads may round the last float bits differently
    assert [{k: v for k, v in e.to_json().items() if k not in strip} for e in remote.examples] == \
        [{k: v for k, v in e.to_json().items() if k not in strip} for e in local.examples]
    assert np.allclose([e.linf for e in remote.examples], [e.linf for e in local.examples], atol=1e-6)
    assert remote.robust_accuracy == local.robust_accuracy
    assert json.dumps(remote.attacks[0].success_curve) == json.dumps(local.attacks[0].success_curve)


def test_audit_on_ray_writes_what_the_cli_writes_locally(cluster, demo_paths, tmp_path: Path) -> None:
    from conftest import demo_subset
    from test_api import comparable
    from typer.testing import CliRunner

    import robustaudit
    from robustaudit.cli import app

    model, _ = demo_paths
    data = demo_subset(demo_paths, tmp_path, 36)
    robustaudit.audit(model, data, eps=0.1, attacks="pgd", seed=3, shard_size=12, backend="ray",
                      out=tmp_path / "ray")
    r = CliRunner().invoke(app, ["evaluate", "--model", model, "--data", str(data), "--eps", "0.1", "--attacks", "pgd",
                                 "--seed", "3", "--shard-size", "12", "--out", str(tmp_path / "local")])
    assert r.exit_code == 0, r.output
    a = comparable(json.loads((tmp_path / "ray" / "results.json").read_text()))
    b = comparable(json.loads((tmp_path / "local" / "results.json").read_text()))
    strip = ("linf", "l2")  # worker threads may round the last float bits differently
    for doc in (a, b):
        doc["examples"] = [{k: v for k, v in e.items() if k not in strip} for e in doc["examples"]]
    assert a == b
