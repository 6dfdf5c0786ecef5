"""Image folders and Parquet give the same audit as the same images in .npz; data without labels is labelled with
the model's clean predictions, and says so."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from robustaudit.cli import app
from robustaudit.errors import InputError
from robustaudit.run.data import ImageFolder, ParquetSource, open_source

N = 24


@pytest.fixture(scope="module")
def digits_as_files(tmp_path_factory, demo_paths):
    """The demo's real digits (32×32, grayscale) written as PNG files per class and as Parquet rows."""
    _, data = demo_paths
    d = np.load(data)
    x, y = d["x"][:N], d["y"][:N]
    pixels = np.round(x[:, 0] * 255).astype(np.uint8)
    root = tmp_path_factory.mktemp("files")
    folder = root / "folder"
    order = []  # ImageFolder order: classes sorted by name, then file names
    for i, (img, label) in enumerate(zip(pixels, y, strict=True)):
        (folder / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(folder / f"class{label}" / f"{i:04d}.png")
    for c in sorted({f"class{label}" for label in y}):
        order += sorted(i for i in range(N) if f"class{y[i]}" == c)
    blobs = []
    for img in pixels:
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, format="PNG")
        blobs.append(buf.getvalue())
    pq.write_table(pa.table({"image": blobs, "label": y.tolist()}), root / "d.parquet", row_group_size=7)
    pq.write_table(pa.table({"image": blobs}), root / "unlabeled.parquet")
    exact = (pixels.astype(np.float32) / 255)[:, None]
    np.savez(root / "d.npz", x=exact, y=y)
    classes = sorted({int(label) for label in y})
    np.savez(root / "folder_order.npz", x=exact[order], y=np.array([classes.index(int(y[i])) for i in order]))
    return root, order


def test_sources_decode_the_same_pixels(digits_as_files) -> None:
    root, order = digits_as_files
    ref = np.load(root / "d.npz")
    px, py = ParquetSource(root / "d.parquet", channels=1).read(3, 17)  # spans row groups
    assert np.array_equal(px.numpy(), ref["x"][3:17]) and np.array_equal(py.numpy(), ref["y"][3:17])
    folder = ImageFolder(root / "folder", channels=1)
    fx, fy = folder.read(0, N)
    assert np.array_equal(fx.numpy(), ref["x"][order])
    classes = folder.info["classes"]
    assert classes == sorted(classes) and len(set(fy.tolist())) == len(classes)
    big, _ = ImageFolder(root / "folder", channels=3, size=(16, 20), crop=True).read(0, 2)
    assert tuple(big.shape) == (2, 3, 16, 20) and float(big.max()) <= 1


def test_same_results_as_npz(digits_as_files, demo_paths, tmp_path: Path) -> None:
    root, _ = digits_as_files
    model, _ = demo_paths
    runner = CliRunner()

    def run(data: Path, name: str, *extra: str) -> dict:
        out = tmp_path / name
        r = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(data), "--eps", "0.1", "--attacks",
                                "pgd", "--shard-size", "10", "--out", str(out), "--quiet", "--no-checks", *extra])
        assert r.exit_code == 0, r.output
        return json.loads((out / "results.json").read_text())

    npz = run(root / "d.npz", "npz")
    parquet = run(root / "d.parquet", "parquet", "--channels", "1")
    assert parquet["examples"] == npz["examples"] and parquet["data"]["source"] == "parquet"
    folder = run(root / "folder", "folder", "--channels", "1")
    in_order = run(root / "folder_order.npz", "folder_npz")
    assert folder["examples"] == in_order["examples"]
    assert folder["data"]["classes"] == sorted(folder["data"]["classes"])
    unlabeled = run(root / "unlabeled.parquet", "unlabeled", "--channels", "1")
    assert unlabeled["clean_accuracy"] == 1.0 and unlabeled["data"]["labels"] == "clean predictions of the model"
    assert all(e["queries"] >= 2 for e in unlabeled["examples"])  # the labelling query is counted


def test_bad_sources_say_how_to_fix(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="sub-folder"):
        open_source(tmp_path / "empty")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="Parquet"):
        open_source(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"pixels": [b"x"]}), tmp_path / "cols.parquet")
    with pytest.raises(InputError, match="image-column"):
        open_source(tmp_path / "cols.parquet")


NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_class_map_and_label_mismatch(demo_paths, tmp_path: Path) -> None:
    """Folders named by word sort as eight, five, four, ...: without --classes the labels do not match the model's
    classes and the audit says so (a flag that fails the gate); with --classes (text or JSON) they do."""
    model, data = demo_paths
    d = np.load(data)
    folder = tmp_path / "words"
    for i, (img, label) in enumerate(zip(d["x"][:30], d["y"][:30], strict=True)):
        (folder / NAMES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img[0] * 255).astype(np.uint8), mode="L").save(folder / NAMES[label] / f"{i}.png")
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    (tmp_path / "names.json").write_text(json.dumps({n: i for i, n in enumerate(NAMES)}))
    runner = CliRunner()

    def run(*extra: str) -> tuple[int, dict]:
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        r = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(folder), "--channels", "1", "--eps",
                                "0.05", "--attacks", "fgsm", "--no-checks", "--quiet", "--out", str(out), *extra])
        assert r.exit_code in (0, 1), r.output
        return r.exit_code, json.loads((out / "results.json").read_text())

    code, plain = run("--fail-under", "0.0")
    assert "label_mismatch" in [f["code"] for f in plain["flags"]] and plain["clean_accuracy"] < 0.3
    assert code == 1 and "--classes" in next(f["message"] for f in plain["flags"] if f["code"] == "label_mismatch")
    for mapping in ("names.txt", "names.json"):
        code, mapped = run("--classes", str(tmp_path / mapping), "--fail-under", "0.0")
        assert code == 0 and mapped["clean_accuracy"] > 0.8
        assert "label_mismatch" not in [f["code"] for f in mapped["flags"]]
    (tmp_path / "short.json").write_text(json.dumps({"zero": 0}))
    r = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(folder), "--channels", "1", "--eps",
                            "0.05", "--classes", str(tmp_path / "short.json"), "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "no class index for the folder" in r.output
