"""Image-scaling attacks and Decamouflage detection (test-oracles A.10) on the bundled real photographs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from robustaudit.cli import app
from robustaudit.errors import InputError
from robustaudit.scaling import Scaler, Thresholds, calibrate, fit_threshold, scaling_attack, scores
from robustaudit.scaling.detect import centred_spectrum_points
from robustaudit.scaling.guard import ScalingAttackDetected, ScalingGuard
from robustaudit.scaling.images import benign_images, read_image, write_image
from robustaudit.scaling.quality import ssim
from robustaudit.scaling.scalers import VULNERABLE, considered_share

SHAPE, SIZE = (256, 256), (64, 64)
ATTACKED = [Scaler("opencv", "nearest"), Scaler("opencv", "bilinear"), Scaler("opencv", "bicubic"),
            Scaler("pillow", "nearest")]
runner = CliRunner()


def digit_target(i: int) -> np.ndarray:
    """A real handwritten digit, dark on light, as a 64x64 RGB target."""
    d = (255 - load_digits().images[i] * 255 / 16).astype(np.uint8)
    return np.repeat(np.kron(d, np.ones((8, 8), dtype=np.uint8))[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def benign() -> np.ndarray:
    return benign_images(40, SHAPE, seed=0)


@pytest.fixture(scope="module")
def attacks(benign: np.ndarray) -> dict[str, np.ndarray]:
    return {s.name: scaling_attack(benign[30 + i], digit_target(i), s).image for i, s in enumerate(ATTACKED)}


@pytest.mark.parametrize("scaler", [*VULNERABLE, Scaler("opencv", "area"), Scaler("pillow", "bilinear")],
                         ids=lambda s: s.name)
def test_matrices_reproduce_the_library_resize(scaler: Scaler) -> None:
    image = np.random.default_rng(0).uniform(0, 255, (90, 130)).astype(np.float32)
    cl, cr = scaler.matrices(image.shape, (21, 40))
    np.testing.assert_allclose(cl @ image @ cr, scaler.resize(image, (21, 40)), atol=2e-3)


@pytest.mark.parametrize("scaler", ATTACKED, ids=lambda s: s.name)
def test_attack_reaches_the_target_within_the_bound(scaler: Scaler, benign: np.ndarray) -> None:
    target = digit_target(3)
    r = scaling_attack(benign[1], target, scaler)
    assert r.success, r.message
    assert r.unsolved == 0
    linf = np.abs(scaler.resize(r.image, SIZE).astype(float) - target).max()
    assert linf == r.target_linf <= r.bound
    assert r.bound == pytest.approx(3.5 if scaler.method == "nearest" or scaler.method == "bilinear" else 4.51,
                                    abs=0.01)
    assert r.image.dtype == np.uint8 and r.image.shape == benign[1].shape


def test_attack_changes_only_the_pixels_the_scaler_reads(benign: np.ndarray) -> None:
    scaler = Scaler("opencv", "nearest")
    r = scaling_attack(benign[2], digit_target(5), scaler)
    cl, cr = scaler.matrices(SHAPE, SIZE)
    read = np.outer(np.abs(cl).sum(0) > 0, np.abs(cr).sum(1) > 0)
    changed = (r.image != benign[2]).any(axis=2)
    assert changed.any() and not changed[~read].any()
    assert r.considered == pytest.approx(considered_share(cl, cr)) == pytest.approx(1 / 16)


@pytest.mark.parametrize("scaler", [Scaler("opencv", "area"), Scaler("pillow", "bilinear")], ids=lambda s: s.name)
def test_attack_fails_against_robust_scalers(scaler: Scaler, benign: np.ndarray) -> None:
    r = scaling_attack(benign[3], digit_target(7), scaler)
    assert not r.success and "not vulnerable" in r.message
    assert r.changed > 0.9 or r.unsolved > 0
    if scaler.library == "pillow":
        assert r.unsolved > 0  # the QP is infeasible at eps = 1


def test_attack_rejects_bad_input(benign: np.ndarray) -> None:
    target = digit_target(0)
    with pytest.raises(InputError, match="smaller"):
        scaling_attack(target, benign[0], Scaler())
    with pytest.raises(InputError, match="channels"):
        scaling_attack(benign[0], target[:, :, :2], Scaler())
    with pytest.raises(InputError, match="NaN"):
        scaling_attack(np.full(SHAPE, np.nan), target[:, :, 0], Scaler())
    with pytest.raises(InputError, match=r"\[0, 255\]"):
        scaling_attack(benign[0] * 2.0, target, Scaler())
    with pytest.raises(InputError, match="library"):
        Scaler("tensorflow", "bilinear")


def test_ssim_equals_scikit_image(benign: np.ndarray) -> None:
    a, b = benign[0], benign[1]
    ref = structural_similarity(a.astype(float), b.astype(float), data_range=255, channel_axis=2,
                                gaussian_weights=True, sigma=1.5, use_sample_covariance=True)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-5)


def test_detectors_flag_attacks_and_pass_benign(benign: np.ndarray, attacks: dict[str, np.ndarray]) -> None:
    calib, test = benign[:24], benign[24:30]
    csp = [centred_spectrum_points(b) for b in benign[:12]]
    assert np.median(csp) == 1  # the DC peak alone
    for s in ATTACKED:
        th = calibrate(calib, SIZE, [s], percentile=100)
        verdict = th.check(attacks[s.name])
        assert verdict.attack and verdict.flags["rescaling"] and verdict.flags["filtering"], (s.name, verdict)
        assert sum(th.check(b).attack for b in test) == 0
    unknown = calibrate(calib, SIZE, VULNERABLE, percentile=100)
    assert all(unknown.check(a).attack for a in attacks.values())


def test_thresholds_round_trip_and_guard(tmp_path: Path, benign: np.ndarray, attacks: dict[str, np.ndarray]) -> None:
    scaler = Scaler("opencv", "bilinear")
    th = calibrate(benign[:24], SIZE, [scaler], percentile=100)
    th.save(tmp_path / "th.json")
    again = Thresholds.load(tmp_path / "th.json")
    assert again == th
    guard = ScalingGuard(again)
    np.testing.assert_array_equal(guard(benign[25]), scaler.resize(benign[25], SIZE))
    with pytest.raises(ScalingAttackDetected, match="rescaling"):
        guard(attacks[scaler.name])
    with pytest.raises(InputError, match="do not match"):
        th.judge(scores(benign[0], SIZE, VULNERABLE))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not a thresholds file"):
        Thresholds.load(tmp_path / "bad.json")


def test_fit_threshold_maximises_accuracy() -> None:
    assert fit_threshold([1, 2, 3], [10, 11]) == pytest.approx(6.5)
    cut = fit_threshold([1, 2, 3, 12], [10, 11, 13])
    assert sum(b <= cut for b in [1, 2, 3, 12]) + sum(a > cut for a in [10, 11, 13]) == 6


def test_cli_attack_calibrate_detect(tmp_path: Path, benign: np.ndarray) -> None:
    for i in range(8):
        write_image(tmp_path / "benign" / f"{i}.png", benign[i])
    write_image(tmp_path / "source.png", benign[30])
    write_image(tmp_path / "target.png", digit_target(1)[:48, :48])
    r = runner.invoke(app, ["scaling", "attack", "--source", str(tmp_path / "source.png"), "--target",
                            str(tmp_path / "target.png"), "--size", "64x64", "--out", str(tmp_path / "attack.png")])
    assert r.exit_code == 0, r.output
    assert "attack succeeded" in r.output and read_image(tmp_path / "attack.png").shape == (*SHAPE, 3)
    r = runner.invoke(app, ["scaling", "attack", "--source", str(tmp_path / "source.png"), "--target",
                            str(tmp_path / "target.png"), "--size", "64x64", "--method", "area",
                            "--out", str(tmp_path / "area.png")])
    assert r.exit_code == 1 and "not vulnerable" in r.output
    r = runner.invoke(app, ["scaling", "calibrate", "--benign", str(tmp_path / "benign"), "--size", "64x64",
                            "--library", "opencv", "--method", "bilinear", "--percentile", "100",
                            "--out", str(tmp_path / "th.json")])
    assert r.exit_code == 0, r.output
    assert "rescaling (opencv-bilinear)" in r.output and "{" not in r.output  # a table, not a Python dict
    clean = [str(tmp_path / "benign" / f"{i}.png") for i in range(3)]
    r = runner.invoke(app, ["scaling", "detect", *clean, "--thresholds", str(tmp_path / "th.json")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["scaling", "detect", *clean, str(tmp_path / "attack.png"), "--thresholds",
                            str(tmp_path / "th.json"), "--json", str(tmp_path / "v.json")])
    assert r.exit_code == 1 and "1 of 4 images flagged" in r.output
    assert [v["attack"] for v in json.loads((tmp_path / "v.json").read_text())] == [False] * 3 + [True]
    bad = [["scaling", "attack", "--source", str(tmp_path / "source.png"), "--target", str(tmp_path / "target.png"),
            "--size", "64x64", "--out", str(tmp_path / "a.jpg")],
           ["scaling", "detect", str(tmp_path / "missing.png"), "--size", "64x64"],
           ["scaling", "detect", str(tmp_path / "attack.png"), "--size", "32x32", "--thresholds",
            str(tmp_path / "th.json")]]
    for args in bad:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)


def test_bundled_calibration_passes_benign_crops(tmp_path: Path, monkeypatch) -> None:
    """The reported false positive (a 256x256 crop of china.jpg resized to 64x64 was flagged at rescaling ratio
    2.19) and held-out crops of the bundled photographs pass the default thresholds; the thresholds are cached;
    images larger than the bundled photographs are outside the calibration and ask for `calibrate`."""
    from sklearn.datasets import load_sample_images

    from robustaudit.scaling.calibrate import bundled_thresholds
    from robustaudit.scaling.images import benign_images
    from robustaudit.scaling.scalers import VULNERABLE

    monkeypatch.setenv("ROBUSTAUDIT_CACHE", str(tmp_path / "cache"))
    china = load_sample_images().images[0]
    write_image(tmp_path / "china.png", np.ascontiguousarray(china[100:356, 200:456]))
    r = runner.invoke(app, ["scaling", "detect", str(tmp_path / "china.png"), "--size", "64x64"])
    assert r.exit_code == 0 and "0 of 1 images flagged" in r.output, r.output
    assert list((tmp_path / "cache" / "scaling").glob("256x256-to-64x64-*.json"))
    th = bundled_thresholds((256, 256), (64, 64), VULNERABLE)  # from the cache
    assert sum(th.check(b).attack for b in benign_images(48, (256, 256), seed=1)) == 0
    write_image(tmp_path / "big.png", np.zeros((600, 700, 3), dtype=np.uint8))
    r = runner.invoke(app, ["scaling", "detect", str(tmp_path / "big.png"), "--size", "64x64"])
    assert r.exit_code == 2 and "outside the bundled calibration" in r.output and "calibrate" in r.output
