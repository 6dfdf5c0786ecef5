"""Ownership verification: the signature carved into the mask keeps the sparsity exactly and reads back bit for
bit; the null distribution of an independent model's matching bits is exact; on a digits CNN pruned to 80% the
owner's model verifies (also after 5 epochs of fine-tuning and pruning to 90%), an independently trained and pruned
one does not; black-box verification through a real `robustaudit serve` counts every query."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import serve_label_only, served_examples
from torch import nn
from typer.testing import CliRunner

from robustaudit.cli import app
from robustaudit.errors import InputError
from robustaudit.ownership.qr import decode, make_code
from robustaudit.ownership.run import embed_signature, removal_attacks, verify_ownership
from robustaudit.ownership.signature import Placement, carved_pattern, check, choose_window, embed, read_window
from robustaudit.ownership.sparsity import apply_masks, magnitude_masks, masks_of, project, sparsity

pytest.importorskip("segno")
pytest.importorskip("cv2")


def test_qr_round_trip_and_restored_function_patterns() -> None:
    code = make_code("owner:A")
    assert code.size == 21 and decode(code.bits) == "owner:A"
    broken = code.bits.copy()
    broken[code.function == 1] ^= 1  # every function module wrong: no decoder finds the code...
    assert decode(broken) is None
    place = Placement("w", 0, 0, carved_pattern(code, np.zeros_like(code.bits)))
    # ...but verification restores them from the key, so the data modules alone decide
    assert check(broken, code, place)["decoded"] == "owner:A"
    with pytest.raises(InputError, match="does not fit|needs QR version"):
        make_code("x" * 200)
    with pytest.raises(InputError, match="larger|room"):
        make_code("owner:A", max_size=16)


@pytest.mark.parametrize("shape", [(40, 32, 3, 3), (64, 48)])
def test_embedding_keeps_the_sparsity_exactly_and_reads_back_bit_for_bit(shape) -> None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(shape, generator=gen)
    masks = {"w": weight.abs() > weight.abs().flatten().quantile(0.8)}
    code = make_code("sig")
    pad = np.random.default_rng(1).integers(0, 2, code.bits.shape).astype(np.uint8)
    where = choose_window(masks, code, code.bits)
    place = Placement("w", where.row, where.col, carved_pattern(code, pad))
    new, floors, changes = embed(masks, {"w": weight}, code, place, floor=0.5)
    assert int(new["w"].sum()) == int(masks["w"].sum())  # not one weight more or less
    assert changes["switched_on"] + changes["cleared"] > 0
    signed = weight * new["w"]
    r = check(read_window(signed, place, code.size, int(new["w"].sum())), code, place)
    assert r["bit_error_rate"] == 0.0 and r["decoded"] == "sig"
    rows, cols = place.window(code.size)
    window = project(new["w"])[rows, cols].numpy()
    data = code.function == 0
    assert (window[data] == place.pattern[data]).all()
    # a floor sits on exactly one kept entry of every switched-on 1-kernel of the window
    f = floors["w"].reshape(shape[0], shape[1], -1)[rows, cols]
    assert ((f > 0).sum(-1).numpy() == ((place.pattern == 1) & data)).all()
    assert bool(new["w"][floors["w"] > 0].all())


def test_the_null_distribution_of_an_independent_model_is_exact() -> None:
    """For a fixed suspect pattern (here dense: 90% of kernels on), p-values over fresh pads are uniform, so the
    false-ownership rate at alpha is at most alpha."""
    code = make_code("sig")
    rng = np.random.default_rng(0)
    suspect = (rng.random(code.bits.shape) < 0.9).astype(np.uint8)
    p = [check(suspect, code, Placement("w", 0, 0, carved_pattern(code, rng.integers(0, 2, code.bits.shape)
                                                                   .astype(np.uint8))))["p_value"]
         for _ in range(400)]
    assert np.mean(np.array(p) < 0.05) <= 0.075
    assert np.mean(np.array(p) < 0.5) == pytest.approx(0.5, abs=0.1)


@pytest.fixture(scope="module")
def owned(demo_paths, tmp_path_factory):
    """The demo digits CNN (.pt2) pruned to 80% with a signature and a 50-input trigger set."""
    from robustaudit.demo import digits_32

    folder = tmp_path_factory.mktemp("ownership")
    xtr, ytr, xte, yte = digits_32()
    np.savez(folder / "train.npz", x=xtr, y=ytr)
    np.savez(folder / "test.npz", x=xte, y=yte)
    r = embed_signature(demo_paths[0], folder / "train.npz", test_data=folder / "test.npz", signature="owner:A",
                        key_seed=1, out=folder / "owner")
    return folder, r


@pytest.fixture(scope="module")
def independent(owned):
    from robustaudit.demo import digits_32, train_digits_cnn
    from robustaudit.models.load import save_program

    folder, _ = owned
    xtr, ytr, _, _ = digits_32()
    net = train_digits_cnn(xtr, ytr, epochs=8, seed=5)
    apply_masks(net, magnitude_masks(net, 0.8))
    save_program(net, folder / "independent.pt2", torch.from_numpy(xtr[:2]))
    return folder / "independent.pt2"


def test_embedding_costs_under_a_point_and_the_owner_verifies(owned) -> None:
    folder, r = owned
    assert r["nonzeros_signed"] == r["nonzeros_pruned"]
    assert abs(r["sparsity"] - 0.8) < 1e-3
    assert r["accuracy"]["cost"] < 0.01
    assert r["accuracy"]["signed_ticket"] > 0.9
    assert r["white_box"]["bit_error_rate"] == 0.0 and r["white_box"]["decoded"] == "owner:A"
    assert r["black_box"]["trigger_accuracy"] >= 0.9
    for name in ("model.pt2", "model.key.json", "model.key.npz", "embed.json", "qr.png", "report.html",
                 "summary.md"):
        assert (folder / "owner" / name).is_file()
    v = verify_ownership(folder / "owner" / "model.pt2", folder / "owner" / "model.key.json", out=folder / "v")
    assert v["owned"] and v["white_box"]["bit_error_rate"] == 0.0 and v["black_box"]["queries"] == 50


def test_ownership_survives_fine_tuning_and_pruning_to_90_percent(owned) -> None:
    folder, _ = owned
    a = removal_attacks(folder / "owner" / "model.pt2", folder / "owner" / "model.key.json", folder / "train.npz",
                        test_data=folder / "test.npz", finetune=5, prune=(0.9,), fill=(0.01,), out=folder / "attack")
    rows = {(row["attack"], row["strength"]): row for row in a["rows"]}
    for k in (("finetune", 5), ("prune", 0.9)):
        assert rows[k]["verified"] and rows[k]["bit_error_rate"] == 0.0 and rows[k]["qr_decodes"], rows[k]
    assert abs(rows[("prune", 0.9)]["sparsity"] - 0.9) < 1e-3
    assert rows[("fill", 0.01)]["verified"]
    assert (folder / "attack" / "report.html").is_file()


def test_an_independent_model_is_not_claimed(owned, independent) -> None:
    folder, _ = owned
    v = verify_ownership(independent, folder / "owner" / "model.key.json", out=folder / "vi")
    assert not v["owned"]
    assert 0.4 <= v["white_box"]["bit_error_rate"] <= 0.6 and v["white_box"]["p_value"] > 0.05
    assert v["white_box"]["decoded"] is None
    assert v["black_box"]["trigger_accuracy"] <= 0.2


def test_cli_exit_codes(owned, independent) -> None:
    folder, _ = owned
    key = str(folder / "owner" / "model.key.json")
    runner = CliRunner()
    ok = runner.invoke(app, ["ownership", "verify", "--model", str(folder / "owner" / "model.pt2"), "--key", key,
                             "--out", str(folder / "cli1")])
    assert ok.exit_code == 0, ok.output
    assert (folder / "cli1" / "verify.json").is_file()
    no = runner.invoke(app, ["ownership", "verify", "--model", str(independent), "--key", key, "--out",
                             str(folder / "cli2")])
    assert no.exit_code == 1, no.output
    bad = runner.invoke(app, ["ownership", "verify", "--model", str(independent), "--key", str(folder / "nope.json"),
                              "--out", str(folder / "cli3")])
    assert bad.exit_code == 2 and "ownership key" in bad.output


def test_black_box_verification_through_serve_counts_every_query(owned) -> None:
    from robustaudit.models.load import load_module

    folder, _ = owned
    url, server = serve_label_only(load_module(folder / "owner" / "model.pt2"))
    try:
        before = served_examples(url)
        v = verify_ownership(url, folder / "owner" / "model.key.json", out=folder / "remote")
        served = served_examples(url) - before
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
    assert v["white_box"] is None and v["owned"]
    assert v["queries"] == 50 == served
    with pytest.raises(InputError, match="local PyTorch"):
        verify_ownership(url, folder / "owner" / "model.key.json", mode="white", out=None)


def test_bad_inputs_are_refused(owned) -> None:
    folder, _ = owned
    with pytest.raises(InputError, match="sparsity"):
        embed_signature(nn.Sequential(nn.Flatten(), nn.Linear(1024, 10)), folder / "train.npz", signature="s",
                        target_sparsity=1.5, out=folder / "bad")
    with pytest.raises(InputError, match="no prunable layer|room"):  # 10 outputs: no 21x21 window
        embed_signature(nn.Sequential(nn.Flatten(), nn.Linear(1024, 10)), folder / "train.npz", signature="s",
                        out=folder / "bad", epochs=0)
    assert sparsity(masks_of(nn.Linear(3, 3))) == 0.0
