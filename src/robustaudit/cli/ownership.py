"""`robustaudit ownership embed | verify | attack`: prove a (pruned) model is yours, white-box and black-box."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from robustaudit.cli.common import (
    BoundsOpt,
    DataOptions,
    ModelOptions,
    OutOpt,
    QuietOpt,
    SeedOpt,
    command,
    floats,
    out,
    parse_bounds,
    show_progress,
)

app = typer.Typer(no_args_is_help=True, help="Ownership: carve a signature into a pruned model, verify a suspect, "
                                            "measure removal attacks.")

ModelOpt = Annotated[str, typer.Option(help="a local PyTorch model: .pt2 (torch.export), .pt (TorchScript) or "
                                            "FILE.py:FUNCTION returning an nn.Module")]
TestDataOpt = Annotated[Path | None, typer.Option(help="labelled test data for the accuracy (default: 20% of --data "
                                                       "held out)")]


def _tests(r: dict[str, Any]) -> None:
    w, b = r.get("white_box"), r.get("black_box")
    if w is not None and w.get("bit_error_rate") is not None:
        out.print(f"white-box: bit-error rate {w['bit_error_rate']:.3f} over {w['bits']} bits, QR decodes to "
                  f"{w['decoded']!r}, p = {w['p_value']:.2e}", highlight=False)
    elif w is not None:
        out.print(f"white-box: {w['note']}", highlight=False)
    if b is not None:
        out.print(f"black-box: trigger accuracy {b['trigger_accuracy']:.3f} ({b['trigger_hits']}/{b['trigger_size']}, "
                  f"chance {b['chance']:.3f}), {b['queries']} queries, p = {b['p_value']:.2e}", highlight=False)


def embed(
    model: ModelOpt,
    data: Annotated[Path, typer.Option(help="labelled training data (.npz x, y; an image folder; Parquet)")],
    signature: Annotated[str, typer.Option(help="the text carved into the mask as a QR code (error correction H; "
                                                "about 7 characters fit a 21x21 code)")],
    out_dir: OutOpt,
    model_options: ModelOptions,
    data_options: DataOptions,
    sparsity: Annotated[float, typer.Option(help="target global sparsity of the prunable weights")] = 0.8,
    layer: Annotated[str | None, typer.Option(help="the weight to carve into, e.g. features.3.weight (default: the "
                                                   "layer and window that change fewest connections)")] = None,
    epochs: Annotated[int, typer.Option(help="training epochs after pruning (per round)")] = 8,
    rounds: Annotated[int, typer.Option(help="rounds of iterative magnitude pruning to reach --sparsity")] = 1,
    trigger: Annotated[int, typer.Option(help="trigger-set size for black-box verification (0: none)")] = 50,
    robust_sparsity: Annotated[float, typer.Option(help="hold the signature's weights above the magnitude that "
                                                        "pruning to this sparsity removes (<= --sparsity: off)")]
    = 0.95,
    test_data: TestDataOpt = None,
    recipe: Annotated[str | None, typer.Option(help="your training loop instead of ours: FILE.py:FUNCTION(model, x, "
                                                    "y, epochs) training in place (the masks are held for you)")]
    = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 3e-3,
    batch_size: Annotated[int, typer.Option(help="training batch size")] = 64,
    alpha: Annotated[float, typer.Option(help="significance level stored in the key for verification")] = 0.01,
    key_seed: Annotated[int | None, typer.Option(help="seed of the secret pad and trigger set (default: drawn "
                                                      "from the OS; give one only to reproduce)")] = None,
    seed: SeedOpt = 0,
    bounds: BoundsOpt = "0,1",
    quiet: QuietOpt = False,
) -> None:
    """Prune a model with a signature carved into one layer's mask and a trigger set trained in; writes model.pt2,
    the secret key (model.key.json + model.key.npz), embed.json, qr.png, summary.md and report.html."""
    from robustaudit.ownership.run import embed_signature

    r = embed_signature(model, data, signature=signature, target_sparsity=sparsity, layer=layer, epochs=epochs,
                        rounds=rounds, trigger=trigger, robust_sparsity=robust_sparsity, test_data=test_data,
                        recipe=recipe, lr=lr, batch_size=batch_size, seed=seed, key_seed=key_seed, alpha=alpha,
                        bounds=parse_bounds(bounds), data_options=data_options, out=out_dir,
                        progress=show_progress(quiet), **model_options.load_kwargs())
    acc = r["accuracy"]
    out.print(f"signature {signature!r} in {r['layer']} at {r['offset']}, sparsity {r['sparsity']:.4f}; accuracy "
              f"{acc['signed_ticket']:.4f} vs {acc['ticket_without_signature']:.4f} without (cost "
              f"{acc['cost'] * 100:+.2f} points)", highlight=False)
    _tests(r)
    out.print(f"model and key written to {out_dir}/ (model.pt2, model.key.json, model.key.npz: keep the key "
              "secret)", highlight=False)


def verify(
    model: Annotated[str, typer.Option(help="the suspect: a local model (white-box and black-box) or any model "
                                            "evaluate accepts, e.g. an OIP URL (black-box)")],
    key: Annotated[Path, typer.Option(help="the owner's model.key.json")],
    out_dir: OutOpt,
    model_options: ModelOptions,
    mode: Annotated[str, typer.Option(help="auto | white | black")] = "auto",
    alpha: Annotated[float | None, typer.Option(help="significance level (default: the key's)")] = None,
) -> None:
    """Is the suspect the owner's model (or made from it)? Exit 0 when ownership is shown, 1 when not; writes
    verify.json, qr.png, summary.md and report.html."""
    from robustaudit.ownership.run import verify_ownership

    r = verify_ownership(model, key, mode=mode, alpha=alpha, out=out_dir, **model_options.load_kwargs())
    _tests(r)
    out.print(f"{r['verdict']} (each p-value against {r['threshold']:.3g}); written to {out_dir}/", highlight=False)
    if not r["owned"]:
        raise typer.Exit(code=1)


def attack(
    model: ModelOpt,
    key: Annotated[Path, typer.Option(help="the owner's model.key.json")],
    data: Annotated[Path, typer.Option(help="the attacker's labelled training data for fine-tuning")],
    out_dir: OutOpt,
    model_options: ModelOptions,
    data_options: DataOptions,
    finetune: Annotated[int, typer.Option(help="fine-tuning epochs with the mask held (verified after each)")] = 5,
    prune: Annotated[str, typer.Option(help="further global magnitude pruning to these sparsities")]
    = "0.85,0.9,0.95",
    fill: Annotated[str, typer.Option(help="mask filling: revive these fractions of the pruned weights")]
    = "0.01,0.05,0.1",
    fill_std: Annotated[float, typer.Option(help="standard deviation of the revived weights")] = 0.1,
    lr: Annotated[float, typer.Option(help="fine-tuning Adam learning rate")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="fine-tuning batch size")] = 64,
    test_data: TestDataOpt = None,
    seed: SeedOpt = 0,
    bounds: BoundsOpt = "0,1",
    quiet: QuietOpt = False,
) -> None:
    """The removal attacks of the paper on the owner's model (fine-tuning, further pruning, mask filling), each
    followed by verification and the test accuracy; writes attack.json (one row per attacked model), the curves
    in report.html, and summary.md."""
    from robustaudit.ownership.run import removal_attacks

    levels = floats(prune, "--prune") or [] if prune else []
    fractions = floats(fill, "--fill") or [] if fill else []
    r = removal_attacks(model, key, data, finetune=finetune, prune=levels, fill=fractions, fill_std=fill_std, lr=lr,
                        batch_size=batch_size,
                        test_data=test_data, seed=seed, bounds=parse_bounds(bounds), data_options=data_options,
                        out=out_dir, progress=show_progress(quiet), **model_options.load_kwargs())
    table = Table(title=f"removal attacks on {model}")
    for col in ("attack", "strength", "sparsity", "accuracy", "bit-error rate", "QR", "trigger acc.", "verified"):
        table.add_column(col, justify="left" if col == "attack" else "right", no_wrap=True)
    for row in r["rows"]:
        table.add_row(row["attack"], f"{row['strength']:g}", f"{row['sparsity']:.3f}", f"{row['accuracy']:.4f}",
                      "-" if row["bit_error_rate"] is None else f"{row['bit_error_rate']:.3f}",
                      "-" if row["qr_decodes"] is None else ("yes" if row["qr_decodes"] else "no"),
                      "-" if row["trigger_accuracy"] is None else f"{row['trigger_accuracy']:.2f}",
                      "yes" if row["verified"] else "NO")
    out.print(table)
    out.print(f"results written to {out_dir}/ (attack.json, report.html, summary.md)", highlight=False)


command(app, data=True, model=True)(embed)
command(app, model=True, remote=True)(verify)
command(app, data=True, model=True)(attack)
