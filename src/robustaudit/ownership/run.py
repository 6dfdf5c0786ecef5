"""`robustaudit ownership embed | verify | attack` as library functions; each writes its folder: a JSON file
(embed.json, verify.json, attack.json), summary.md, report.html and qr.png (the QR code read back)."""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustaudit.api import DataLike, DataOptions, ModelLike
from robustaudit.commands import _provenance, _write_json, _xy
from robustaudit.errors import InputError
from robustaudit.models.load import as_model, load_module, save_program
from robustaudit.models.torch import accuracy, set_eval
from robustaudit.ownership.key import OwnerKey
from robustaudit.ownership.qr import make_code
from robustaudit.ownership.signature import (
    Placement,
    carved_pattern,
    check,
    choose_window,
    embed,
    project,
    read_window,
)
from robustaudit.ownership.sparsity import (
    Masks,
    apply_masks,
    fixed_masks,
    magnitude_masks,
    masks_of,
    prunable,
    sparsity,
)
from robustaudit.ownership.train import fit
from robustaudit.ownership.trigger import check_trigger, make_trigger, with_trigger
from robustaudit.progress import progress_bar
from robustaudit.types import Access, Bounds
from robustaudit.validate import check_inputs

Recipe = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], Any]  # (model, x, y, epochs): trains in place


def _module(model: ModelLike, model_kw: dict[str, Any]) -> nn.Module:
    """A private, trainable copy of the model's nn.Module."""
    if isinstance(model, nn.Module):
        module = copy.deepcopy(model)
    elif isinstance(model, str | Path):
        module = load_module(model, device=model_kw.get("device"),
                             trust_model_file=model_kw.get("trust_model_file", False))
    else:
        raise InputError("ownership commands read and change weights: give an nn.Module or a local model file")
    module = module.to(model_kw.get("device") or "cpu")
    set_eval(module)
    return module


def _data(data: DataLike, test_data: DataLike | None, bounds: Bounds, seed: int,
          data_options: DataOptions | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """Training and test examples: --test-data, or 20% of --data held out (seeded)."""
    x, y = _xy(data, None, "--data", data_options)
    check_inputs(x, y, bounds)
    if test_data is not None:
        xt, yt = _xy(test_data, None, "--test-data", data_options)
        check_inputs(xt, yt, bounds)
        return x, y, xt, yt, "--test-data"
    if len(x) < 10:
        raise InputError(f"--data holds {len(x)} examples: at least 10 are needed (or give --test-data)")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = len(x) // 5
    return x[order[cut:]], y[order[cut:]], x[order[:cut]], y[order[:cut]], "20% of --data held out"


def _classes(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with torch.no_grad():
        z = module(x[:1].to(next(module.parameters()).device))
    if z.dim() != 2 or z.shape[1] < 2:
        raise InputError(f"the model must return one row of class scores per input, got shape {tuple(z.shape)}")
    k = int(z.shape[1])
    if int(y.max()) >= k or int(y.min()) < 0:
        raise InputError(f"labels must lie in 0..{k - 1} (the model has {k} classes)")
    return k


def _train(module: nn.Module, masks: Masks, floors: dict[str, torch.Tensor] | None, x: torch.Tensor,
           y: torch.Tensor, epochs: int, *, recipe: Recipe | None, lr: float, batch: int, seed: int, what: str,
           bar: Any) -> None:
    """Train with the masks (and floors) held: the user's recipe, or Adam on cross-entropy."""
    with fixed_masks(module, masks, floors):
        if recipe is not None:
            recipe(module, x, y, epochs)
        else:
            fit(module, x, y, epochs=epochs, lr=lr, batch=batch, seed=seed, what=what, bar=bar)
    set_eval(module)


def _survives_to(module: nn.Module, key: OwnerKey) -> float:
    """The largest global sparsity at which magnitude pruning still leaves every switched-on kernel of the window
    with a weight (so the white-box bits stay exact)."""
    assert key.place is not None
    params = prunable(module)
    w = params[key.place.layer].detach().abs().cpu()
    rows, cols = key.place.window(key.code.size)
    w3 = w.reshape(w.shape[0], w.shape[1], -1)[rows, cols].amax(dim=2)
    ones = torch.from_numpy((key.place.pattern == 1) & (key.code.function == 0))
    if not bool(ones.any()):
        return 1.0
    weakest = float(w3[ones].min())
    every = torch.cat([p.detach().abs().flatten().cpu() for p in params.values()])
    return 1.0 - int((every >= weakest).sum()) / every.numel()


def _white(module: nn.Module, key: OwnerKey) -> dict[str, Any]:
    """White-box check of a module: the key's layer (or, renamed, every layer of its shape: Bonferroni)."""
    assert key.place is not None
    params = prunable(module)
    name = key.place.layer
    if name in params and tuple(params[name].shape) == key.layer_shape:
        candidates = [name]
    else:
        candidates = [k for k, p in params.items() if tuple(p.shape) == key.layer_shape]
    if not candidates:
        return {"layer": None, "p_value": 1.0, "bit_error_rate": None, "decoded": None, "recovered": None,
                "note": f"no prunable weight of shape {list(key.layer_shape)}"}
    results = []
    for c in candidates:
        r = check(read_window(params[c], key.place, key.code.size, key.layer_kept), key.code, key.place)
        results.append({**r, "layer": c})
    best = min(results, key=lambda r: r["p_value"])
    best["p_value"] = min(1.0, best["p_value"] * len(candidates))
    best["layers_tried"] = len(candidates)
    best["decodes"] = best["decoded"] == key.signature
    return best


def _black(model: Any, key: OwnerKey) -> dict[str, Any] | None:
    if key.trigger is None:
        return None
    return check_trigger(model, key.trigger[0], key.trigger[1], key.classes)


def _public(r: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if r is None else {k: v for k, v in r.items() if k != "recovered"}


def embed_signature(model: ModelLike, data: DataLike, *, signature: str, target_sparsity: float = 0.8,
                    layer: str | None = None, epochs: int = 8, rounds: int = 1, trigger: int = 50,
                    robust_sparsity: float = 0.95, test_data: DataLike | None = None,
                    recipe: Recipe | str | None = None, lr: float = 3e-3, batch_size: int = 64, seed: int = 0,
                    key_seed: int | None = None, alpha: float = 0.01, bounds: Bounds = Bounds(),
                    data_options: DataOptions | None = None, out: str | Path = "ownership", progress: bool = False,
                    **model_kw: Any) -> dict[str, Any]:
    """Prune `model` to `target_sparsity` (global magnitude, in `rounds` of prune-and-train), carve the QR code of
    `signature` into one layer's mask, train a `trigger`-input watermark in with the masks held, and write
    model.pt2 and the owner's key (model.key.json + .npz) into `out`, with embed.json and the report. The accuracy
    cost is measured against the same pruning and training without signature or trigger. `robust_sparsity` > the
    target holds the signature's weights above the magnitude that pruning to that sparsity would remove."""
    if not 0.0 < target_sparsity < 1.0:
        raise InputError(f"--sparsity must lie in (0, 1), got {target_sparsity}")
    if epochs < 0 or rounds < 1 or trigger < 0:
        raise InputError("--epochs and --trigger must be >= 0 and --rounds >= 1")
    if not 0.0 < alpha < 1.0:
        raise InputError(f"--alpha must lie in (0, 1), got {alpha}")
    train_recipe: Recipe | None
    if isinstance(recipe, str):
        from robustaudit.models.load import import_attribute

        train_recipe = import_attribute(recipe)
    else:
        train_recipe = recipe
    started = time.monotonic()
    module = _module(model, model_kw)
    x, y, xte, yte, test_from = _data(data, test_data, bounds, seed, data_options)
    classes = _classes(module, x, y)
    already = sparsity(masks_of(module))
    if already > target_sparsity:
        raise InputError(f"the model is already {already:.3f} sparse, above --sparsity {target_sparsity}")
    key_rng = np.random.default_rng(secrets.randbits(63) if key_seed is None else key_seed)
    acc_input = accuracy(module, xte, yte)
    code = make_code(signature, max(min(project(m).shape) for m in masks_of(module).values()))
    tx, ty = (make_trigger(tuple(x.shape[1:]), trigger, classes, bounds, int(key_rng.integers(2**62)))
              if trigger else (x[:0], y[:0]))
    with progress_bar(progress) as bar:
        for r in range(1, rounds):  # iterative magnitude pruning towards the target
            masks = magnitude_masks(module, 1.0 - (1.0 - target_sparsity) ** (r / rounds))
            apply_masks(module, masks)
            _train(module, masks, None, x, y, epochs, recipe=train_recipe, lr=lr, batch=batch_size, seed=seed + r,
                   what=f"pruning round {r}/{rounds}", bar=bar)
        before = {n: p.detach().clone() for n, p in prunable(module).items()}
        masks = magnitude_masks(module, target_sparsity)
        apply_masks(module, masks)
        baseline = copy.deepcopy(module)
        _train(baseline, masks, None, x, y, epochs, recipe=train_recipe, lr=lr, batch=batch_size, seed=seed,
               what="reference ticket (no signature)", bar=bar)
        # the window is chosen from the code alone and the pad drawn after: given the window the carved pattern is
        # uniform, which makes the null distribution of an independent model's matching bits exact
        where = choose_window(masks, code, code.bits, layer)
        pad = key_rng.integers(0, 2, code.bits.shape).astype(np.uint8)
        place = Placement(where.layer, where.row, where.col, carved_pattern(code, pad))
        kept = torch.cat([p.detach().abs()[masks[n]].flatten().cpu() for n, p in prunable(module).items()])
        floor = 0.0
        if robust_sparsity > target_sparsity:  # within the kept weights, the share that pruning further keeps
            level = 1.0 - (1.0 - robust_sparsity) / (1.0 - target_sparsity)
            floor = 1.5 * float(np.quantile(kept.numpy(), level))
        new_masks, floors, changes = embed(masks, before, code, place, floor=floor)
        with torch.no_grad():
            w = prunable(module)[place.layer]
            w.copy_(before[place.layer].to(w.device) * new_masks[place.layer])  # switched-on entries: pre-prune value
        xs, ys = with_trigger(x, y, tx, ty)
        _train(module, new_masks, floors, xs, ys, epochs, recipe=train_recipe, lr=lr, batch=batch_size, seed=seed,
               what="signed ticket (signature + trigger)", bar=bar)
    final_masks = masks_of(module)
    key = OwnerKey(signature, code, place, tuple(prunable(module)[place.layer].shape),
                   int(final_masks[place.layer].sum()), sparsity(final_masks), classes,
                   (tx, ty) if trigger else None, alpha)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    save_program(module, folder / "model.pt2", x[:2].to(next(module.parameters()).device))
    key.save(folder / "model.key.json")
    white = _white(module, key)
    black = _black(as_model(module), key)
    acc_signed, acc_base = accuracy(module, xte, yte), accuracy(baseline, xte, yte)
    result: dict[str, Any] = {
        "model": str(model) if isinstance(model, str | Path) else type(model).__name__,
        "signature": signature, "qr_version": code.version, "qr_size": code.size, "layer": place.layer,
        "offset": [place.row, place.col], "signature_bits": int((code.function == 0).sum()),
        "sparsity": key.sparsity, "target_sparsity": target_sparsity,
        "nonzeros_pruned": int(sum(int(m.sum()) for m in masks.values())),
        "nonzeros_signed": int(sum(int(m.sum()) for m in final_masks.values())),
        "connections_changed": changes, "magnitude_floor": floor, "robust_sparsity": robust_sparsity,
        "signature_survives_pruning_to": _survives_to(module, key),
        "accuracy": {"input_model": acc_input, "ticket_without_signature": acc_base, "signed_ticket": acc_signed,
                     "cost": acc_base - acc_signed, "test": test_from, "n_test": len(xte)},
        "trigger_size": trigger, "classes": classes, "epochs": epochs, "rounds": rounds,
        "white_box": _public(white), "black_box": black, "alpha": alpha,
        "files": {"model": "model.pt2", "key": "model.key.json", "key_arrays": "model.key.npz"},
        "seconds": time.monotonic() - started,
        "provenance": _provenance(model, x, y, seed=seed, model_kw=model_kw, settings={
            "signature": signature, "target_sparsity": target_sparsity, "layer": layer, "epochs": epochs,
            "rounds": rounds, "trigger": trigger, "robust_sparsity": robust_sparsity, "lr": lr,
            "batch_size": batch_size, "alpha": alpha, "recipe": None if recipe is None else str(recipe)}),
        "caveats": ["keep model.key.json and model.key.npz secret: with them a thief can locate and erase the "
                    "signature and unlearn the trigger set"]}
    _write(folder, "embed.json", result, white)
    return result


def verify_ownership(model: ModelLike, key: str | Path | OwnerKey, *, mode: str = "auto", alpha: float | None = None,
                     out: str | Path | None = "ownership-verify", **model_kw: Any) -> dict[str, Any]:
    """Is `model` the owner's (or derived from it)? White-box: the signature read from its mask (bit-error rate,
    exact p-value, QR decoded); black-box: its top-1 labels on the trigger set through any model source (exact
    queries, p-value). `mode` auto runs white-box when the weights are readable and black-box when the key has a
    trigger set. Ownership is shown when a test's p-value is below alpha / (number of tests run)."""
    if mode not in ("auto", "white", "black"):
        raise InputError(f"--mode must be auto, white or black, got {mode!r}")
    k = key if isinstance(key, OwnerKey) else OwnerKey.load(key)
    a = k.alpha if alpha is None else alpha
    if not 0.0 < a < 1.0:
        raise InputError(f"--alpha must lie in (0, 1), got {a}")
    local = isinstance(model, nn.Module) or (isinstance(model, str | Path) and not str(model).startswith(
        ("http://", "https://")) and not str(model).endswith(".onnx"))
    if mode == "white" and (k.place is None or not local):
        raise InputError("white-box verification needs a key with a signature and a local PyTorch model")
    if mode == "black" and k.trigger is None:
        raise InputError("black-box verification needs a key with a trigger set (embed with --trigger N)")
    white = None
    if mode in ("auto", "white") and k.place is not None and local:
        white = _white(_module(model, model_kw), k)
    black = None
    if mode in ("auto", "black") and k.trigger is not None:
        black = _black(as_model(model, access=Access.LABELS, **model_kw), k)
    tests = [t for t in (white, black) if t is not None]
    if not tests:
        raise InputError("nothing to verify: the model's weights cannot be read and the key has no trigger set")
    threshold = a / len(tests)
    owned = any(t["p_value"] < threshold for t in tests)
    result: dict[str, Any] = {
        "model": str(model) if isinstance(model, str | Path) else type(model).__name__, "signature": k.signature,
        "verdict": "ownership shown" if owned else "ownership not shown", "owned": owned, "alpha": a,
        "threshold": threshold, "white_box": _public(white), "black_box": black,
        "queries": 0 if black is None else black["queries"], "caveats": [],
        "provenance": _provenance(model, *(k.trigger or (torch.zeros(0), torch.zeros(0, dtype=torch.long))),
                                  seed=None, model_kw=model_kw, settings={"mode": mode, "alpha": a})}
    if out is not None:
        _write(Path(out), "verify.json", result, white)
    return result


def removal_attacks(model: ModelLike, key: str | Path | OwnerKey, data: DataLike, *, finetune: int = 5,
                    prune: Sequence[float] = (0.85, 0.9, 0.95), fill: Sequence[float] = (0.01, 0.05, 0.1),
                    fill_std: float = 0.1, lr: float = 1e-3, batch_size: int = 64, test_data: DataLike | None = None,
                    seed: int = 0, bounds: Bounds = Bounds(), data_options: DataOptions | None = None,
                    out: str | Path = "ownership-attack", progress: bool = False, **model_kw: Any) -> dict[str, Any]:
    """The paper's removal attacks on the owner's model, each followed by white-box and black-box verification and
    the test accuracy: fine-tuning with the mask held (after each of `finetune` epochs), further global magnitude
    pruning to each sparsity in `prune`, mask filling (a fraction of the pruned weights revived with N(0, fill_std²)
    values). An attack succeeds only if ownership is no longer shown and the accuracy stays close."""
    k = key if isinstance(key, OwnerKey) else OwnerKey.load(key)
    if any(not 0.0 < s < 1.0 for s in prune) or any(not 0.0 < f <= 1.0 for f in fill) or finetune < 0:
        raise InputError("--prune takes sparsities in (0, 1), --fill fractions in (0, 1], --finetune epochs >= 0")
    original = _module(model, model_kw)
    x, y, xte, yte, test_from = _data(data, test_data, bounds, seed, data_options)
    _classes(original, x, y)
    rows: list[dict[str, Any]] = []

    def measure(attack: str, strength: float, module: nn.Module) -> None:
        white = _white(module, k) if k.place is not None else None
        black = _black(as_model(module), k)
        tests = [t for t in (white, black) if t is not None]
        rows.append({"attack": attack, "strength": strength, "sparsity": sparsity(masks_of(module)),
                     "accuracy": accuracy(module, xte, yte),
                     "bit_error_rate": None if white is None else white["bit_error_rate"],
                     "qr_decodes": None if white is None else white["decodes"],
                     "white_p_value": None if white is None else white["p_value"],
                     "trigger_accuracy": None if black is None else black["trigger_accuracy"],
                     "black_p_value": None if black is None else black["p_value"],
                     "verified": any(t["p_value"] < k.alpha / len(tests) for t in tests)})

    measure("none", 0, original)
    gen = torch.Generator().manual_seed(seed)
    with progress_bar(progress) as bar:
        tuned = copy.deepcopy(original)
        masks = masks_of(tuned)
        for epoch in range(1, finetune + 1):
            _train(tuned, masks, None, x, y, 1, recipe=None, lr=lr, batch=batch_size, seed=seed + epoch,
                   what=f"fine-tuning epoch {epoch}", bar=bar)
            measure("finetune", epoch, tuned)
        for s in prune:
            pruned = copy.deepcopy(original)
            apply_masks(pruned, magnitude_masks(pruned, s))
            measure("prune", s, pruned)
        for f in fill:
            filled = copy.deepcopy(original)
            with torch.no_grad():
                for p in prunable(filled).values():
                    zero = p == 0
                    revive = zero & (torch.rand(p.shape, generator=gen) < f).to(p.device)
                    p[revive] = (fill_std * torch.randn(int(revive.sum()), generator=gen)).to(p.device, p.dtype)
            measure("fill", f, filled)
    result: dict[str, Any] = {
        "model": str(model) if isinstance(model, str | Path) else type(model).__name__, "signature": k.signature,
        "alpha": k.alpha, "rows": rows, "test": test_from, "n_test": len(xte), "fill_std": fill_std,
        "finetune_lr": lr,
        "removed": [r for r in rows if not r["verified"] and r["accuracy"] >= rows[0]["accuracy"] - 0.01],
        "caveats": [],
        "provenance": _provenance(model, x, y, seed=seed, model_kw=model_kw, settings={
            "finetune": finetune, "prune": list(prune), "fill": list(fill), "fill_std": fill_std, "lr": lr,
            "batch_size": batch_size})}
    _write(Path(out), "attack.json", result, None)
    return result


def _write(folder: Path, name: str, result: dict[str, Any], white: dict[str, Any] | None) -> None:
    from robustaudit.report.ownership import ownership_report

    folder = _write_json(folder, name, result)
    ownership_report(name.split(".")[0], result, white, folder).write(folder, result)
