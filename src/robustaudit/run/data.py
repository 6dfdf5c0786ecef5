"""Data sources: `.npz` with `x` (float32, N×C×H×W or N×D, inside the bounds) and `y` (integer labels); a folder
of images with one sub-folder per class; Parquet with an image-bytes column. The last two are read shard by
shard, so a data set never has to fit in memory."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from robustaudit.errors import InputError
from robustaudit.extras import require


def load_npz(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read x and y from an .npz file, with errors that say how to fix the file."""
    x, y = _read_npz(path, labels=True)
    assert y is not None
    return x, y


def load_npz_inputs(path: str | Path) -> torch.Tensor:
    """Read x (labels, if any, ignored) from an .npz file: unlabelled data such as a public set."""
    return _read_npz(path, labels=False)[0]


def _read_npz(path: str | Path, *, labels: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"data file {p} does not exist")
    need = {"x", "y"} if labels else {"x"}
    try:
        with np.load(p, allow_pickle=False) as f:
            keys = set(f.files)
            if not need <= keys:
                raise InputError(f"{p} must hold arrays {' and '.join(repr(k) for k in sorted(need))}, found "
                                 f"{sorted(keys) or 'none'}")
            x, y = f["x"], f["y"] if labels else None
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{p} is not a readable .npz file ({e}); save it with numpy.savez(path, x=x, y=y)") from None
    if x.dtype != np.float32:
        raise InputError(f"'x' in {p} must be float32, got {x.dtype}; convert with x.astype(np.float32)")
    if y is not None and not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"'y' in {p} must hold integer labels, got {y.dtype}")
    return torch.from_numpy(np.ascontiguousarray(x)), None if y is None else torch.from_numpy(y.astype(np.int64))


class Source(Protocol):
    """A data set read shard by shard: len(), read(start, stop) -> (x, y or None), and what to record about it."""

    info: dict[str, Any]

    def __len__(self) -> int: ...

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class ArraySource:
    """Tensors already in memory (an .npz file, or arrays given in Python)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, info: dict[str, Any] | None = None) -> None:
        self.x, self.y, self.info = x, y, info or {}

    def __len__(self) -> int:
        return len(self.x)

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.x[start:stop], None if self.y is None else self.y[start:stop]


class _Images:
    """Decoding shared by the image sources: Pillow, RGB (or grayscale with channels=1), resized to `size`
    (H, W) with bilinear filtering after an optional centre crop to the target aspect ratio, then [0, 1]."""

    def __init__(self, size: tuple[int, int] | None, channels: int, crop: bool) -> None:
        if channels not in (1, 3):
            raise InputError(f"images are decoded to 1 or 3 channels, not {channels}")
        self.size, self.channels, self.crop = size, channels, crop

    def decode(self, raw: bytes | Path, what: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(raw) if isinstance(raw, bytes) else raw) as f:
                im = f.convert("L" if self.channels == 1 else "RGB")
            if self.size is not None:
                h, w = self.size
                if self.crop:
                    im = _centre_crop(im, w / h)
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"{what} is not a readable image ({e})") from None
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    def stack(self, arrays: list[np.ndarray], what: str) -> torch.Tensor:
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise InputError(f"{what} holds images of different sizes {sorted(shapes)[:3]}...; give --size HxW")
        return torch.from_numpy(np.stack(arrays))


def _centre_crop(im: Any, aspect: float) -> Any:
    w, h = im.size
    if w / h > aspect:
        nw = round(h * aspect)
        return im.crop(((w - nw) // 2, 0, (w - nw) // 2 + nw, h))
    nh = round(w / aspect)
    return im.crop((0, (h - nh) // 2, w, (h - nh) // 2 + nh))


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_class_map(path: str | Path) -> dict[str, int]:
    """Folder name -> the model's class index, from a JSON object {"cat": 281, ...} or a text file with one class
    name per line (line i is class i; blank lines keep their index)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise InputError(f"--classes {p}: cannot read it ({e.strerror or e})") from None
    if p.suffix == ".json" or text.lstrip().startswith("{"):
        try:
            mapping = json.loads(text)
        except ValueError as e:
            raise InputError(f"--classes {p} is not valid JSON ({e})") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                    for v in mapping.values()):
            raise InputError(f"--classes {p} must map folder names to class indices >= 0, e.g. {{\"cat\": 281}}")
        return {str(k): int(v) for k, v in mapping.items()}
    names = [line.strip() for line in text.splitlines()]
    mapping = {}
    for i, name in enumerate(names):
        if name and name not in mapping:
            mapping[name] = i
    if not mapping:
        raise InputError(f"--classes {p} names no class: one class name per line, line i being class i")
    return mapping


class ImageFolder:
    """A folder with one sub-folder of images per class. The labels are the sorted folder names' positions
    0, 1, ..., or, with `classes` (a `read_class_map` mapping or its file), the model's class index of each folder.
    Images are decoded when their shard is read."""

    def __init__(self, root: str | Path, *, size: tuple[int, int] | None = None, channels: int = 3,
                 crop: bool = False, classes: str | Path | Mapping[str, int] | None = None) -> None:
        self.root = Path(root)
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not folders:
            raise InputError(f"{self.root} has no class sub-folders: put the images of class C in {self.root}/C/")
        mapping = {c: k for k, c in enumerate(folders)}
        if classes is not None:
            given = dict(classes) if isinstance(classes, Mapping) else read_class_map(classes)
            unknown = [c for c in folders if c not in given]
            if unknown:
                raise InputError(f"--classes names no class index for the folder(s) {', '.join(unknown[:5])}"
                                 f"{'...' if len(unknown) > 5 else ''} of {self.root}")
            mapping = {c: given[c] for c in folders}
        self.files = [(f, mapping[c]) for c in folders for f in sorted((self.root / c).iterdir())
                      if f.suffix.lower() in IMAGE_SUFFIXES]
        if not self.files:
            raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the class folders of {self.root}")
        self.images = _Images(size, channels, crop)
        self.info = {"source": "image folder", "classes": folders, "class_index": mapping,
                     "class_map": classes is not None}

    def __len__(self) -> int:
        return len(self.files)

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        part = self.files[start:stop]
        x = self.images.stack([self.images.decode(f, str(f)) for f, _ in part], str(self.root))
        return x, torch.tensor([k for _, k in part], dtype=torch.long)


class ParquetSource:
    """Parquet file(s) with an image-bytes column and, optionally, an integer label column (pyarrow); only the
    rows of the shard being read are loaded."""

    def __init__(self, path: str | Path, *, image_column: str = "image", label_column: str | None = "label",
                 size: tuple[int, int] | None = None, channels: int = 3, crop: bool = False) -> None:
        ds = require("pyarrow.dataset", "Parquet data")
        try:
            self.data = ds.dataset(str(path), format="parquet")
        except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds for a bad file or folder
            raise InputError(f"{path} is not readable Parquet ({e})") from None
        names = self.data.schema.names
        if image_column not in names:
            raise InputError(f"{path} has no column {image_column!r} (columns: {', '.join(names)}); "
                             "name the image-bytes column with --image-column")
        self.image_column = image_column
        self.label_column = label_column if label_column in names else None
        self.n = self.data.count_rows()
        self.images = _Images(size, channels, crop)
        self.path = path
        self.info = {"source": "parquet", "image_column": image_column, "label_column": self.label_column}

    def __len__(self) -> int:
        return int(self.n)

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        pa = require("pyarrow", "Parquet data")
        columns = [self.image_column] + ([self.label_column] if self.label_column else [])
        table = self.data.take(pa.array(range(start, stop)), columns=columns)
        raw = table.column(self.image_column).to_pylist()
        x = self.images.stack([self.images.decode(_image_bytes(r), f"row {start + i} of {self.path}")
                               for i, r in enumerate(raw)], str(self.path))
        if self.label_column is None:
            return x, None
        return x, torch.tensor(table.column(self.label_column).to_pylist(), dtype=torch.long)


def _image_bytes(cell: Any) -> bytes:
    """An image cell: raw bytes, or a {"bytes": ...} struct (the Hugging Face datasets layout)."""
    if isinstance(cell, dict):
        cell = cell.get("bytes")
    if not isinstance(cell, bytes | bytearray):
        raise InputError("the image column must hold encoded image bytes (PNG, JPEG...)")
    return bytes(cell)


def open_source(
    path: str | Path, *, size: tuple[int, int] | None = None, channels: int = 3, crop: bool = False,
    image_column: str = "image", label_column: str | None = "label",
    classes: str | Path | Mapping[str, int] | None = None,
) -> Source:
    """The data behind --data: an .npz file, a folder of class sub-folders, or Parquet (a file or a folder)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"data {p} does not exist")
    if p.suffix == ".npz":
        x, y = load_npz(p)
        return ArraySource(x, y, {"source": "npz"})
    if p.suffix == ".parquet" or (p.is_dir() and any(p.glob("*.parquet"))):
        return ParquetSource(p, image_column=image_column, label_column=label_column, size=size, channels=channels,
                             crop=crop)
    if p.is_dir():
        return ImageFolder(p, size=size, channels=channels, crop=crop, classes=classes)
    raise InputError(f"--data {p}: give an .npz file, a folder with one sub-folder per class, or Parquet")
