"""`budget` is the hard total of queries per example, everything included (clean check, diagnostics, target
choice, attacks, verification): over the whole attack registry and every access level an attack runs at,
locally (counted by the model itself) and through a real `robustaudit serve` (counted by the server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from conftest import Counting, small_cnn
from test_remote import NET_PY, served_examples, start_serve

import robustaudit
from robustaudit.attacks.registry import available, get
from robustaudit.types import Access, Norm

LEVELS = {Access.GRADIENTS: "gradients", Access.SCORES: "scores", Access.LABELS: "labels"}
CASES = [(name, level, budget) for name in available() for level in LEVELS if level >= get(name).requires
         for budget in (2, 25)]


def _digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.from_numpy(d.images[:n] / 16.0).float()[:, None], torch.from_numpy(d.target[:n])


@pytest.mark.parametrize(("name", "level", "budget"), CASES, ids=[f"{n}-{LEVELS[a]}-{b}" for n, a, b in CASES])
def test_budget_is_the_total_per_example(name: str, level: Access, budget: int) -> None:
    x, y = _digits(6)
    attack = get(name)
    norm = Norm.LINF if Norm.LINF in attack.norms else next(iter(attack.norms))
    net = Counting(small_cnn(seed=1))
    rec = robustaudit.audit(net, x, y, eps=0.3 if norm == Norm.LINF else 2.0, norm=norm, attacks=name,
                            access=LEVELS[level], budget=budget, target=1 if name == "cgba-h" else None)
    queries = [e.queries for e in rec.examples]
    assert max(queries) <= budget
    assert sum(queries) == net.forward_rows  # every pass counted, none twice


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    p = tmp_path_factory.mktemp("net") / "net.py"
    p.write_text(NET_PY)
    proc, base = start_serve("--model", f"{p}:build", "--max-batch", "64")
    yield base
    proc.terminate()
    proc.wait(10)


REMOTE = [(name, level) for name in available() for level in (Access.SCORES, Access.LABELS)
          if level >= get(name).requires]


@pytest.mark.parametrize(("name", "level"), REMOTE, ids=[f"{n}-{LEVELS[a]}" for n, a in REMOTE])
def test_budget_holds_through_serve_and_the_server_agrees(served: str, name: str, level: Access) -> None:
    x, y = _digits(6)
    budget = 25
    attack = get(name)
    norm = Norm.LINF if Norm.LINF in attack.norms else next(iter(attack.norms))
    before = served_examples(served)
    rec = robustaudit.audit(f"{served}/v2/models/model", x, y, eps=0.3 if norm == Norm.LINF else 2.0, norm=norm,
                            attacks=name, budget=budget, access=LEVELS[level],
                            target=1 if name == "cgba-h" else None)
    queries = [e.queries for e in rec.examples]
    assert max(queries) <= budget
    assert sum(queries) == served_examples(served) - before


def test_default_remote_audits_keep_the_budget(served: str) -> None:
    x, y = _digits(12)
    for access, names in (("scores", ["square", "genetic"]), ("labels", ["rays"])):
        before = served_examples(served)
        rec = robustaudit.audit(f"{served}/v2/models/model", x, y, eps=0.2, budget=60, access=access)
        assert [a.name for a in rec.attacks] == names
        assert max(e.queries for e in rec.examples) <= 60
        assert sum(e.queries for e in rec.examples) == served_examples(served) - before


def test_targets_and_labels_are_paid_from_the_budget() -> None:
    x, y = _digits(8)
    net = Counting(small_cnn(seed=1))
    rec = robustaudit.audit(net, x, y, eps=0.3, attacks="square", access="scores", budget=1, target="second")
    # choosing the target took each example's only query: none could be checked, none counts as robust
    assert all(not e.evaluated and not e.robust and e.queries == 1 for e in rec.examples)
    assert "not_evaluated" in rec.flag_codes and rec.robust_accuracy == 0.0
    assert sum(e.queries for e in rec.examples) == net.forward_rows
    rec = robustaudit.audit(net, x, None, eps=0.3, attacks="square", access="scores", budget=10)
    assert max(e.queries for e in rec.examples) <= 10  # labelling by the clean prediction is paid too
