"""The Python API: `audit()` is the one function behind `robustaudit evaluate` (the CLI parses, calls it, shows)."""

from __future__ import annotations

import dataclasses
import datetime
import platform
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from robustaudit.attacks.base import Attack
from robustaudit.attacks.registry import resolve
from robustaudit.checks import label_mismatch
from robustaudit.errors import InputError
from robustaudit.extras import require
from robustaudit.gate import Gate
from robustaudit.models.base import GradModel, LabelModel
from robustaudit.models.load import as_model
from robustaudit.results import EvalRecord
from robustaudit.run.data import ArraySource, Source, load_npz, open_source
from robustaudit.run.fingerprint import fingerprint_data, fingerprint_model, sha256_tensors
from robustaudit.threat import ThreatModel
from robustaudit.types import Access, Bounds, DataOptions, Norm, parse_number
from robustaudit.version import __version__

SCHEMA_VERSION = 2
GALLERY = 8  # broken examples shown in the report
ModelLike = str | Path | nn.Module | LabelModel
DataLike = str | Path | torch.Tensor | np.ndarray | Source


def audit(
    model: ModelLike,
    data_or_x: DataLike,
    y: torch.Tensor | np.ndarray | None = None,
    *,
    eps: float | str,
    norm: str | Norm = "linf",
    attacks: str | Sequence[Attack] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    backend: str = "local",
    seed: int = 0,
    batch_size: int = 256,
    bounds: tuple[float, float] | Bounds = (0.0, 1.0),
    budget: int | None = None,
    access: str | Access | None = None,
    target: int | str | None = None,
    surrogate: ModelLike | None = None,
    starts: str | Path | tuple[torch.Tensor, torch.Tensor] | None = None,
    interpreter: str | None = None,
    layer: str | None = None,
    map_weight: float = 0.0,
    player2: str | None = None,
    checks: bool = True,
    adaptive: bool = True,
    eot: int = 20,
    shard_size: int = 512,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    output_key: str | None = None,
    device: str | None = None,
    remote: Mapping[str, Any] | None = None,
    trust_model_file: bool = False,
    precision: str = "fp32",
    compile_model: bool = False,
    address: str | None = None,
    workers: int | None = None,
    data_options: DataOptions | None = None,
    progress: bool = False,
    gate: Gate | None = None,
) -> EvalRecord:
    """Audit `model` on data under an `eps`-ball of `norm`: clean accuracy, then a cascade of attacks on the
    still-robust examples; robust accuracy with its exact 95% interval, diagnostics flags, one record per example.

    `model`: a plain `nn.Module`, a model file or URL (what `--model` takes), or a robustaudit model wrapper.
    `data_or_x`: inputs x (with labels `y`; without, the model's clean predictions are the labels), an .npz file,
    an image folder or Parquet. `attacks`: a preset (fast, standard, strongest), names, or Attack objects; default:
    as `default_attacks` picks for the access level and norm. `budget`: the
    hard total of queries per example, everything included. `target`: a class index, "second" or "random" for a
    targeted audit. `player2`: fgbb's player II (cooperative, adversarial, random). With `out`, every file the CLI
    writes is written there (results.json, adversarial.npz,
    summary.md, report.html) and finished shards are committed to its store, so a rerun with `resume` continues.
    `backend="ray"` runs shards on a Ray cluster (`address`, `workers`). With `adaptive` (the default) the
    diagnostics choose adaptations against gradient masking (log-probabilities, EOT over `eot` draws, BPDA, or a
    gradient-free attack) and the adapted cascade attacks what the naive one left robust. Model files never run
    code they carry unless `trust_model_file` (see `load_model`); `precision` (fp32, bf16, fp16: mixed precision)
    and `compile_model` (`torch.compile`) speed up a torch model (see `TorchModel`). With `gate`, the record
    carries its verdict on the robust accuracy (`record.gate["passed"]`), written with the other files.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x, y = torch.rand(8, 4), torch.zeros(8, dtype=torch.long)
    >>> audit(net, x, y, eps=0.1).n
    8
    """
    from robustaudit.run.backends import RayBackend
    from robustaudit.run.runner import check_attacks
    from robustaudit.run.targets import choose_targets
    from robustaudit.validate import check_inputs

    level = _access(access)
    threat = ThreatModel(norm=Norm.parse(norm), eps=parse_number(eps), bounds=_bounds(bounds), max_queries=budget,
                         targeted=target is not None)
    opts = data_options or DataOptions()
    source = _source(data_or_x, y, opts)
    pool = load_npz(starts) if isinstance(starts, str | Path) else starts
    factory = _factory(model, level, device, mean, std, output_key, remote, trust_model_file, precision,
                       compile_model)
    m = factory()
    system = _interpretable(m, interpreter, layer, map_weight, level)
    if system is not None:
        m = system
    if backend not in ("local", "ray"):
        raise InputError(f"backend must be local or ray, got {backend!r}")
    runner = RayBackend(factory, address=address, workers=workers) if backend == "ray" else None
    if attacks is None:
        attacks = default_attacks(Access(m.access), threat.norm, threat.targeted)
    chosen = resolve(attacks, threat.norm) if isinstance(attacks, str) else list(attacks)
    attack_list = check_attacks(m, threat, _with_player2(_with_map_weight(
        _with_surrogate(chosen, surrogate, device, trust_model_file), map_weight), player2))
    if len(source) == 0:
        raise InputError("the data holds no examples")
    # checked before anything starts: data in memory whole, streamed data (decoded images) its first shard
    x0, y0 = (source.x, source.y) if isinstance(source, ArraySource) else source.read(0, min(len(source), shard_size))
    check_inputs(x0, torch.zeros(len(x0), dtype=torch.long) if y0 is None else y0, threat.bounds)
    targets, spent = None, None
    if target is not None:
        labelled = isinstance(source, ArraySource) and source.y is not None
        if str(target) in ("second", "random") and not labelled:
            raise InputError(f"target {target} needs labelled in-memory data (.npz or arrays); give a class index")
        xs, ys = (source.x, source.y) if isinstance(source, ArraySource) and source.y is not None else \
            (torch.zeros(0), torch.zeros(len(source), dtype=torch.long))
        if len(xs) > len(x0):  # targets are chosen on all the data, before the shards are checked one by one
            check_inputs(xs, ys, threat.bounds)
        targets, spent = choose_targets(str(target), m, xs, ys, seed=seed, batch_size=batch_size)
    config = {
        "schema_version": SCHEMA_VERSION,
        "model": _name(model), "model_sha256": fingerprint_model(model), "data_sha256": fingerprint_data(source,
                                                                                                      data_or_x),
        "data_options": opts.to_json() if not isinstance(source, ArraySource) else None,
        "model_options": {"mean": None if mean is None else list(mean), "std": None if std is None else list(std),
                          "output_key": output_key, "access": None if level is None else level.name.lower(),
                          "precision": precision, "compile": compile_model},
        "threat": threat.to_json(), "attacks": [attack_settings(a) for a in attack_list], "seed": seed,
        "batch_size": batch_size, "target": None if target is None else str(target),
        "starts_sha256": None if pool is None else sha256_tensors(*pool), "surrogate": _name(surrogate),
        "checks": checks, "adaptive": adaptive, "eot": eot, "interpreter": interpreter, "layer": layer,
        "map_weight": map_weight,
        "shard_size": shard_size,
    }
    if eot < 1:
        raise InputError(f"eot must be >= 1 draws, got {eot}")
    options: dict[str, Any] = {"seed": seed, "batch_size": batch_size, "checks": checks, "target": targets,
                               "starts": pool, "spent": spent, "backend": runner, "progress": progress,
                               "adaptive": adaptive, "eot": eot}
    if out is None:
        from robustaudit.run.sharded import evaluate_sharded

        record = evaluate_sharded(m, source, threat, attack_list, shard_size=shard_size, **options)
    else:
        record = _stored_run(m, source, threat, attack_list, Path(out), config, shard_size, resume, options)
    record = _finish(record, config, source, factory, interpreter, layer)
    if gate is not None:
        handled = {code for a in record.adaptations for code in a["reason"].split(",")}
        record = dataclasses.replace(record, gate=gate.judge("robust accuracy", record.robust_accuracy,
                                                             record.robust_accuracy_ci95, record.flag_codes,
                                                             handled))
    if out is not None:
        from robustaudit.report.files import write_run

        first = [e.index for e in record.examples if e.broken_by][:GALLERY]
        clean = torch.cat([source.read(i, i + 1)[0] for i in first]) if first else torch.zeros(0)
        write_run(record, Path(out), gallery=(first, clean))
    return record


def default_attacks(access: Access, norm: Norm, targeted: bool) -> str:
    """The default cascade at each access level: PMA then APGD-T with gradients; Square (and the genetic attack
    under Linf) with scores; with labels, CGBA (CGBA-H targeted) under L2, RayS (HopSkipJump targeted) under Linf.
    At L0: PGD-L0 then Sparse-RS with gradients, Sparse-RS then fgbb with scores."""
    if norm == Norm.L0:
        if access < Access.SCORES:
            raise InputError("no label-only attack at --norm l0 yet: fgbb and sparse-rs need the model's scores")
        return "fast" if access >= Access.GRADIENTS else "sparse-rs,fgbb"
    if access >= Access.GRADIENTS:
        return "fast"
    if access == Access.SCORES:
        return "square,genetic" if norm == Norm.LINF else "square"
    if norm == Norm.L2:
        return "cgba-h" if targeted else "cgba"
    return "hsja" if targeted else "rays"


def _stored_run(model: LabelModel, source: Source, threat: ThreatModel, attacks: list[Attack], out: Path,
                config: dict[str, Any], shard_size: int, resume: bool, options: dict[str, Any]) -> EvalRecord:
    """Run shard by shard into the store in `out`, resuming what it holds; a run that fails before its first shard
    leaves nothing behind."""
    import logging

    from robustaudit.run.sharded import evaluate_sharded
    from robustaudit.run.store import STORE_NAME, Store

    path = out / STORE_NAME
    if resume and not path.is_file():
        raise InputError(f"resume: {out} holds no run to resume ({STORE_NAME} is missing)")
    fresh, created = not path.is_file(), not out.exists()
    store = Store(path)
    try:
        store.bind(config)
        if done := len(store.done()):
            logging.getLogger("robustaudit").info("resuming the run in %s: %d finished shard(s) are read back",
                                                  out, done)
        return evaluate_sharded(model, source, threat, attacks, shard_size=shard_size, store=store, **options)
    except InputError:
        empty = not store.done()
        store.close()
        if fresh and empty:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            if created and not any(out.iterdir()):
                out.rmdir()
        raise
    finally:
        store.close()


def _finish(record: EvalRecord, config: dict[str, Any], source: Source, factory: Callable[[], LabelModel],
            interpreter: str | None, layer: str | None) -> EvalRecord:
    """The record with the run's identity and, with an interpreter, the map similarity of every broken example."""
    provenance = {
        "schema_version": SCHEMA_VERSION, "robustaudit_version": __version__, "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "data_sha256": config["data_sha256"], "model_options": config["model_options"],
        "attack_settings": config["attacks"],
    }
    mismatch = label_mismatch(record.examples, record.data)
    record = dataclasses.replace(record, model_sha256=config["model_sha256"], provenance=provenance,
                                 flags=record.flags + ([mismatch] if mismatch else []))
    if interpreter is None:
        return record
    from robustaudit.interpret.maps import map_similarity

    broken = [e.index for e in record.examples if e.broken_by]
    summary: dict[str, Any] = {"interpreter": interpreter, "layer": layer, "broken": len(broken)}
    examples = list(record.examples)
    if broken:
        clean = torch.cat([source.read(i, i + 1)[0] for i in broken])
        sim = map_similarity(factory().module, clean, record.x_adv[broken], interpreter,  # type: ignore[attr-defined]
                             layer)
        for key, values in sim.items():
            summary[f"mean_{key}"] = float(values.mean())
        for j, i in enumerate(broken):
            examples[i] = dataclasses.replace(examples[i], extra=examples[i].extra | {
                f"map_{key}": float(values[j]) for key, values in sim.items()})
    return dataclasses.replace(record, examples=examples, interpretation=summary)


def attack_settings(attack: Attack) -> dict[str, Any]:
    """An attack's name and every hyper-parameter, JSON-ready (models given as settings are named by type)."""
    settings: dict[str, Any] = {"name": attack.name}
    for f in dataclasses.fields(attack):
        v = getattr(attack, f.name)
        settings[f.name] = v if isinstance(v, int | float | str | bool | type(None)) else \
            list(v) if isinstance(v, tuple) and all(isinstance(e, int | float | str) for e in v) else type(v).__name__
    return settings


def _access(access: str | Access | None) -> Access | None:
    if access is None or isinstance(access, Access):
        return access
    level = {"gradients": Access.GRADIENTS, "scores": Access.SCORES, "labels": Access.LABELS}.get(str(access))
    if level is None:
        raise InputError(f"access must be gradients, scores or labels, got {access!r}")
    return level


def _bounds(bounds: tuple[float, float] | Bounds) -> Bounds:
    if isinstance(bounds, Bounds):
        return bounds
    if len(bounds) != 2:
        raise InputError(f"bounds must be (low, high), got {bounds!r}")
    return Bounds(float(bounds[0]), float(bounds[1]))


def _source(data: DataLike, y: torch.Tensor | np.ndarray | None, opts: DataOptions) -> Source:
    if isinstance(data, str | Path):
        if y is not None:
            raise InputError("labels come from the data file: give y only with arrays")
        return open_source(data, size=opts.size, channels=opts.channels, crop=opts.crop,
                           image_column=opts.image_column, label_column=opts.label_column, classes=opts.classes)
    if isinstance(data, torch.Tensor | np.ndarray):
        x = data if torch.is_tensor(data) else torch.from_numpy(np.asarray(data))
        yt = None if y is None else (y if torch.is_tensor(y) else torch.from_numpy(np.asarray(y))).long()
        if yt is not None and (yt.dim() != 1 or len(yt) != len(x)):
            raise InputError(f"y must hold one label per example: x has {len(x)} rows, y has shape "
                             f"{tuple(yt.shape)}")
        return ArraySource(x.detach().cpu(), None if yt is None else yt.cpu(), {"source": "arrays"})
    if hasattr(data, "read") and hasattr(data, "__len__"):
        return data
    raise InputError(f"cannot read data from a {type(data).__name__}: give x (a tensor or array), an .npz file, "
                     "an image folder or Parquet")


def _factory(model: ModelLike, level: Access | None, device: str | None, mean: Sequence[float] | None,
             std: Sequence[float] | None, output_key: str | None, remote: Mapping[str, Any] | None,
             trust: bool, precision: str = "fp32", compile_model: bool = False) -> Callable[[], LabelModel]:
    """A function that builds the model (each Ray worker calls it once)."""

    def build() -> LabelModel:
        return as_model(model, access=level, device=device, mean=mean, std=std, output_key=output_key,
                        remote=remote, trust_model_file=trust, precision=precision, compile_model=compile_model)

    return build


def _interpretable(model: LabelModel, interpreter: str | None, layer: str | None, map_weight: float,
                   access: Access | None) -> LabelModel | None:
    """The model as an interpretable system (scores + maps per query) when the genetic attack's map term is on."""
    from robustaudit.interpret.maps import INTERPRETERS, conv_layer
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
    require("captum.attr", "--interpreter")  # refused before the audit, not after it
    if layer is not None or interpreter in ("gradcam", "cam"):
        conv_layer(model.module, layer)  # refused now, before the audit, when it does not exist
    if not map_weight:
        return None
    if access != Access.SCORES:
        raise InputError("--map-weight is for the genetic attack against an interpretable system: add --access scores")
    return InterpretableSystem(model.module, interpreter, layer)


def _with_surrogate(attacks: list[Attack], surrogate: ModelLike | None, device: str | None,
                    trust: bool) -> list[Attack]:
    """Hand the surrogate model to the genetic attack (its initial population; free, never charged)."""
    from robustaudit.attacks.score.genetic import Genetic

    if surrogate is None:
        return attacks
    if not any(isinstance(a, Genetic) for a in attacks):
        raise InputError("--surrogate is used by the genetic attack only; add 'genetic' to --attacks")
    model = cast(GradModel, as_model(surrogate, access=Access.GRADIENTS, device=device, trust_model_file=trust))
    return [dataclasses.replace(a, surrogate=model) if isinstance(a, Genetic) else a for a in attacks]


def _with_map_weight(attacks: list[Attack], weight: float) -> list[Attack]:
    from robustaudit.attacks.score.genetic import Genetic

    if not weight:
        return attacks
    if not any(isinstance(a, Genetic) for a in attacks):
        raise InputError("--map-weight is used by the genetic attack only; add 'genetic' to --attacks")
    return [dataclasses.replace(a, map_weight=weight) if isinstance(a, Genetic) else a for a in attacks]


def _with_player2(attacks: list[Attack], player2: str | None) -> list[Attack]:
    from robustaudit.attacks.score.fgbb import FGBB

    if player2 is None:
        return attacks
    if not any(isinstance(a, FGBB) for a in attacks):
        raise InputError("--player2 is used by the fgbb attack only; add 'fgbb' to --attacks (at --norm l0)")
    return [dataclasses.replace(a, player2=player2) if isinstance(a, FGBB) else a for a in attacks]


def _name(model: ModelLike | None) -> str | None:
    if model is None:
        return None
    if isinstance(model, str | Path):
        return str(model)
    return str(getattr(model, "name", type(model).__name__))
