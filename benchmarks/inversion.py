"""`robustaudit privacy inversion` benchmark (issue 21's acceptance figures), on the digits demo: the target
sees private digits 0-4, the public set is digits 5-9 without labels (`demo.inversion_files`). Per stage-1 seed,
side by side in one run:

- LOKT (top-1 labels), score access and white-box inversion at the CLI defaults;
- the same pipeline with untrained surrogates, from LOKT's own stage-1 generator (same T-ACGAN);
- the pipeline without knowledge transfer: the white-box run's generator (trained on the public set alone) with
  untrained surrogates;

each scored by the demo's evaluator (an MLP on all of 0-4, never used by the attack) and, to show the domain gap,
by a 10-class MLP trained on all ten digits (it reads a reconstruction that looks like a public digit as 5-9).
Prints per run the evaluator's top-1, per class, target queries and minutes, then the means over seeds.

    python benchmarks/inversion.py [--seeds 0 1 2] [--access labels scores gradients] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustaudit.commands import inversion
from robustaudit.demo import inversion_files
from robustaudit.privacy.inversion import InversionSettings
from robustaudit.types import Access

ACCESS = {"labels": Access.LABELS, "scores": Access.SCORES, "gradients": Access.GRADIENTS}


def ten_class_evaluator() -> nn.Module:
    """An MLP over all ten digits (a stricter judge than the 5-class evaluator)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(60):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def ten_class_top1(folder: Path, judge: nn.Module) -> float:
    z = np.load(folder / "reconstructions.npz")
    x, y = torch.from_numpy(z["x"]).flatten(0, 1), torch.from_numpy(z["y"]).repeat(z["x"].shape[0])
    with torch.no_grad():
        return float((judge(x).argmax(1) == y).float().mean())


def untrained_surrogates(files: dict[str, Path], stage1: Path, folder: Path, seed: int) -> dict[str, Any]:
    """The inversion from the finished stage-1 generator in `stage1` with untrained surrogates (no discriminator)."""
    folder.mkdir()
    shutil.copy(stage1 / "gan.pt", folder / "gan.pt")
    settings = replace(InversionSettings(), surrogate_epochs=0, discriminator_surrogate=False)
    return inversion(str(files["target"]), files["public"], classes=5, evaluator=str(files["evaluator"]),
                     settings=settings, access=Access.LABELS, out=folder, seed=seed)


def row(name: str, seed: int, r: dict[str, Any], minutes: float, ten: float) -> dict[str, Any]:
    acc = r["attack_accuracy"]
    per_class = " ".join(f"{v:.2f}" for v in acc["top1_per_class"].values())
    print(f"{name:<28} seed {seed}  top-1 {acc['top1']['mean']:.3f}  per class {per_class}  10-class judge "
          f"{ten:.3f}  G samples {r['random_samples_accuracy']['top1']['mean']:.3f}  queries {r['target_queries']:>7}"
          f"  {minutes:.1f} min", flush=True)
    if r.get("knn_distance") is not None:
        print(f"{'':<28} KNN distance {r['knn_distance']:.1f} (G samples {r['knn_distance_random']:.1f})")
    return {"name": name, "top1": acc["top1"]["mean"], "ten": ten, "minutes": minutes,
            "g": r["random_samples_accuracy"]["top1"]["mean"], "knn": r.get("knn_distance"),
            "knn_g": r.get("knn_distance_random")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--access", nargs="+", choices=list(ACCESS), default=["labels", "gradients"])
    p.add_argument("--keep", type=Path, help="keep every run's folder under this directory")
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="inversion-bench-"))
    files = inversion_files(work / "demo")
    judge = ten_class_evaluator()
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for access in args.access:
            out = work / f"{access}{seed}"
            t = time.perf_counter()
            r = inversion(str(files["target"]), files["public"], classes=5, evaluator=str(files["evaluator"]),
                          private_eval=files["private"], access=ACCESS[access], out=out, seed=seed)
            rows.append(row(access, seed, r, (time.perf_counter() - t) / 60, ten_class_top1(out, judge)))
            if access == "labels":
                print(f"{'':<28} surrogates on the private examples: "
                      + ", ".join(f"{k} {v:.3f}" for k, v in r["surrogate_private_accuracy"].items()))
            if access in ("labels", "gradients"):
                name = "untrained surrogates" + (", same G" if access == "labels" else ", no transfer")
                t = time.perf_counter()
                r = untrained_surrogates(files, out, work / f"{access}{seed}-untrained", seed)
                rows.append(row(name, seed, r, (time.perf_counter() - t) / 60,
                                ten_class_top1(work / f"{access}{seed}-untrained", judge)))
    print("\nmeans over seeds " + " ".join(map(str, args.seeds)))
    names = list(dict.fromkeys(r["name"] for r in rows))
    mean = {n: float(np.mean([r["top1"] for r in rows if r["name"] == n])) for n in names}
    for n in names:
        mine = [r for r in rows if r["name"] == n]
        knn = [r["knn"] for r in mine if r["knn"] is not None]
        print(f"{n:<28} top-1 {mean[n]:.3f} (min {min(r['top1'] for r in mine):.3f})  G samples "
              f"{np.mean([r['g'] for r in mine]):.3f}  10-class judge {np.mean([r['ten'] for r in mine]):.3f}  "
              + (f"KNN {np.mean(knn):.1f} (G samples {np.mean([r['knn_g'] for r in mine]):.1f})  " if knn else "")
              + f"{np.mean([r['minutes'] for r in mine]):.1f} min")
    for control in ("untrained surrogates, same G", "untrained surrogates, no transfer"):
        if "labels" in mean and control in mean:
            print(f"LOKT / {control}: {mean['labels'] / max(mean[control], 1e-9):.2f}x")
    if args.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
