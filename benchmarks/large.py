"""Big inputs: the default audit (`fast`) of a ResNet-18-style model at 224x224 with --mean/--std, per surviving
example and in peak memory, against torchattacks' AutoAttack on the same model and inputs; and what channels-last,
mixed precision (--precision bf16|fp16) and torch.compile (--compile) pay.

The model (ResNet-18's layout: 4 stages of 2 basic blocks, widths w, 2w, 4w, 8w; `--width 64` is ResNet-18 itself)
learns which of 6 bundled photographs (scikit-learn's china and flower, scikit-image's astronaut, chelsea, coffee,
rocket) a 64x64 crop comes from, with fast adversarial training (FGSM with a random start, Wong et al. 2020) at
1.25 eps, so that examples survive; weights cached. Audited inputs: 224x224 crops of the same photographs (the
task is a stand-in: this measures cost, not generalisation). Every row runs in its own process, so its peak
memory is its own (resident set on CPU, allocated memory on a GPU). Seconds per survivor = seconds / examples
still robust at the end.

    python benchmarks/large.py [--n 8] [--eps 2/255] [--width 32] [--steps 400] [--threads 2] [--device cpu]
        [--rows fp32,contiguous,bf16,compile,torchattacks]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robustaudit.paths import cache_dir

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.skip(x))


class ResNet18(nn.Module):
    """ResNet-18's layout at base width `w` (64 in the paper), for `k` classes, any input size >= 32."""

    def __init__(self, k: int, w: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        widths, layers, cin = (w, 2 * w, 4 * w, 8 * w), [], w
        for i, cout in enumerate(widths):
            layers += [Block(cin, cout, 1 if i == 0 else 2), Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


class Normalized(nn.Module):
    """What a peer library is handed: normalisation in front of the network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.get_buffer("mean")) / self.get_buffer("std"))


def photographs() -> list[torch.Tensor]:
    """The 6 bundled photographs as 3xHxW tensors in [0, 1]."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    imgs = list(load_sample_images().images) + [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    return [torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in imgs]


def crops(photos: list[torch.Tensor], n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n random size x size crops (mirrored at random), labelled with their photograph."""
    y = torch.randint(len(photos), (n,), generator=g)
    out = torch.empty(n, 3, size, size)
    for i, k in enumerate(y.tolist()):
        p = photos[k]
        top = int(torch.randint(p.shape[1] - size + 1, (1,), generator=g))
        left = int(torch.randint(p.shape[2] - size + 1, (1,), generator=g))
        c = p[:, top:top + size, left:left + size]
        out[i] = c.flip(2) if torch.rand(1, generator=g) < 0.5 else c
    return out, y


def trained(width: int, steps: int, eps: float) -> nn.Module:
    """The model, fast-adversarially trained on 64x64 crops (cached by width, steps and eps)."""
    path = cache_dir() / f"large_resnet18_w{width}_s{steps}_eps{eps:.5f}.pt"
    torch.manual_seed(0)
    net = ResNet18(6, width)
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    photos, g = photographs(), torch.Generator().manual_seed(0)
    model = Normalized(net).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    train_eps = 1.25 * eps
    start = time.perf_counter()
    for step in range(steps):
        x, y = crops(photos, 64, 64, g)
        x = x.contiguous(memory_format=torch.channels_last)
        delta = (torch.rand_like(x) * 2 - 1) * train_eps
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model((x + delta).clamp(0, 1)), y), delta)
        x_adv = (x + (delta + 1.25 * train_eps * grad.sign()).clamp(-train_eps, train_eps)).clamp(0, 1).detach()
        opt.zero_grad()
        loss = F.cross_entropy(model(x_adv), y)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            print(f"  training step {step}/{steps}, adversarial loss {loss.item():.3f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    torch.save(net.state_dict(), path)
    return net.eval()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_row(row: str, args: dict[str, Any], queue: Any) -> None:
    """One row in a fresh process: the audit or the peer, its robust accuracy, seconds and peak memory."""
    torch.set_num_threads(args["threads"])
    device = torch.device(args["device"])
    net = trained(args["width"], args["steps"], args["eps"]).to(device)
    x, y = args["x"].to(device), args["y"].to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = peak_memory_mb(device)
    start = time.perf_counter()
    if row == "torchattacks":
        import torchattacks

        peer = Normalized(net).eval()
        aa = torchattacks.AutoAttack(peer, norm="Linf", eps=args["eps"], version="standard", n_classes=6, seed=0)
        adv = aa(x, y)
        with torch.no_grad():
            robust = float(((peer(x).argmax(1) == y) & (peer(adv).argmax(1) == y)).float().sum())
    else:
        from robustaudit import audit
        from robustaudit.models import TorchModel

        precision = row if row in ("bf16", "fp16") else "fp32"
        model = TorchModel(net, mean=MEAN, std=STD, device=device, channels_last=row != "contiguous",
                           precision=precision, compile=row == "compile")
        rec = audit(model, x, y, eps=args["eps"], attacks="fast", seed=0, checks=False)
        robust = rec.robust_accuracy * len(x)
    seconds = time.perf_counter() - start
    queue.put((row, robust, seconds, before, peak_memory_mb(device)))


def floor_seconds(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """20 forward+backward passes of the batch, channels-last, fp32 (the unit of cost)."""
    model = Normalized(net).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    xc = x.contiguous(memory_format=torch.channels_last)
    for reps in (2, 20):
        start = time.perf_counter()
        for _ in range(reps):
            xg = xc.clone().requires_grad_(True)
            F.cross_entropy(model(xg), y).backward()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--eps", default="2/255")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rows", default=None, help="comma list of fp32, contiguous, bf16, fp16, compile, torchattacks "
                    "(default: all that apply: fp16 on a GPU only, torchattacks when installed)")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    torch.set_num_threads(args.threads)
    num, _, den = args.eps.partition("/")
    eps = float(num) / float(den or 1)
    device = torch.device(args.device)
    net = trained(args.width, args.steps, eps).to(device)
    x, y = crops(photographs(), args.n, 224, torch.Generator().manual_seed(1))
    with torch.no_grad():
        clean = float((Normalized(net)(x.to(device)).argmax(1).cpu() == y).float().mean())
    t_floor = floor_seconds(net, x.to(device), y.to(device))
    print(f"ResNet-18 layout, width {args.width} ({sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters), "
          f"{args.n} crops 224x224, Linf eps {eps:.5f}, {args.device}, {args.threads} threads; clean accuracy "
          f"{clean:.3f}; floor (20 forward+backward of the batch) {t_floor:.2f} s")
    rows = args.rows.split(",") if args.rows else ["fp32", "contiguous", "bf16", "compile"] + \
        (["fp16"] if device.type == "cuda" else [])
    if args.rows is None:
        try:
            import torchattacks  # noqa: F401

            rows.append("torchattacks")
        except ImportError:
            print("torchattacks not installed: skipped (make bench-peers)")
    shared = {"x": x, "y": y, "eps": eps, "width": args.width, "steps": args.steps, "threads": args.threads,
              "device": args.device}
    ctx = mp.get_context("spawn")
    print(f"\n{'row':34s} {'robust':>6s} {'seconds':>8s} {'floors':>7s} {'s/survivor':>10s} {'peak MB':>8s} "
          f"{'(at start)':>10s}")
    for row in rows:
        queue = ctx.Queue()
        proc = ctx.Process(target=run_row, args=(row, shared, queue))
        proc.start()
        name, robust, seconds, before, peak = queue.get()
        proc.join()
        label = "torchattacks AutoAttack (standard)" if name == "torchattacks" else f"robustaudit fast, {name}"
        per = seconds / robust if robust else float("nan")
        print(f"{label:34s} {int(robust):6d} {seconds:8.1f} {seconds / t_floor:7.1f} {per:10.1f} {peak:8.0f} "
              f"{before:10.0f}")


if __name__ == "__main__":
    main()
