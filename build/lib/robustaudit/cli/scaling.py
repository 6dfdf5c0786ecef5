"""`robustaudit scaling attack | calibrate | detect`: image-scaling attacks and their detection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import track
from rich.table import Table

from robustaudit.cli.common import command, err, floats, out
from robustaudit.errors import InputError
from robustaudit.types import parse_size

if TYPE_CHECKING:
    from robustaudit.scaling.calibrate import Thresholds, Verdict
    from robustaudit.scaling.scalers import Scaler

app = typer.Typer(no_args_is_help=True, help="Image-scaling attacks and their detection (Decamouflage).")
ANY = "any"


def _scalers(library: str, method: str) -> list[Scaler]:
    """Exactly one scaler when both are named; 'any' keeps every vulnerable scaler that matches the other."""
    from robustaudit.scaling.scalers import LIBRARIES, METHODS, VULNERABLE, Scaler

    if library != ANY and method != ANY:
        return [Scaler(library, method)]
    if library not in (*LIBRARIES, ANY) or method not in (*METHODS, ANY):
        raise InputError(f"--library must be {'|'.join(LIBRARIES)}|any and --method {'|'.join(METHODS)}|any")
    found = [s for s in VULNERABLE if library in (ANY, s.library) and method in (ANY, s.method)]
    if not found:
        raise InputError(f"no vulnerable scaler matches --library {library} --method {method}")
    return found


LibraryOpt = Annotated[str, typer.Option(help="the pipeline's library: opencv | pillow | any (unknown)")]
MethodOpt = Annotated[str, typer.Option(help="nearest | bilinear | bicubic | area | lanczos | any (unknown)")]
SizeOpt = Annotated[str, typer.Option(help="the model's input size, HxW, e.g. 224x224")]


@command(app)
def attack(
    source: Annotated[Path, typer.Option(help="the full-size image a person sees")],
    target: Annotated[Path, typer.Option(help="the image the model should see (resized to --size if needed)")],
    size: SizeOpt,
    out_path: Annotated[Path, typer.Option("--out", help="attack image (PNG or another lossless format)")],
    library: Annotated[str, typer.Option(help="opencv | pillow")] = "opencv",
    method: Annotated[str, typer.Option(help="nearest | bilinear | bicubic | area | lanczos")] = "bilinear",
    eps: Annotated[str, typer.Option(help="tolerance in grey levels, or increasing ones tried in turn: 1,2,4")] = "1",
) -> None:
    """Hide TARGET in SOURCE so that the pipeline's resize to --size shows TARGET (Xiao et al. 2019, QP form).
    Exit code 0 when the attack succeeded, 1 when the scaler is not vulnerable (the closest image is written)."""
    from robustaudit.scaling.attack import scaling_attack
    from robustaudit.scaling.images import lossless, read_image, write_image
    from robustaudit.scaling.scalers import Scaler

    hw = parse_size(size)
    scaler = Scaler(library, method)
    tol = floats(eps, "--eps") or []
    src, tgt = read_image(source), read_image(target)
    if tgt.shape[:2] != hw:
        err.print(f"note: target is {tgt.shape[0]}x{tgt.shape[1]}; resized to {size} with area interpolation")
        tgt = Scaler("pillow", "area").resize(tgt, hw)
    lossless(out_path)
    result = scaling_attack(src, tgt, scaler, eps=tol)
    write_image(out_path, result.image)
    table = Table(title=f"image-scaling attack, {scaler.name}, {src.shape[0]}x{src.shape[1]} -> {size}")
    table.add_column("compared")
    for col in ("PSNR dB", "SSIM", "max |diff|"):
        table.add_column(col, justify="right")
    table.add_row("attack image vs source", f"{result.source_psnr:.1f}", f"{result.source_ssim:.3f}", "")
    table.add_row("scaled attack vs target", f"{result.target_psnr:.1f}", "",
                  f"{result.target_linf:.0f} (bound {result.bound:.2f})")
    out.print(table)
    out.print(result.message, highlight=False)
    out.print(f"attack image written to {out_path}", highlight=False)
    if not result.success:
        raise typer.Exit(code=1)


@command(app, "calibrate")
def calibrate_command(
    benign: Annotated[list[Path], typer.Option(help="benign images: folders or files (repeat the option)")],
    size: SizeOpt,
    out_path: Annotated[Path, typer.Option("--out", help="thresholds file (JSON)")],
    library: LibraryOpt = ANY,
    method: MethodOpt = ANY,
    percentile: Annotated[float, typer.Option(help="each threshold is this percentile of the benign scores")]
    = 99.5,
    vote: Annotated[int, typer.Option(help="detectors that must agree to flag an image (1 to 3)")] = 2,
) -> None:
    """Set the detectors' thresholds from benign images alone (a percentile of each score) and save them."""
    from robustaudit.scaling.calibrate import calibrate
    from robustaudit.scaling.images import image_files, read_image

    hw, scalers = parse_size(size), _scalers(library, method)
    files = image_files(benign)
    images = (read_image(f) for f in track(files, description="scoring benign images", console=err))
    th = calibrate(images, hw, scalers, percentile=percentile, vote=vote)
    th.save(out_path)
    show_thresholds(th, f"thresholds from {len(files)} benign images ({percentile:g}th percentile, {hw[0]}x{hw[1]})")
    out.print(f"written to {out_path}", highlight=False)


def show_thresholds(th: Thresholds, title: str) -> None:
    """One row per detector (one per scaler for rescaling): its threshold, and the vote that flags an image."""
    table = Table(title=title)
    table.add_column("detector")
    table.add_column("score")
    table.add_column("flags above", justify="right")
    for name, value in th.rescaling.items():
        table.add_row(f"rescaling ({name})", "ratio", f"{value:.3f}")
    table.add_row("filtering", "MSE", f"{th.filtering:.1f}")
    table.add_row("steganalysis", "spectrum peaks", f"{th.steganalysis:g}")
    out.print(table)
    out.print(f"an image is flagged when {th.vote} of the 3 detectors flag it", highlight=False)


@command(app)
def detect(
    images: Annotated[list[Path], typer.Argument(help="images or folders of images to check")],
    size: Annotated[str | None, typer.Option(help="the model's input size, HxW (default: the thresholds')")] = None,
    thresholds: Annotated[Path | None, typer.Option(help="from 'scaling calibrate' (default: calibrate on the "
                                                         "bundled photographs)")] = None,
    library: LibraryOpt = ANY,
    method: MethodOpt = ANY,
    json_path: Annotated[Path | None, typer.Option("--json", help="also write every score and verdict here")]
    = None,
) -> None:
    """Score each image with the three detectors; exit code 1 when any image is flagged (0: all clean). Without
    --thresholds, the thresholds are calibrated on crops of the bundled photographs at each image's size (cached)."""
    from robustaudit.scaling.calibrate import Thresholds, bundled_thresholds
    from robustaudit.scaling.images import image_files, read_image

    th = Thresholds.load(thresholds) if thresholds else None
    if th is None and size is None:
        raise InputError("give --size (the model's input size) or --thresholds")
    hw = parse_size(size) if size else th.size if th else (0, 0)
    if th is not None and hw != th.size:
        raise InputError(f"--size {size} differs from the thresholds' {th.size[0]}x{th.size[1]}; "
                         "calibrate for this size")
    scalers = tuple(th.scalers if th else _scalers(library, method))
    files = image_files(images)
    verdicts: list[tuple[Path, Verdict]] = []
    for f in files:
        im = read_image(f)
        judge = th or bundled_thresholds(im.shape[:2], hw, scalers)
        verdicts.append((f, judge.check(im)))
    table = Table(title=f"image-scaling attack detection ({', '.join(s.name for s in scalers)} -> "
                        f"{hw[0]}x{hw[1]})")
    for col in ("image", "rescaling ratio", "filtering MSE", "spectrum peaks", "verdict"):
        table.add_column(col, justify="left" if col in ("image", "verdict") else "right")
    for f, v in verdicts:
        mark = {k: "*" if flag else "" for k, flag in v.flags.items()}
        table.add_row(str(f), f"{max(v.scores.rescaling.values()):.2f}{mark['rescaling']}",
                      f"{v.scores.filtering_mse:.0f}{mark['filtering']}", f"{v.scores.csp}{mark['steganalysis']}",
                      "[bold red]ATTACK[/]" if v.attack else "clean")
    out.print(table)
    flagged = sum(v.attack for _, v in verdicts)
    out.print(f"{flagged} of {len(verdicts)} images flagged (* marks a detector over its threshold)")
    if json_path:
        json_path.write_text(json.dumps([{"image": str(f), **v.to_json()} for f, v in verdicts], indent=2))
    if flagged:
        raise typer.Exit(code=1)

