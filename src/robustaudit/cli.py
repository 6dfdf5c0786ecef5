"""The `robustaudit` command line."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from rich.table import Table

from robustaudit.attacks.base import Attack
from robustaudit.attacks.registry import resolve
from robustaudit.attacks.topk import commands as topk_commands
from robustaudit.certify import commands as certify_commands
from robustaudit.console import err, fail, out, parse_bounds
from robustaudit.errors import InputError
from robustaudit.models.base import LabelModel
from robustaudit.results import EvalRecord
from robustaudit.run.data import Source
from robustaudit.scaling.commands import app as scaling_app
from robustaudit.threat import ThreatModel
from robustaudit.transfer import commands as transfer_commands
from robustaudit.types import Access, Bounds, Norm

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Audit how robust a classifier really is.")


def _show(record: EvalRecord, where: Path) -> None:
    lo, hi = record.robust_accuracy_ci95
    table = Table(title=f"robustaudit: {record.threat['norm']} eps={record.threat['eps']:g} on {record.n} examples")
    for col in ("attack", "attacked", "broken", "seconds", "gradients", "forwards"):
        table.add_column(col, justify="left" if col == "attack" else "right")
    for a in record.attacks:
        table.add_row(a.name, str(a.attacked), str(a.broken), f"{a.seconds:.1f}", str(a.gradients), str(a.forwards))
    out.print(table)
    out.print(f"clean accuracy  {record.clean_accuracy:.3f}")
    out.print(f"robust accuracy {record.robust_accuracy:.3f}  (95% CI {lo:.3f}-{hi:.3f})")
    for a in record.attacks:
        for note in a.notes:
            out.print(f"note: {note}", highlight=False)
    for f in record.flags:
        out.print(f"[yellow]flag {f.code}:[/] {f.message}", highlight=False)
    files = "report.html, results.json, adversarial.npz, summary.md" + (
        ", curves.json" if (where / "curves.json").is_file() else "")
    out.print(f"results written to {where}/ ({files})", highlight=False)


def _with_surrogate(attacks: list[Attack], surrogate: str | None, device: str | None) -> list[Attack]:
    """Hand the --surrogate model to the attacks that take one (the genetic attack's initial population)."""
    if surrogate is None:
        return attacks
    from robustaudit.models.load import load_model

    model = load_model(surrogate, access=Access.GRADIENTS, device=device)
    if not any(hasattr(a, "surrogate") for a in attacks):
        raise InputError("--surrogate is used by the genetic attack only; add 'genetic' to --attacks")
    return [dataclasses.replace(a, surrogate=model) if hasattr(a, "surrogate") else a  # type: ignore[call-arg]
            for a in attacks]


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{option} must be comma-separated numbers, got {text!r}") from None


@app.command()
def evaluate(
    model: Annotated[str, typer.Option(help="model.pt (TorchScript), model.pt2 (torch.export), model.onnx, "
                                            "package.module:callable or file.py:callable")],
    data: Annotated[Path, typer.Option(help=".npz with x (float32) and y (int labels); a folder with one "
                                            "sub-folder of images per class; or Parquet (file or folder)")],
    eps: Annotated[float, typer.Option(help="perturbation budget in input units")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")],
    norm: Annotated[str, typer.Option(help="linf or l2")] = "linf",
    attacks: Annotated[str | None, typer.Option(help="fast | standard | strongest | NAME[,NAME...]; default: fast "
                                                     "(square,genetic at --access scores, cgba at --access labels, "
                                                     "cgba-h when targeted)")] = None,
    seed: Annotated[int, typer.Option(help="seed of every random draw")] = 0,
    batch_size: Annotated[int, typer.Option(help="examples per batch")] = 256,
    bounds: Annotated[str, typer.Option(help="valid input range LOW,HIGH")] = "0,1",
    budget: Annotated[int | None, typer.Option(help="max queries the attacks may spend per example, in all")] = None,
    access: Annotated[str | None, typer.Option(help="gradients | scores | labels (default: the most the model "
                                                    "offers)")] = None,
    output_name: Annotated[str | None, typer.Option(help="ONNX output holding the scores (default: the first)")] = None,
    device: Annotated[str | None, typer.Option(help="torch device (default: the model's)")] = None,
    mean: Annotated[str | None, typer.Option(help="per-channel mean to normalise with inside the model, e.g. "
                                                  "0.485,0.456,0.406")] = None,
    std: Annotated[str | None, typer.Option(help="per-channel std, given with --mean")] = None,
    checks: Annotated[bool, typer.Option(help="run the diagnostics")] = True,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    max_batch: Annotated[int, typer.Option(help="remote model: examples per request")] = 256,
    concurrency: Annotated[int, typer.Option(help="remote model: requests in flight")] = 1,
    rate: Annotated[float | None, typer.Option(help="remote model: at most this many requests per second")] = None,
    timeout: Annotated[float, typer.Option(help="remote model: seconds per request")] = 30.0,
    retries: Annotated[int, typer.Option(help="remote model: retries of a failed request")] = 5,
    token: Annotated[str | None, typer.Option(help="remote model: bearer token (or set ROBUSTAUDIT_TOKEN)",
                                              envvar="ROBUSTAUDIT_TOKEN")] = None,
    surrogate: Annotated[str | None, typer.Option(help="white-box model that seeds the genetic attack (free: never "
                                                       "charged to the target)")] = None,
    target: Annotated[str | None, typer.Option("--target-class", "--target",
                                               help="targeted audit: a class index N, 'second' (the second most "
                                                    "likely class, one score query each) or 'random' (seeded)")] = None,
    starts: Annotated[Path | None, typer.Option(help=".npz (x, y) of starting points for decision-based attacks, "
                                                     "e.g. images of the target classes")] = None,
    size: Annotated[str | None, typer.Option(help="image folder / Parquet: resize images to HxW, e.g. 32x32")] = None,
    channels: Annotated[int, typer.Option(help="image folder / Parquet: 3 (RGB) or 1 (grayscale)")] = 3,
    crop: Annotated[bool, typer.Option(help="image folder / Parquet: centre-crop to the aspect of --size "
                                            "first")] = False,
    image_column: Annotated[str, typer.Option(help="Parquet: the column of encoded image bytes")] = "image",
    label_column: Annotated[str, typer.Option(help="Parquet: the label column (absent: the model's clean "
                                                   "predictions are the labels)")] = "label",
    shard_size: Annotated[int, typer.Option(help="examples per shard: each finished shard is committed to "
                                                 "DIR/store.sqlite")] = 512,
    resume: Annotated[bool, typer.Option(help="continue the run in --out (rerunning into the same folder does so "
                                              "too); refused if its options differ")] = False,
    backend: Annotated[str, typer.Option(help="local (this process) or ray (shards as tasks on a Ray "
                                              "cluster)")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (e.g. auto, ray://HOST:10001); default: "
                                                     "a local cluster")] = None,
    workers: Annotated[int | None, typer.Option(help="Ray workers (default: one per CPU of the cluster)")] = None,
    interpreter: Annotated[str | None, typer.Option(help="gradient | gradxinput | ig | gradcam | cam: add, per "
                                                         "broken example, how similar the interpreter's map of the "
                                                         "adversarial input is to the clean one (PyTorch models)")]
    = None,
    layer: Annotated[str | None, typer.Option(help="the interpreter's layer (gradcam, cam; default: the last "
                                                   "Conv2d)")] = None,
    map_weight: Annotated[float, typer.Option(help="genetic attack at --access scores: weight of the map-similarity "
                                                   "term in its fitness (needs --interpreter)")] = 0.0,
) -> None:
    """Attack MODEL on DATA under a threat model and write results.json and adversarial.npz to --out."""
    from robustaudit.models.load import load_model
    from robustaudit.run.backends import RayBackend
    from robustaudit.run.data import ArraySource, load_npz, open_source
    from robustaudit.run.runner import check_attacks
    from robustaudit.run.targets import choose_targets
    from robustaudit.validate import check_inputs

    try:
        level = None
        if access is not None:
            level = {"gradients": Access.GRADIENTS, "scores": Access.SCORES, "labels": Access.LABELS}.get(access)
            if level is None:
                raise InputError(f"--access must be gradients, scores or labels, got {access!r}")
        threat = ThreatModel(norm=Norm.parse(norm), eps=eps, bounds=parse_bounds(bounds), max_queries=budget,
                             targeted=target is not None)
        source = open_source(data, size=_size(size), channels=channels, crop=crop, image_column=image_column,
                             label_column=label_column)
        pool = None if starts is None else load_npz(starts)
        remote = {"token": token, "max_batch": max_batch, "concurrency": concurrency, "rate": rate,
                  "timeout": timeout, "retries": retries}
        factory = functools.partial(load_model, model, access=level, device=device, mean=_floats(mean, "--mean"),
                                    std=_floats(std, "--std"), output_name=output_name, remote=remote)
        m = factory()
        system = _interpretable(m, interpreter, layer, map_weight, access)
        if system is not None:
            m = system
        if backend not in ("local", "ray"):
            raise InputError(f"--backend must be local or ray, got {backend!r}")
        runner = RayBackend(factory, address=address, workers=workers) if backend == "ray" else None
        if attacks is None:
            labels_default = "cgba-h" if threat.targeted else "cgba"
            attacks = {Access.GRADIENTS: "fast", Access.SCORES: "square,genetic"}.get(Access(m.access), labels_default)
        attack_list = check_attacks(m, threat, _with_map_weight(
            _with_surrogate(resolve(attacks), surrogate, device), map_weight))
        x0, y0 = source.read(0, min(len(source), shard_size))  # the first shard, checked before anything runs
        check_inputs(x0, torch.zeros(len(x0), dtype=torch.long) if y0 is None else y0, threat.bounds)
        targets, spent = None, None
        if target is not None:
            labelled = isinstance(source, ArraySource) and source.y is not None
            if target in ("second", "random") and not labelled:
                raise InputError(f"--target-class {target} needs labelled .npz data; give a class index")
            xs, ys = (source.x, source.y) if isinstance(source, ArraySource) and source.y is not None else \
                (x0[:0], torch.zeros(len(source), dtype=torch.long))
            targets, spent = choose_targets(target, m, xs, ys, seed=seed, batch_size=batch_size)
    except InputError as e:
        fail(str(e))
        return
    config = {"model": model, "model_sha256": _fingerprint(model), "data_sha256": _fingerprint(data),
              "data_options": [size, channels, crop, image_column, label_column],
              "threat": threat.to_json(), "attacks": [repr(a) for a in attack_list], "seed": seed,
              "batch_size": batch_size, "access": access, "mean": mean, "std": std, "target": target,
              "starts_sha256": _fingerprint(starts), "surrogate": surrogate, "checks": checks,
              "interpreter": interpreter, "layer": layer, "map_weight": map_weight}
    _audit(m, source, threat, attack_list, out_dir, quiet=quiet, config=config, shard_size=shard_size, resume=resume,
           seed=seed, batch_size=batch_size, checks=checks, target=targets, starts=pool, spent=spent, backend=runner,
           interpretation=None if interpreter is None else (factory, interpreter, layer))


def _interpretable(model: LabelModel, interpreter: str | None, layer: str | None, map_weight: float,
                   access: str | None) -> LabelModel | None:
    """The model as an interpretable system (scores + maps per query) when the genetic attack's map term is on."""
    from robustaudit.interpret.maps import INTERPRETERS
    from robustaudit.interpret.system import InterpretableSystem
    from robustaudit.models.torch import TorchModel

    if interpreter is None:
        if map_weight:
            raise InputError("--map-weight needs --interpreter (the map the deployment shows)")
        if layer is not None:
            raise InputError("--layer is the interpreter's layer: give --interpreter too")
        return None
    if interpreter not in INTERPRETERS:
        raise InputError(f"--interpreter must be one of {', '.join(INTERPRETERS)}, got {interpreter!r}")
    if not isinstance(model, TorchModel):
        raise InputError("--interpreter needs a local PyTorch model (the interpreters back-propagate through it)")
    if not map_weight:
        return None
    if access != "scores":
        raise InputError("--map-weight is for the genetic attack against an interpretable system: add --access scores")
    return InterpretableSystem(model.module, interpreter, layer)


def _with_map_weight(attacks: list[Attack], weight: float) -> list[Attack]:
    from robustaudit.attacks.score.genetic import Genetic

    if not weight:
        return attacks
    if not any(isinstance(a, Genetic) for a in attacks):
        raise InputError("--map-weight is used by the genetic attack only; add 'genetic' to --attacks")
    return [dataclasses.replace(a, map_weight=weight) if isinstance(a, Genetic) else a for a in attacks]


def _interpretation(out_dir: Path, source: Source, x_adv: torch.Tensor, broken: list[int],
                    spec: tuple[Any, str, str | None]) -> None:
    """Add to results.json, per broken example, how similar the interpreter's adversarial map is to the clean one."""
    from robustaudit.interpret.maps import map_similarity

    factory, interpreter, layer = spec
    module = factory().module
    path = out_dir / "results.json"
    r = json.loads(path.read_text())
    summary: dict[str, Any] = {"interpreter": interpreter, "layer": layer, "broken": len(broken)}
    if broken:
        clean = torch.cat([source.read(i, i + 1)[0] for i in broken])
        sim = map_similarity(module, clean, x_adv[broken], interpreter, layer)
        for key, values in sim.items():
            summary[f"mean_{key}"] = float(values.mean())
            for i, v in zip(broken, values.tolist(), strict=True):
                r["examples"][i][f"map_{key}"] = v
        out.print(f"interpreter {interpreter}: on the {len(broken)} broken examples the adversarial map's Pearson "
                  f"correlation with the clean map is {summary['mean_pearson']:.3f} on average, top-10% IoU "
                  f"{summary['mean_topk_iou']:.3f}", highlight=False)
    r["interpretation"] = summary
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(r, indent=2))
    tmp.replace(path)


def _audit(
    model: LabelModel, source: Source, threat: ThreatModel, attacks: str | list[Attack],
    out_dir: Path, *, quiet: bool, config: dict[str, Any], shard_size: int = 512, resume: bool = False,
    interpretation: tuple[Any, str, str | None] | None = None, **options: Any,
) -> None:
    """Run the evaluation shard by shard into the store in out_dir (resuming what it holds), then write and show
    the results; a run that fails before its first shard leaves nothing behind."""
    from robustaudit.report.files import write_run
    from robustaudit.run.sharded import evaluate_sharded
    from robustaudit.run.store import STORE_NAME, Store

    path = out_dir / STORE_NAME
    if resume and not path.is_file():
        fail(f"--resume: {out_dir} holds no run to resume ({STORE_NAME} is missing)")
        return
    fresh, created = not path.is_file(), not out_dir.exists()
    store = Store(path)
    try:
        store.bind({**config, "shard_size": shard_size})
        if done := len(store.done()):
            err.print(f"resuming the run in {out_dir}: {done} finished shard(s) are read back", highlight=False)
        record = evaluate_sharded(model, source, threat, attacks, shard_size=shard_size, store=store,
                                  progress=not quiet and sys.stderr.isatty(), **options)
    except InputError as e:
        empty = not store.done()
        store.close()
        if fresh and empty:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            if created and not any(out_dir.iterdir()):
                out_dir.rmdir()
        fail(str(e))
        return
    store.close()
    record.model_sha256 = config.get("model_sha256")
    first = [e["index"] for e in record.examples if e["broken_by"]][:GALLERY]
    clean = torch.cat([source.read(i, i + 1)[0] for i in first]) if first else torch.zeros(0)
    _show(record, write_run(record, out_dir, gallery=(first, clean)))
    if interpretation is not None:
        broken = [e["index"] for e in record.examples if e["broken_by"]]
        _interpretation(out_dir, source, record.x_adv, broken, interpretation)
    if not record.complete:
        err.print(f"[bold red]error:[/] {record.stopped}; the results written cover what was done; rerun the same "
                  "command to resume", highlight=False)
        raise typer.Exit(code=1)


def _size(text: str | None) -> tuple[int, int] | None:
    from robustaudit.scaling.scalers import parse_size

    return None if text is None else parse_size(text)


GALLERY = 8  # broken examples shown in the report


def _fingerprint(path: str | Path | None) -> str | None:
    """sha256 of a file (the identity of a model or data set in the run's configuration); for a folder, of its
    files' names and sizes; else None."""
    if path is None or not Path(path).exists():
        return None
    h = hashlib.sha256()
    if Path(path).is_dir():
        for entry in sorted(p for p in Path(path).rglob("*") if p.is_file()):
            h.update(f"{entry.relative_to(path)}:{entry.stat().st_size}\n".encode())
        return h.hexdigest()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="report folder")] = Path("demo-report"),
    attacks: Annotated[str, typer.Option(help="fast | standard | strongest | NAME[,NAME...]")] = "fast",
    eps: Annotated[float, typer.Option(help="Linf budget")] = 0.1,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    certify: Annotated[bool, typer.Option(help="also certify a noise-trained digits CNN with randomized smoothing "
                                               "(sigma 0.25) into DIR/certify/")] = True,
) -> None:
    """Train (once, cached) a small CNN on real handwritten digits, audit it and write a report folder."""
    from robustaudit.demo import demo_files
    from robustaudit.models.load import load_model
    from robustaudit.run.data import ArraySource, load_npz

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model_path, data_path = demo_files()
    out.print(f"demo model: {model_path}\ndemo data:  {data_path}", highlight=False)
    x, y = load_npz(data_path)
    threat = ThreatModel(norm=Norm.LINF, eps=eps)
    config = {"model": "demo", "model_sha256": _fingerprint(model_path), "data_sha256": _fingerprint(data_path),
              "threat": threat.to_json(), "attacks": attacks}
    _audit(load_model(str(model_path)), ArraySource(x, y, {"source": "npz"}), threat, attacks, out_dir, quiet=quiet,
           config=config)
    if certify:
        from robustaudit.demo import noisy_files

        noisy = noisy_files(0.25)
        np.savez(out_dir / "certify-data.npz", x=x[::6].numpy(), y=y[::6].numpy())
        certify_commands.certify(model=str(noisy), sigma=0.25, data=out_dir / "certify-data.npz",
                                 out_dir=out_dir / "certify", n0=100, n=1000, alpha=0.001, denoiser=None, skip=1,
                                 batch_size=500, seed=0, bounds="0,1", quiet=quiet)


@app.command()
def serve(
    model: Annotated[str, typer.Option(help="any model --model accepts in evaluate")],
    access: Annotated[str, typer.Option(help="scores | labels")] = "scores",
    host: Annotated[str, typer.Option(help="address to bind (127.0.0.1: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    name: Annotated[str, typer.Option(help="model name in the URL /v2/models/NAME")] = "model",
    token: Annotated[str | None, typer.Option(help="require this bearer token (or set ROBUSTAUDIT_TOKEN)",
                                              envvar="ROBUSTAUDIT_TOKEN")] = None,
    max_batch: Annotated[int, typer.Option(help="largest batch accepted per request")] = 1024,
    input_shape: Annotated[str | None, typer.Option(help="per-example input shape for the metadata, "
                                                         "e.g. 1,32,32")] = None,
) -> None:
    """Serve MODEL over the Open Inference Protocol (KServe v2 REST) at http://HOST:PORT/v2/models/NAME."""
    import uvicorn

    from robustaudit.models.load import load_model
    from robustaudit.serve import create_app

    try:
        level = {"scores": Access.SCORES, "labels": Access.LABELS}.get(access)
        if level is None:
            raise InputError(f"--access must be scores or labels, got {access!r}")
        shape = [int(v) for v in input_shape.split(",")] if input_shape else None
        m = load_model(model, access=level)
    except (InputError, ValueError) as e:
        fail(str(e))
        return
    err.print(f"serving {model} at http://{host}:{port}/v2/models/{name}", highlight=False)
    uvicorn.run(create_app(m, name=name, token=token, max_batch=max_batch, input_shape=shape), host=host, port=port,
                log_level="warning")


@app.command("attacks")
def list_attacks() -> None:
    """List attack names and presets."""
    from robustaudit.attacks.registry import PRESETS, available, get

    for name in available():
        a = get(name)
        out.print(f"{name:10s} {a.requires.name.lower():9s} {','.join(sorted(n.value for n in a.norms))}")
    for preset, names in PRESETS.items():
        out.print(f"preset {preset}: {' -> '.join(names)}")


@app.command()
def curve(
    model: Annotated[str, typer.Option(help="any model --model accepts in evaluate")],
    data: Annotated[Path, typer.Option(help="any data --data accepts in evaluate (read whole)")],
    eps: Annotated[str, typer.Option(help="comma-separated radii, e.g. 0.02,0.05,0.1,0.2")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder: curve.json and curve.png")],
    norm: Annotated[str, typer.Option(help="linf or l2")] = "linf",
    attacks: Annotated[str, typer.Option(help="preset or NAME[,NAME...]")] = "fast",
    seed: Annotated[int, typer.Option(help="seed of every random draw")] = 0,
    batch_size: Annotated[int, typer.Option(help="examples per batch")] = 256,
    bounds: Annotated[str, typer.Option(help="valid input range LOW,HIGH")] = "0,1",
    channels: Annotated[int, typer.Option(help="image folder / Parquet: 3 (RGB) or 1 (grayscale)")] = 3,
    size: Annotated[str | None, typer.Option(help="image folder / Parquet: resize to HxW")] = None,
) -> None:
    """Robust accuracy versus eps in one run (each eps attacks only the examples still robust at the smaller eps),
    with exact 95% intervals, written to curve.json and plotted in curve.png."""
    from robustaudit.models.load import load_model
    from robustaudit.run.curve import plot_curve, robustness_curve
    from robustaudit.run.data import open_source

    try:
        levels = _floats(eps, "--eps") or []
        lo_hi = _floats(bounds, "--bounds") or []
        if len(lo_hi) != 2:
            raise InputError(f"--bounds must be LOW,HIGH, got {bounds!r}")
        threat = ThreatModel(norm=Norm.parse(norm), eps=max(levels, default=1.0), bounds=Bounds(lo_hi[0], lo_hi[1]))
        source = open_source(data, size=_size(size), channels=channels)
        x, y = source.read(0, len(source))
        if y is None:
            raise InputError("curve needs labelled data")
        m = load_model(model)
        rows = robustness_curve(m, x, y, threat, levels, attacks, seed=seed, batch_size=batch_size)
    except InputError as e:
        fail(str(e))
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "curve.json").write_text(json.dumps({"threat": threat.to_json() | {"eps": levels}, "model": model,
                                                    "n": len(x), "curve": rows}, indent=2))
    plot_curve(rows, out_dir / "curve.png", title=f"{Path(model).name}, {norm}")
    table = Table(title=f"robust accuracy vs eps ({norm}, {len(x)} examples)")
    for col in ("eps", "robust accuracy", "95% CI", "attacked"):
        table.add_column(col, justify="right")
    for r in rows:
        lo, hi = r["robust_accuracy_ci95"]
        table.add_row(f"{r['eps']:g}", f"{r['robust_accuracy']:.3f}", f"{lo:.3f}-{hi:.3f}", str(r["attacked"]))
    out.print(table)
    out.print(f"written to {out_dir}/ (curve.json, curve.png)", highlight=False)


@app.command()
def report(run: Annotated[Path, typer.Argument(help="output folder of an evaluate run")]) -> None:
    """Regenerate DIR/report.html from the run's files (results.json, gallery.npz, curve.json)."""
    from robustaudit.report.html import write_report

    try:
        out.print(f"written {write_report(run)}", highlight=False)
    except InputError as e:
        fail(str(e))


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="output folder of the first run (holding results.json)")],
    run_b: Annotated[Path, typer.Argument(help="output folder of the second run, on the same examples")],
    json_out: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
) -> None:
    """Compare two runs on the same examples (two models, or two attack sets): the difference in robust accuracy
    with its exact 95% interval, and McNemar's exact test on the paired per-example outcomes."""
    from robustaudit.stats import clopper_pearson, mcnemar_exact, paired_difference

    try:
        a, b = _read_results(run_a), _read_results(run_b)
        ea, eb = a["examples"], b["examples"]
        if len(ea) != len(eb) or any(x["label"] != y["label"] for x, y in zip(ea, eb, strict=True)):
            raise InputError(f"{run_a} and {run_b} are not on the same examples ({len(ea)} and {len(eb)} examples, "
                             "or different labels): compare runs made on one data file")
    except InputError as e:
        fail(str(e))
        return
    n = len(ea)
    only_a = sum(x["robust"] and not y["robust"] for x, y in zip(ea, eb, strict=True))
    only_b = sum(y["robust"] and not x["robust"] for x, y in zip(ea, eb, strict=True))
    d, lo, hi = paired_difference(only_a, only_b, n)
    ra, rb = sum(x["robust"] for x in ea), sum(y["robust"] for y in eb)
    result = {
        "n": n, "robust_accuracy_a": ra / n, "robust_accuracy_a_ci95": list(clopper_pearson(ra, n)),
        "robust_accuracy_b": rb / n, "robust_accuracy_b_ci95": list(clopper_pearson(rb, n)),
        "difference": d, "difference_ci95": [lo, hi], "robust_only_in_a": only_a, "robust_only_in_b": only_b,
        "mcnemar_exact_p": mcnemar_exact(only_a, only_b),
    }
    if json_out:
        out.print_json(data=result)
        return
    out.print(f"A {run_a}: robust accuracy {ra / n:.3f} (95% CI {result['robust_accuracy_a_ci95'][0]:.3f}-"
              f"{result['robust_accuracy_a_ci95'][1]:.3f})", highlight=False)
    out.print(f"B {run_b}: robust accuracy {rb / n:.3f} (95% CI {result['robust_accuracy_b_ci95'][0]:.3f}-"
              f"{result['robust_accuracy_b_ci95'][1]:.3f})", highlight=False)
    out.print(f"A - B = {d:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}, exact, conditional on the {only_a + only_b} "
              f"examples where the runs disagree)", highlight=False)
    out.print(f"McNemar exact test: p = {result['mcnemar_exact_p']:.4g} ({only_a} robust only in A, {only_b} only "
              "in B)", highlight=False)


def _read_results(run: Path) -> dict[str, Any]:
    path = run / "results.json" if run.is_dir() else run
    if not path.is_file():
        raise InputError(f"{path} does not exist: give the --out folder of a finished evaluate run")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "examples" not in data:
            raise ValueError("no examples")
        return data
    except ValueError as e:
        raise InputError(f"{path} is not a robustaudit results.json ({e})") from None


app.command("transfer")(transfer_commands.transfer)
app.command("online")(transfer_commands.online)
app.command("topk")(topk_commands.topk)
app.command("certify")(certify_commands.certify)
app.command("robustify")(certify_commands.robustify)
app.add_typer(scaling_app, name="scaling")


def _spread(argv: list[str], option: str = "--surrogates") -> list[str]:
    """Let `--surrogates M1 M2 M3` mean `--surrogates M1 --surrogates M2 --surrogates M3`."""
    out: list[str] = []
    taking = False
    for token in argv:
        if token == option:
            out.append(token)
            taking = True
            continue
        if taking and not token.startswith("-"):
            if out[-1] != option:
                out.append(option)
            out.append(token)
            continue
        taking = False
        out.append(token)
    return out


def main() -> None:
    app(args=_spread(sys.argv[1:]))
