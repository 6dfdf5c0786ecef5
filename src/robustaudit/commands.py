"""One Python function per command besides `audit` (evaluate): each loads what it is given (models as `audit`
takes them, data as arrays or files), runs its library, and with `out` writes the files the CLI writes."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from robustaudit.api import DataLike, DataOptions, ModelLike, _source
from robustaudit.errors import InputError
from robustaudit.gate import Gate
from robustaudit.models.base import GradModel, LabelModel
from robustaudit.models.load import as_model
from robustaudit.provenance import caveats, provenance
from robustaudit.results import EvalRecord
from robustaudit.run.fingerprint import fingerprint_model, sha256_tensors
from robustaudit.stats import clopper_pearson
from robustaudit.threat import ThreatModel
from robustaudit.types import Access, Bounds, Norm, parse_number
from robustaudit.validate import check_inputs, check_labels

ModelKw = Mapping[str, Any]  # mean, std, output_key, device, remote: as `audit` takes them


def _xy(data: DataLike, y: torch.Tensor | None, what: str, data_options: DataOptions | None = None,
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole data set in memory, labelled and non-empty."""
    source = _source(data, y, data_options or DataOptions())
    if len(source) == 0:
        raise InputError("the data holds no examples")
    x, labels = source.read(0, len(source))
    if labels is None:
        raise InputError(f"{what} needs labelled data")
    return x, labels


def _classes_fit(labels: torch.Tensor, model: GradModel, x: torch.Tensor) -> None:
    """A white-box model gives finite scores, and the labels lie inside its classes (one forward pass of one
    input, not an audited query)."""
    with torch.no_grad():
        z = model.logits(x[:1].to(model.device))
    if not bool(torch.isfinite(z).all()):
        raise InputError(f"{getattr(model, 'name', 'a model')} returns NaN or infinite scores")
    check_labels(labels, int(z.shape[1]))


def _write_json(out: str | Path, name: str, result: dict[str, Any]) -> Path:
    """Write `result` as `out`/`name` (the folder created if needed); return the folder."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(json.dumps(result, indent=2))
    return d


def _provenance(model: ModelLike, x: torch.Tensor, labels: torch.Tensor, *, seed: int | None,
                settings: dict[str, Any], model_kw: ModelKw) -> dict[str, Any]:
    """The provenance block of a command's JSON: the model's and the data's identity, every setting, versions."""
    name = str(model) if isinstance(model, str | Path) else str(getattr(model, "name", type(model).__name__))
    options = {k: model_kw.get(k) for k in ("mean", "std", "output_key", "device", "precision")}
    options["compile"] = model_kw.get("compile_model")
    return provenance(model=name, model_sha256=fingerprint_model(model), data_sha256=sha256_tensors(x, labels),
                      n=len(x), seed=seed, settings=settings, model_options=options)


def _white_box(model: ModelLike, what: str, **model_kw: Any) -> GradModel:
    m = as_model(model, **model_kw)
    if Access(m.access) < Access.GRADIENTS:
        raise InputError(f"{what} must be a local white-box model (PyTorch); it offers "
                         f"{Access(m.access).name.lower()} only")
    return cast(GradModel, m)


def curve(model: ModelLike, data: DataLike, y: torch.Tensor | None = None, *, eps: Sequence[float | str],
          norm: str | Norm = "linf", attacks: str = "fast", seed: int = 0, batch_size: int = 256,
          bounds: Bounds = Bounds(), out: str | Path | None = None, data_options: DataOptions | None = None,
          **model_kw: Any) -> dict[str, Any]:
    """Robust accuracy versus eps in one run (each eps attacks only the examples still robust at the smaller one),
    with exact 95% intervals; with `out`, curve.json and curve.png."""
    from robustaudit.run.curve import plot_curve, robustness_curve

    levels = [parse_number(e) for e in eps]
    threat = ThreatModel(norm=Norm.parse(norm), eps=max(levels, default=1.0), bounds=bounds)
    x, labels = _xy(data, y, "curve", data_options)
    m = as_model(model, **model_kw)
    rows = robustness_curve(m, x, labels, threat, levels, attacks, seed=seed, batch_size=batch_size)
    name = str(getattr(m, "name", "model"))
    result = {"threat": threat.to_json() | {"eps": sorted(set(levels))}, "model": name, "n": len(x), "curve": rows}
    if out is not None:
        plot_curve(rows, _write_json(out, "curve.json", result) / "curve.png",
                   title=f"{Path(name).name}, {threat.norm.value}")
    return result


def certify(model: ModelLike, data: DataLike, y: torch.Tensor | None = None, *, sigma: float, n0: int = 100,
            n: int = 10_000, alpha: float = 0.001, denoiser: str | Path | None = None, skip: int = 1,
            batch_size: int = 400, seed: int = 0, bounds: Bounds = Bounds(), out: str | Path | None = None,
            progress: bool = False, gate: Gate | None = None, gate_radius: float = 0.5,
            **model_kw: Any) -> dict[str, Any]:
    """Randomized smoothing (Cohen et al. 2019) at label access: per example the smoothed prediction (or abstain)
    and its certified L2 radius; with `out`, certify.json, summary.md and report.html. With `gate`, "gate" holds
    its verdict on the certified accuracy at `gate_radius`."""
    from robustaudit.certify.denoise import Composed
    from robustaudit.certify.run import certify_dataset
    from robustaudit.report.certify import write_certify_report

    if skip < 1:
        raise InputError(f"skip must be >= 1, got {skip}")
    x, labels = _xy(data, y, "certify")
    x, labels = x[::skip], labels[::skip]
    target: LabelModel = as_model(model, access=Access.LABELS, **model_kw)
    extra: dict[str, object] = {"model": str(getattr(target, "name", "model"))}
    if denoiser is not None:
        front = as_model(denoiser)
        target = Composed(front.module, target)  # type: ignore[attr-defined]
        extra["denoiser"] = str(denoiser)
        if sidecar(Path(denoiser)).is_file():
            extra.update({k: v for k, v in json.loads(sidecar(Path(denoiser)).read_text()).items()
                          if k in ("training_queries", "estimator", "q", "latent")})
    rec = certify_dataset(target, x, labels, sigma=sigma, n0=n0, n=n, alpha=alpha, batch_size=batch_size, seed=seed,
                          bounds=bounds, progress=progress)
    rec.extra.update(extra)
    r: dict[str, Any] = rec.to_json()
    r["provenance"] = _provenance(model, x, labels, seed=seed, model_kw=model_kw, settings={
        "sigma": sigma, "n0": n0, "n": n, "alpha": alpha, "skip": skip, "batch_size": batch_size,
        "bounds": [bounds.low, bounds.high], "denoiser": None if denoiser is None else str(denoiser)})
    r["caveats"] = caveats(certify={"sigma": sigma, "alpha": alpha, "n": n})
    if gate is not None:
        k = sum(e["correct"] and e["radius"] >= gate_radius for e in r["per_example"])
        r["gate"] = gate.judge(f"certified accuracy at L2 radius {gate_radius:g}", k / r["examples"],
                               clopper_pearson(k, r["examples"]))
    if out is not None:
        write_certify_report(_write_json(out, "certify.json", r), r)
    return r


def robustify(target: ModelLike, data: DataLike, *, sigma: float, out: str | Path, estimator: str = "cge",
              q: int = 192, latent: int = 64, epochs: int = 10, pretrain_epochs: int = 20,
              pretrain_denoiser: bool = True, batch_size: int = 64, seed: int = 0, bounds: Bounds = Bounds(),
              progress: bool = False, **model_kw: Any) -> dict[str, Any]:
    """ZO-AE-DS (Zhang et al. 2022): train a denoiser + autoencoder in front of a model reachable only by queries;
    writes the front end (TorchScript `out`, a .pt file) and its statistics next to it (`out`.json)."""
    from robustaudit.certify.denoise import ZOAEDS

    path = Path(out)
    if path.suffix != ".pt":
        raise InputError(f"out must end in .pt (TorchScript), got {path}")
    source = _source(data, None, DataOptions())
    x, _ = source.read(0, len(source))
    check_inputs(x, torch.zeros(len(x), dtype=torch.long), bounds)
    if min(q, latent, batch_size) < 1 or min(epochs, pretrain_epochs) < 0 or sigma <= 0:
        raise InputError("q, latent and batch_size must be >= 1, epochs >= 0 and sigma > 0")
    settings = ZOAEDS(sigma=sigma, estimator=estimator, q=q, latent=latent, epochs=epochs,
                      pretrain_epochs=pretrain_epochs, pretrain_denoiser=pretrain_denoiser, batch_size=batch_size,
                      seed=seed)
    front, stats = settings.train(as_model(target, **model_kw), x, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.trace(front, x[:2]), str(path))
    result = {"target": str(target) if isinstance(target, str | Path) else type(target).__name__, **stats,
              "queries_per_example_step": settings.queries_per_example_step()}
    sidecar(path).write_text(json.dumps(result, indent=2))
    return result


def sidecar(path: Path) -> Path:
    """The statistics file written next to a front end."""
    return path.with_suffix(path.suffix + ".json")


def transfer(target: ModelLike, surrogates: Sequence[ModelLike] | Mapping[str, ModelLike], data: DataLike,
             y: torch.Tensor | None = None, *, eps: float | str,
             attacks: Sequence[str] = ("mi", "di", "ti", "mi-di-ti"), norm: str | Norm = "linf",
             ensemble: bool = True, bounds: Bounds = Bounds(), seed: int = 0,
             batch_size: int = 128, out: str | Path | None = None, progress: bool = False, gate: Gate | None = None,
             **model_kw: Any) -> dict[str, Any]:
    """Transfer audit: attacks crafted on public white-box surrogates, each sent to `target` once (label access
    suffices); the worst case over every pair; with `out`, transfer.json, summary.md and report.html. With
    `gate`, "gate" holds its verdict on the worst case."""
    from robustaudit.report.transfer import write_transfer_report
    from robustaudit.transfer.audit import transfer_audit

    threat = ThreatModel(norm=Norm.parse(norm), eps=parse_number(eps), bounds=bounds)
    x, labels = _xy(data, y, "the transfer audit")
    named = dict(surrogates) if isinstance(surrogates, Mapping) else _surrogate_names(list(surrogates))
    device = model_kw.get("device")
    models = {k: _white_box(v, f"surrogate {k}", device=device, trust_model_file=model_kw.get("trust_model_file",
                                                                                             False))
              for k, v in named.items()}
    victim = as_model(target, access=Access.LABELS, **model_kw)
    for m in models.values():
        _classes_fit(labels, m, x)
    record = transfer_audit(victim, models, list(attacks), x, labels, threat, ensemble=ensemble, seed=seed,
                            batch_size=batch_size, progress=progress)
    r: dict[str, Any] = {"target": str(getattr(victim, "name", "model")),
                         "surrogate_files": [str(v) for v in named.values()], "attacks": list(attacks), "seed": seed,
                         **record.to_json()}
    r["provenance"] = _provenance(target, x, labels, seed=seed, model_kw=model_kw, settings={
        "threat": threat.to_json(), "attacks": list(attacks), "ensemble": ensemble, "batch_size": batch_size,
        "surrogates": {k: fingerprint_model(v) or "n/a" for k, v in named.items()}})
    if gate is not None:
        r["gate"] = gate.judge("worst-case transfer robust accuracy", r["worst_case_robust_accuracy"],
                               r["worst_case_robust_accuracy_ci95"])
    r["caveats"] = ["a transfer audit measures what public surrogates can do without querying the target's "
                    "gradients or scores: an attacker with more access may do better (an upper bound)"]
    if out is not None:
        write_transfer_report(_write_json(out, "transfer.json", r), r)
    return r


def _surrogate_names(specs: list[ModelLike]) -> dict[str, ModelLike]:
    """Surrogates named by file stem (numbered where two share one)."""
    stems = [Path(s).stem if isinstance(s, str | Path) else type(s).__name__ for s in specs]
    return {f"{i}:{s}" if stems.count(s) > 1 else s: spec for i, (s, spec) in enumerate(zip(stems, specs, strict=True))}


def online(target: ModelLike, surrogate: ModelLike, data: DataLike, y: torch.Tensor | None = None, *, k: int,
           eps: float | str, strategy: str | None = None, permutations: int = 100, attack: str = "fgsm",
           norm: str | Norm = "linf", bounds: Bounds = Bounds(), seed: int = 0, out: str | Path | None = None,
           progress: bool = False, **model_kw: Any) -> dict[str, Any]:
    """Online transfer attack on a stream: each example attacked or skipped at once, at most k in all; each
    strategy's successes against the k best in hindsight (competitive ratio); with `out`, online.json, summary.md
    and report.html."""
    from robustaudit.transfer.audit import online_audit

    threat = ThreatModel(norm=Norm.parse(norm), eps=parse_number(eps), bounds=bounds)
    x, labels = _xy(data, y, "the online attack")
    attacker = _white_box(surrogate, "the surrogate", device=model_kw.get("device"),
                          trust_model_file=model_kw.get("trust_model_file", False))
    _classes_fit(labels, attacker, x)
    record = online_audit(as_model(target, access=Access.LABELS, **model_kw), attacker, x, labels, threat,
                          k=k, attack=attack, strategies=None if strategy is None else [strategy],
                          permutations=permutations, seed=seed, progress=progress)
    r = record.to_json()
    r["provenance"] = _provenance(target, x, labels, seed=seed, model_kw=model_kw, settings={
        "threat": threat.to_json(), "k": k, "attack": attack, "strategy": strategy, "permutations": permutations,
        "surrogate": str(surrogate) if isinstance(surrogate, str | Path) else type(surrogate).__name__})
    r["caveats"] = []
    if out is not None:
        from robustaudit.report.command import online_report

        online_report(r).write(_write_json(out, "online.json", r), r)
    return r


def topk(model: ModelLike, data: DataLike, y: torch.Tensor | None = None, *, k: Sequence[int] = (1, 5, 10, 20),
         attacks: Sequence[str] = ("quad", "cwk", "ad"), targets: str | Path | torch.Tensor | None = None,
         search_steps: int = 1, steps: int = 60, lr: float = 0.01, layer: str | None = None, seed: int = 0,
         batch_size: int = 64, bounds: Bounds = Bounds(), out: str | Path | None = None, progress: bool = False,
         **model_kw: Any) -> dict[str, Any]:
    """Ordered top-K attacks (QuadAttack, CW^K, AD) on a white-box PyTorch model: force its K highest classes
    into a chosen order; success rate, perturbation norms and cost per attack and K; with `out`, topk.json,
    summary.md and report.html."""
    from robustaudit.attacks.topk import TOPK_ATTACKS
    from robustaudit.models.torch import TorchModel
    from robustaudit.run.topk import load_targets, topk_audit

    unknown = [a for a in attacks if a not in TOPK_ATTACKS]
    if unknown:
        raise InputError(f"unknown top-K attack {unknown[0]!r}: use {', '.join(TOPK_ATTACKS)}")
    chosen = [TOPK_ATTACKS[a](search_steps=search_steps, steps=steps, lr=lr) for a in attacks]
    x, labels = _xy(data, y, "topk")
    m = as_model(model, **model_kw)
    if not isinstance(m, TorchModel):
        raise InputError("top-K attacks need a white-box PyTorch model (they split it at its last linear layer)")
    _classes_fit(labels, m, x)
    lists = load_targets(targets, len(x)) if isinstance(targets, str | Path) else targets
    r = topk_audit(m.module, x.to(m.device), labels.to(m.device), list(k), chosen, targets=lists, layer=layer,
                   seed=seed, batch_size=batch_size, bounds=bounds, progress=progress)
    result = {"model": m.name, "data": str(data) if isinstance(data, str | Path) else "arrays", **r}
    result["provenance"] = _provenance(model, x, labels, seed=seed, model_kw=model_kw, settings={
        "k": list(k), "attacks": list(attacks), "search_steps": search_steps, "steps": steps, "lr": lr,
        "layer": r["layer"], "targets": "random (seeded)" if targets is None else "given",
        "batch_size": batch_size, "bounds": [bounds.low, bounds.high]})
    result["caveats"] = []
    if out is not None:
        from robustaudit.report.command import topk_report

        topk_report(result).write(_write_json(out, "topk.json", result), result)
    return result


CHECK_KEYS: dict[str, tuple[str, ...]] = {
    "model": ("source", "mean", "std", "output_key", "access", "device", "trust_model_file", "precision", "compile"),
    "data": ("path",),
    "threat": ("norm", "eps", "bounds"),
    "audit": ("attacks", "budget", "seed", "batch_size", "out", "adaptive", "eot", "shard_size"),
    "gate": ("fail_under", "rule", "allow_flags"),
    "track": ("jsonl", "mlflow"),
}


def read_check(path: str | Path) -> dict[str, dict[str, Any]]:
    """The audit a CI job runs, from `robustaudit.toml` (or the `[tool.robustaudit]` table of `pyproject.toml`):
    tables model, data, threat, audit, gate and track with the keys of CHECK_KEYS; relative paths are relative
    to the file's folder."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist: give robustaudit.toml or a pyproject.toml with [tool.robustaudit]")
    try:
        doc = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{p} is not valid TOML ({e})") from None
    if p.name == "pyproject.toml":
        doc = doc.get("tool", {}).get("robustaudit")
        if not isinstance(doc, dict):
            raise InputError(f"{p} has no [tool.robustaudit] table")
    for table, keys in doc.items():
        if table not in CHECK_KEYS or not isinstance(keys, dict):
            raise InputError(f"{p}: unknown table [{table}]; use {', '.join(CHECK_KEYS)}")
        unknown = set(keys) - set(CHECK_KEYS[table])
        if unknown:
            raise InputError(f"{p}: unknown key(s) {sorted(unknown)} in [{table}]; use {', '.join(CHECK_KEYS[table])}")
    for table, key in (("model", "source"), ("data", "path"), ("threat", "eps")):
        if key not in doc.get(table, {}):
            raise InputError(f"{p}: [{table}] needs {key!r}")
    base = p.resolve().parent

    def local(value: str) -> str:
        return value if "://" in value or Path(value).is_absolute() else str(base / value)

    doc["model"]["source"] = local(str(doc["model"]["source"]))
    doc["data"]["path"] = local(str(doc["data"]["path"]))
    for table, key in (("audit", "out"), ("track", "jsonl")):
        if key in doc.get(table, {}):
            doc[table][key] = local(str(doc[table][key]))
    return doc


def check(path: str | Path, *, progress: bool = False) -> tuple[EvalRecord, Path]:
    """Run the audit `read_check(path)` describes, gate included (`record.gate`); its files go to [audit] out
    (default: robustaudit-report next to the file), one line to [track] jsonl and the run to MLflow ([track] mlflow =
    true) when set. Returns the record and the folder written."""
    from robustaudit.api import audit
    from robustaudit.gate import Gate
    from robustaudit.tracking import Tracking

    doc = read_check(path)
    model, threat, run, gate_opts = doc["model"], doc["threat"], doc.get("audit", {}), doc.get("gate", {})
    gate = None if "fail_under" not in gate_opts else Gate(float(gate_opts["fail_under"]), str(gate_opts.get(
        "rule", "lower")), tuple(gate_opts.get("allow_flags", ())))
    out = run.get("out", str(Path(path).resolve().parent / "robustaudit-report"))
    tracks = doc.get("track", {})
    track = Tracking(jsonl=None if "jsonl" not in tracks else Path(tracks["jsonl"]),
                     mlflow=bool(tracks.get("mlflow", False)))
    bounds = threat.get("bounds", [0.0, 1.0])
    record = audit(model["source"], doc["data"]["path"], eps=threat["eps"], norm=threat.get("norm", "linf"),
                   bounds=Bounds(float(bounds[0]), float(bounds[1])), attacks=run.get("attacks"),
                   budget=run.get("budget"), seed=run.get("seed", 0), batch_size=run.get("batch_size", 256),
                   adaptive=run.get("adaptive", True), eot=run.get("eot", 20), shard_size=run.get("shard_size", 512),
                   access=model.get("access"), mean=model.get("mean"), std=model.get("std"),
                   output_key=model.get("output_key"), device=model.get("device"),
                   trust_model_file=bool(model.get("trust_model_file", False)),
                   precision=str(model.get("precision", "fp32")), compile_model=bool(model.get("compile", False)),
                   out=out, gate=gate, progress=progress)
    track.log("check", Path(out), {"config": str(path),
                                   **{k: v for k, v in record.to_json().items() if k != "examples"}})
    return record, Path(out)


def _member_pool(members: DataLike | None, nonmembers: DataLike | None, pool: str | Path | None,
                 data_options: DataOptions | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, member) from --members/--nonmembers, or from one .npz with x, y and a `member` flag per row."""
    if pool is not None:
        if members is not None or nonmembers is not None:
            raise InputError("give either --pool or --members with --nonmembers, not both")
        try:
            d = np.load(pool)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read the pool {pool}: {e}") from None
        missing = [k for k in ("x", "y", "member") if k not in d.files]
        if missing:
            raise InputError(f"the pool {pool} lacks {', '.join(missing)} (it needs x, y and member)")
        x, labels = _xy(d["x"], torch.from_numpy(np.asarray(d["y"])), "membership")
        flags = np.asarray(d["member"])
        if flags.shape != (len(x),) or not np.isin(flags, (0, 1)).all():
            raise InputError(f"`member` in {pool} must hold one 0/1 (or boolean) flag per example")
        return x, labels, torch.from_numpy(flags.astype(bool))
    if members is None or nonmembers is None:
        raise InputError("membership needs --members and --nonmembers (or one --pool with a `member` column)")
    xm, ym = _xy(members, None, "membership (members)", data_options)
    xn, yn = _xy(nonmembers, None, "membership (non-members)", data_options)
    if xm.shape[1:] != xn.shape[1:]:
        raise InputError(f"members and non-members differ in shape: {tuple(xm.shape[1:])} vs {tuple(xn.shape[1:])}")
    x, labels = torch.cat([xm, xn]), torch.cat([ym, yn])
    return x, labels, torch.cat([torch.ones(len(xm), dtype=torch.bool), torch.zeros(len(xn), dtype=torch.bool)])


def membership(model: ModelLike, members: DataLike | None = None, nonmembers: DataLike | None = None, *,
               pool: str | Path | None = None, attacks: Sequence[str] | None = None,
               shadow: str | Callable[..., torch.nn.Module] | None = None, population: DataLike | None = None,
               shadows: int = 16, fix_variance: bool | None = None, budget: int = 1000, shift: int = 1,
               bounds: Bounds = Bounds(), seed: int = 0,
               batch_size: int = 256, data_options: DataOptions | None = None, out: str | Path | None = None,
               progress: bool = False, **model_kw: Any) -> dict[str, Any]:
    """Membership inference (privacy): how well each attack tells the model's training members from non-members
    at the access the model offers; with `out`, membership.json (per attack, keyed by its name: auc, accuracy,
    TPR at low FPR, queries per example), summary.md and report.html. Default attacks: all the access allows
    (LiRA only with a `shadow` training recipe)."""
    from robustaudit.models.load import import_attribute
    from robustaudit.privacy.membership import ATTACKS, Pool, membership_audit

    x, labels, member = _member_pool(members, nonmembers, pool, data_options)
    check_inputs(x, labels, bounds)
    m = as_model(model, **model_kw)
    level = Access(m.access)
    if attacks is None:
        attacks = [a for a, need in ATTACKS.items() if level >= need and (a != "lira" or shadow is not None)]
    recipe = import_attribute(shadow) if isinstance(shadow, str) else shadow
    if recipe is not None and not callable(recipe):
        raise InputError(f"--shadow {shadow} is not a function")
    pop = None if population is None else _xy(population, None, "the population", data_options)
    with torch.no_grad():
        z = m.predict_scores(x[:1].to(m.device)) if level >= Access.SCORES else None  # type: ignore[attr-defined]
    if z is not None:
        check_labels(labels, int(z.shape[1]))
    rec = membership_audit(m, Pool(x, labels, member), list(attacks), shadow=recipe, population=pop,
                           n_shadows=shadows, fix_variance=fix_variance, budget=budget, shift=shift, bounds=bounds,
                           seed=seed, batch_size=batch_size, progress=progress)
    per_attack = rec.results(seed)
    n_pool = int(len(rec.member))
    result: dict[str, Any] = {
        **per_attack, "attacks": per_attack, "model": getattr(m, "name", None) or str(model),
        "access": level.name.lower(), "n_members": int(rec.member.sum()), "n_nonmembers": n_pool - int(
            rec.member.sum()), "train_accuracy": rec.train_accuracy, "test_accuracy": rec.test_accuracy,
        "warnings": rec.warnings}
    result["provenance"] = _provenance(model, x, labels, seed=seed, model_kw=model_kw, settings={
        "attacks": list(attacks), "shadow": None if shadow is None else str(shadow), "shadows": shadows,
        "fix_variance": fix_variance,
        "population": None if pop is None else len(pop[0]), "budget": budget, "shift": shift,
        "bounds": [bounds.low, bounds.high], "batch_size": batch_size})
    result["caveats"] = list(rec.warnings)
    if result["n_nonmembers"] < 1000:
        result["caveats"].append(f"with {result['n_nonmembers']} non-members the smallest false positive rate above 0 "
                                 f"is 1/{result['n_nonmembers']}: TPR at 0.1% FPR is TPR at 0% FPR here")
    if out is not None:
        from robustaudit.report.command import membership_report

        membership_report(result).write(_write_json(out, "membership.json", result), result)
    return result


def distribution(data: DataLike, *, prop: str, ratios: Sequence[float], train: str | Callable[..., torch.nn.Module],
                 attacks: Sequence[str] | None = None, size: int = 200, victims: int = 20, shadows: int = 50,
                 test_size: int = 500, meta_epochs: int = 200, seed: int = 0,
                 data_options: DataOptions | None = None, out: str | Path | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Distribution inference (privacy): play the game alpha_0 vs alpha_1 with the training recipe `train` on the
    labelled `data`; per attack (loss, threshold, meta) accuracy with an exact interval and n_leaked; with `out`,
    distribution.json (keyed by attack name), summary.md and report.html."""
    from robustaudit.models.load import import_attribute
    from robustaudit.privacy.distribution import ATTACKS, Property, distribution_audit

    if len(ratios) != 2:
        raise InputError(f"--ratios takes two shares, alpha_0,alpha_1, got {list(ratios)}")
    x, labels = _xy(data, None, "distribution inference", data_options)
    check_inputs(x, labels, Bounds(-3e38, 3e38))  # any range: the records only train models, nothing perturbs them
    recipe = import_attribute(train) if isinstance(train, str) else train
    if not callable(recipe):
        raise InputError(f"--train {train} is not a function")
    chosen = list(attacks or ATTACKS)
    rec = distribution_audit(x, labels, Property.parse(prop), recipe, (float(ratios[0]), float(ratios[1])),
                             size=size, victims=victims, shadows=shadows, attacks=chosen, test_size=test_size,
                             meta_epochs=meta_epochs, seed=seed, progress=progress)
    caveats = []
    for name, r in rec.results.items():  # JSON has no infinity: an unbounded n_leaked is null, and said so
        if r["n_leaked"] == math.inf:
            caveats.append(f"{name}: accuracy {r['accuracy']:.3f} means an unbounded n_leaked (null in the JSON); the "
                           f"interval's lower end gives at least {r['n_leaked_ci95'][0]:.2f}")  # type: ignore[index]
        r["n_leaked"] = None if r["n_leaked"] == math.inf else r["n_leaked"]
        r["n_leaked_ci95"] = [None if v == math.inf else v for v in r["n_leaked_ci95"]]  # type: ignore[attr-defined]
    result: dict[str, Any] = {**rec.results, "attacks": rec.results, "ratios": list(rec.alphas), "property": prop,
                              "size": size, "victims_per_ratio": victims, "shadows_per_ratio": shadows,
                              "games": rec.games, "queries_per_model": rec.queries_per_model,
                              "seconds_training": rec.seconds_training}
    result["provenance"] = _provenance(str(train), x, labels, seed=seed, model_kw={}, settings={
        "property": prop, "ratios": list(rec.alphas), "attacks": chosen, "size": size, "victims": victims,
        "shadows": shadows, "test_size": test_size, "meta_epochs": meta_epochs})
    result["caveats"] = caveats
    if out is not None:
        from robustaudit.report.command import distribution_report

        distribution_report(result).write(_write_json(out, "distribution.json", result), result)
    return result


def inversion(model: ModelLike, public: DataLike, *, classes: int, invert: Sequence[int] | None = None,
              evaluator: ModelLike | None = None, private_eval: DataLike | None = None, budget: int | None = None,
              settings: Any = None, bounds: Bounds = Bounds(), seed: int = 0,
              data_options: DataOptions | None = None, out: str | Path = "inversion", progress: bool = False,
              **model_kw: Any) -> dict[str, Any]:
    """Model inversion (privacy): reconstruct representative inputs of each class of a model over `classes`
    classes from its top-1 labels (LOKT), its scores, or its gradients, with an unlabelled `public` set; the stages
    checkpoint into `out` (a rerun with the same settings resumes). With an `evaluator` (a model that is neither the
    target nor a surrogate), its top-1/top-5 accuracy on the reconstructions over seeds; with `private_eval`
    (labelled private examples, for evaluation only), the distance to the nearest one. Writes inversion.json,
    reconstructions.npz, grid.png, summary.md and report.html."""
    from robustaudit.models.torch import accuracy
    from robustaudit.privacy.inversion import (
        InversionSettings,
        evaluate_reconstructions,
        inversion_attack,
        knn_distance,
    )

    s = settings or InversionSettings()
    if not isinstance(s, InversionSettings):
        raise InputError("settings must be an InversionSettings")
    if classes < 2:
        raise InputError(f"--num-classes is the target's number of classes (at least 2), got {classes}")
    chosen = list(range(classes)) if invert is None else sorted(set(int(c) for c in invert))
    if not chosen or any(not 0 <= c < classes for c in chosen):
        raise InputError(f"--invert takes classes in 0..{classes - 1}, got {list(invert or [])}")
    if isinstance(public, str | Path) and str(public).endswith(".npz"):
        from robustaudit.run.data import load_npz_inputs

        xpub = load_npz_inputs(public)
    else:
        source = _source(public, None, data_options or DataOptions())
        xpub = source.read(0, len(source))[0]
    if len(xpub) == 0:
        raise InputError("the public set holds no examples")
    check_inputs(xpub, torch.zeros(len(xpub), dtype=torch.long), bounds)
    m = as_model(model, **model_kw)
    level = Access(m.access)
    if level >= Access.SCORES:
        with torch.no_grad():
            k = int(m.predict_scores(xpub[:1].to(getattr(m, "device", "cpu"))).shape[1])  # type: ignore[attr-defined]
        if k != classes:
            raise InputError(f"--num-classes {classes}, but the model returns {k} scores")
    device = getattr(m, "device", torch.device("cpu"))
    rec = inversion_attack(m, xpub.to(device), classes, chosen, bounds, s, budget=budget, folder=Path(out),
                           seed=seed, progress=progress)
    images, labels = rec.images.cpu(), rec.labels
    result: dict[str, Any] = {
        "model": getattr(m, "name", None) or str(model), "access": level.name.lower(),
        "method": "white-box latent optimisation" if level >= Access.GRADIENTS else
        f"LOKT ({'soft labels: scores' if level >= Access.SCORES else 'top-1 labels'})",
        "classes": classes, "inverted": chosen, "seeds": s.seeds, "samples_per_class": s.samples,
        "public_size": len(xpub), "target_queries": rec.queries, "target_queries_total": rec.queries_total,
        "budget": budget, "stage_queries": rec.stage_queries, "stage_seconds": rec.stage_seconds,
        "surrogate_agreement": rec.agreement, "predicted_on_generated": rec.predicted,
        "uninvertible_classes": [c for c in chosen if rec.predicted[c] == 0] if level < Access.GRADIENTS else [],
        "budget_stopped_transfer_at": rec.stopped_querying_at, "attack_accuracy": None,
        "random_samples_accuracy": None, "knn_distance": None, "knn_distance_random": None,
        "surrogate_private_accuracy": None}
    caveats_: list[str] = []
    if result["uninvertible_classes"]:
        caveats_.append(f"the target never predicted class(es) {result['uninvertible_classes']} on generated images: "
                        "their knowledge could not be transferred, so their reconstructions are not inversions")
    if rec.stopped_querying_at is not None:
        caveats_.append(f"the budget stopped the knowledge transfer at stage-1 iteration {rec.stopped_querying_at} "
                        f"of {s.iterations}")
    if rec.queries_total > rec.queries:
        caveats_.append(f"{rec.queries_total - rec.queries} target queries were made again after a resume (the budget "
                        "counts them)")
    if evaluator is not None:
        e = as_model(evaluator, access=Access.SCORES, device=model_kw.get("device"),
                     trust_model_file=model_kw.get("trust_model_file", False))

        def scores(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return e.predict_scores(x.to(getattr(e, "device", "cpu")))  # type: ignore[attr-defined]

        result["attack_accuracy"] = evaluate_reconstructions(images, labels, scores)
        result["random_samples_accuracy"] = evaluate_reconstructions(rec.random_images[None].cpu(), labels, scores)
        per_class = scores(images.flatten(0, 1)).argmax(1).cpu() == labels.repeat(len(images))
        result["attack_accuracy"]["top1_per_class"] = {
            str(c): float(per_class[labels.repeat(len(images)) == c].float().mean()) for c in chosen}
    else:
        caveats_.append("no --evaluator: attack accuracy needs an independent model (neither the target nor a "
                        "surrogate); the target's own accuracy on its reconstructions means nothing")
    if private_eval is not None:
        xp, yp = _xy(private_eval, None, "--private-eval", data_options)
        feats, space = _features(evaluator, model_kw)
        result["knn_distance"] = knn_distance(images.flatten(0, 1), labels.repeat(len(images)), xp, yp, feats)
        result["knn_distance_random"] = knn_distance(rec.random_images.cpu(), labels, xp, yp, feats)
        result["knn_space"] = space
        mine = yp < classes  # the spec's check of the transfer: the surrogates on the private data, no target query
        result["surrogate_private_accuracy"] = {name: accuracy(net, xp[mine], yp[mine])
                                                for name, net in rec.surrogates.items()} if bool(mine.any()) else {}
    result["provenance"] = _provenance(model, xpub, torch.zeros(len(xpub), dtype=torch.long), seed=seed,
                                       model_kw=model_kw, settings={**dataclasses.asdict(s), "classes": classes,
                                                                    "invert": chosen, "budget": budget,
                                                                    "evaluator": None if evaluator is None else
                                                                    str(getattr(evaluator, "name", evaluator))})
    result["caveats"] = caveats_
    folder = _write_json(out, "inversion.json", result)
    np.savez(folder / "reconstructions.npz", x=images.numpy(), y=labels.numpy(), random=rec.random_images.cpu().numpy())
    from robustaudit.report.command import inversion_report

    inversion_report(result, images, labels, folder).write(folder, result)
    return result


def _features(evaluator: ModelLike | None, model_kw: ModelKw) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The evaluator's penultimate features (the input of its last `nn.Linear`) when it is a local torch model with
    one; else its scores (an exported graph, ONNX, a remote model); the inputs themselves without an evaluator."""
    from robustaudit.models.torch import TorchModel

    if evaluator is None:
        return (lambda x: x.flatten(1)), "input"
    e = as_model(evaluator, access=Access.SCORES, device=model_kw.get("device"),
                 trust_model_file=model_kw.get("trust_model_file", False))
    last = None if not isinstance(e, TorchModel) else \
        next((m for m in reversed(list(e.module.modules())) if isinstance(m, torch.nn.Linear)), None)

    def scores(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return e.predict_scores(x.to(getattr(e, "device", "cpu"))).cpu()  # type: ignore[attr-defined]

    if last is None:
        return scores, "evaluator scores"
    model, linear = cast(TorchModel, e), last

    def features(x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        handle = linear.register_forward_hook(lambda _m, args, _o: seen.append(args[0].detach()))
        try:
            with torch.no_grad():
                model.logits(x.to(model.device))
        finally:
            handle.remove()
        return seen[-1].flatten(1).cpu()

    return features, "evaluator features (input of its last linear layer)"


def safety(model: ModelLike, data: DataLike, y: torch.Tensor | None = None, *, lipschitz: float | str = "estimate",
           norm: str | Norm = "l0", eps: float | str = 1, bounds: Bounds = Bounds(), batch_size: int = 256,
           results: str | Path | None = None, out: str | Path | None = None, data_options: DataOptions | None = None,
           **model_kw: Any) -> dict[str, Any]:
    """The Lipschitz safety guarantee (Wicker, Huang & Kwiatkowska 2018) at score access: per example the margin,
    the certified L2 radius margin / (√2·L) and the safe region in `norm` (pixels at l0); certified accuracy at
    `eps`. `lipschitz`: the L2 Lipschitz constant of the scores the model returns, or "estimate" (a local PyTorch
    model: the product of its layers' spectral norms, marked as an estimate). `results`: an `evaluate` run on the
    same data, shown beside: a certified example an attack broke means the constant is wrong. One counted score
    query per example; with `out`, safety.json, summary.md and report.html."""
    from robustaudit.certify.lipschitz import certify_margin, estimate_lipschitz
    from robustaudit.models.torch import TorchModel
    from robustaudit.oracle import Oracle
    from robustaudit.report.command import safety_report

    threat = ThreatModel(norm=Norm.parse(norm), eps=parse_number(eps), bounds=bounds)
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    x, labels = _xy(data, y, "safety", data_options)
    check_inputs(x, labels, bounds)
    m = as_model(model, **model_kw)
    if Access(m.access) < Access.SCORES:
        raise InputError("the safety bound needs the model's scores (its margin); this model offers labels only")
    if isinstance(lipschitz, str) and lipschitz.strip().lower() == "estimate":
        if not isinstance(m, TorchModel):
            raise InputError("--lipschitz estimate needs a local PyTorch model; for a remote or ONNX model give the "
                             "constant: --lipschitz L")
        constant, source = estimate_lipschitz(m.module, x[:1])
    else:
        try:
            constant, source = float(lipschitz), "given"
        except ValueError:
            raise InputError(f"--lipschitz must be a positive number or 'estimate', got {lipschitz!r}") from None
    oracle = Oracle(m, len(x))
    scores = torch.cat([oracle.scores(xb, idx) for xb, idx in zip(x.split(batch_size),
                                                                  torch.arange(len(x)).split(batch_size),
                                                                  strict=True)]).cpu()
    if not bool(torch.isfinite(scores).all()):
        raise InputError("the model returned NaN or infinite scores")
    check_labels(labels, int(scores.shape[1]))
    cert = certify_margin(scores, x, labels, constant, threat.norm, threat.eps, bounds)
    pred = scores.argmax(1)
    n, k = len(x), int(cert.certified.sum())
    per = [{"index": i, "label": int(labels[i]), "prediction": int(pred[i]), "margin": float(cert.margin[i]),
            "radius_l2": float(cert.radius_l2[i]), "safe": float(cert.safe[i]), "certified": bool(cert.certified[i])}
           for i in range(n)]
    r: dict[str, Any] = {
        "model": str(getattr(m, "name", "model")), "n": n, "threat": threat.to_json(), "lipschitz": constant,
        "lipschitz_source": source, "clean_accuracy": float((pred == labels).float().mean()),
        "certified_accuracy": k / n, "certified_accuracy_ci95": list(clopper_pearson(k, n)),
        "safe_unit": "pixels" if threat.norm == Norm.L0 else f"{threat.norm.value} radius",
        "median_safe": float(cert.safe[pred == labels].median()) if bool((pred == labels).any()) else 0.0,
        "queries_total": int(oracle.queries.sum()), "per_example": per}
    if results is not None:
        r["beside"] = _beside(Path(results), per, threat)
    r["provenance"] = _provenance(model, x, labels, seed=None, model_kw=model_kw, settings={
        "lipschitz": constant, "lipschitz_source": source, "norm": threat.norm.value, "eps": threat.eps,
        "bounds": [bounds.low, bounds.high], "results": None if results is None else str(results)})
    r["caveats"] = [] if source == "given" else [
        f"the Lipschitz constant is an {source}: valid for a feed-forward chain only (a residual connection in an "
        "eager module's forward is not seen), and power iteration approaches each norm from below"]
    if out is not None:
        safety_report(r).write(_write_json(out, "safety.json", r), r)
    return r


def _beside(folder: Path, per: list[dict[str, Any]], threat: ThreatModel) -> dict[str, Any]:
    """The attacks' results of an evaluate run beside the certificates: both are bounds on the true robust
    accuracy (certified below, attacked above); a certified example that an attack broke contradicts the constant."""
    path = folder / "results.json" if folder.is_dir() else folder
    if not path.is_file():
        raise InputError(f"--results: no results.json at {folder}")
    res = json.loads(path.read_text())
    examples = {int(e["index"]): e for e in res.get("examples", [])}
    if len(examples) != len(per):
        raise InputError(f"--results holds {len(examples)} examples, the data {len(per)}: give the run on the same "
                         "data")
    if res.get("threat", {}).get("norm") != threat.norm.value or float(res["threat"]["eps"]) != threat.eps:
        raise InputError(f"--results was run at {res.get('threat', {}).get('norm')} eps "
                         f"{res.get('threat', {}).get('eps')}; the certificate is at {threat.norm.value} eps "
                         f"{threat.eps:g}")
    for p in per:
        e = examples[p["index"]]
        p["attack_robust"] = bool(e["robust"])
        p["broken_by"] = e.get("broken_by")
        if e.get("min_distance") is not None:
            p["smallest_adversarial"] = e["min_distance"]
    contradictions = [p["index"] for p in per if p["certified"] and not p["attack_robust"]]
    return {"robust_accuracy": res["robust_accuracy"], "robust_accuracy_ci95": res["robust_accuracy_ci95"],
            "certified_and_attack_robust": sum(p["certified"] and p["attack_robust"] for p in per),
            "attack_robust_not_certified": sum(p["attack_robust"] and not p["certified"] for p in per),
            "broken_but_certified": contradictions, "attacks": [a["name"] for a in res.get("attacks", [])]}


def explain(model: ModelLike, data: DataLike, y: torch.Tensor | None = None, *, methods: str,
            target: str | int = "prediction", seed: int = 0, seeds: int = 3, neighbourhood: str = "gaussian:0.1",
            features: str = "pixels", n_samples: int = 1000, sigma: float = 0.1, baseline: float = 0.0,
            n_eval: int = 200, k: int | None = None, budget: int | None = None, access: str | None = None,
            global_top: int = 15, surrogate: str = "tree", bounds: Bounds = Bounds(), out: str | Path | None = None,
            progress: bool = False, data_options: DataOptions | None = None, **model_kw: Any) -> dict[str, Any]:
    """Explain what the model relies on (Han, Srinivas & Lakkaraju 2022): attributions by each of `methods`
    (gradient methods need a local PyTorch model; query-based ones work at score access, remote included, every
    forward counted and capped by `budget`), their faithfulness on `neighbourhood` with the recommended method, and
    for tables the global probing + surrogate. With `out`: attributions.npz, explanations.json, summary.md,
    report.html."""
    from robustaudit.explain.explainers import Settings
    from robustaudit.explain.run import explain_all, write_explanations

    source = _source(data, y, data_options or DataOptions())
    if len(source) == 0:
        raise InputError("the data holds no examples")
    x, labels = source.read(0, len(source))
    check_inputs(x, torch.zeros(len(x), dtype=torch.long) if labels is None else labels, bounds)
    from robustaudit.api import _access

    m = as_model(model, access=_access(access), **model_kw)
    settings = Settings(n_samples=n_samples, sigma=sigma, baseline=baseline, features=features)
    doc, maps = explain_all(m, x, labels, methods=methods, target=target, seed=seed, seeds=seeds,
                            neighbourhood=neighbourhood, settings=settings, n_eval=n_eval, k=k, budget=budget,
                            global_top=global_top, surrogate=surrogate, progress=progress)
    doc["model"] = str(getattr(m, "name", "model"))
    doc["provenance"] = _provenance(model, x, torch.zeros(len(x), dtype=torch.long) if labels is None else labels,
                                    seed=seed, model_kw=model_kw, settings={
                                        "methods": doc["methods"], "target": str(target), "seeds": seeds,
                                        "neighbourhood": neighbourhood, "features": features, "n_samples": n_samples,
                                        "sigma": sigma, "baseline": baseline, "n_eval": n_eval, "budget": budget,
                                        "access": access})
    doc["caveats"] = []
    if out is not None:
        write_explanations(out, doc, maps, x)
    return doc


def harden(method: str, data: DataLike, y: torch.Tensor | None = None, *, out: str | Path,
           recipe: str | Callable[..., torch.nn.Module] | None = None,
           test: DataLike | tuple[torch.Tensor, torch.Tensor] | None = None,
           eps: float | str, norm: str | Norm = "linf", bounds: Bounds = Bounds(), epochs: int = 10,
           lr: float = 1e-3, optimizer: str = "adam", batch_size: int = 64, steps: int = 7, beta: float = 6.0,
           sources: Sequence[ModelLike] = (), attackers: Sequence[ModelLike] = (), pick: int = 4, copies: int = 1,
           baseline: ModelLike | None = None, audit: str = "fast", audit_n: int | None = None,
           transfer_attacks: Sequence[str] = ("ifgsm", "mi", "di"), patterns: int = 8, warm: int = 64,
           reg: float = 1e-3, solver: str = "clarabel", rounds: int = 0, seed: int = 0, progress: bool = False,
           data_options: DataOptions | None = None, **model_kw: Any) -> dict[str, Any]:
    """Harden a model and audit the result against the unhardened one with our own commands (threat model per
    method): `pgd-at` / `trades` (white box; audited by `audit` = evaluate with the `audit` preset), `pubdef`
    (transfer from the public `sources`; audited by `transfer` from `attackers`, default the sources themselves),
    `convex` (two-layer ReLU network for tables, robust at eps; audited by evaluate). Training is checkpointed per
    epoch in `out` and resumes there. Writes model.pt2 (torch.export), unhardened.pt2 (unless `baseline`),
    <stage>.log.jsonl, audit/{unhardened,hardened}/, harden.json, summary.md, report.html."""
    from robustaudit.api import audit as evaluate
    from robustaudit.attacks.registry import resolve
    from robustaudit.attacks.transfer.iterative import TransferAttack
    from robustaudit.defend.run import (
        METHODS,
        Training,
        build,
        check_fits,
        check_pubdef,
        pubdef,
        standard,
        white_box_defence,
    )
    from robustaudit.models.load import save_program
    from robustaudit.report.command import harden_report

    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    threat = ThreatModel(norm=Norm.parse(norm), eps=parse_number(eps), bounds=bounds)
    if threat.norm is Norm.L0:
        raise InputError("harden trains against linf or l2 perturbations")
    if method == "pubdef":  # settings checked before anything trains
        check_pubdef(len(sources), pick, copies)
        for name in transfer_attacks:
            TransferAttack.parse(name)
    else:
        resolve(audit, threat.norm)
    x, labels = _xy(data, y, "harden", data_options)
    check_inputs(x, labels, bounds)
    if test is None:
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(x), generator=gen)
        cut = max(1, len(x) // 5)
        if len(x) < 10:
            raise InputError(f"harden needs at least 10 examples to hold out a test split, got {len(x)}; or give "
                             "--test")
        (xte, yte), (x, labels) = (x[order[:cut]], labels[order[:cut]]), (x[order[cut:]], labels[order[cut:]])
    else:
        xte, yte = test if isinstance(test, tuple) else _xy(test, None, "the test set", data_options)
        check_inputs(xte, yte, bounds)
    if audit_n is not None:
        xte, yte = xte[:audit_n], yte[:audit_n]
    classes = int(max(labels.max(), yte.max())) + 1
    if classes < 2:
        raise InputError("harden needs at least two classes in the labels")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    device = model_kw.get("device") or "cpu"
    t = Training(epochs=epochs, lr=lr, optimizer=optimizer, batch_size=batch_size, steps=steps, beta=beta, seed=seed)
    doc: dict[str, Any] = {"method": method, "threat": threat.to_json(), "n_train": len(x), "n_test": len(xte),
                           "classes": classes, "training": t.to_json() if method != "convex" else None}
    if method == "convex":
        hardened, unhardened, extra = _convex(x, labels, classes, threat, patterns=patterns, warm=warm, reg=reg,
                                              solver=solver, rounds=rounds, seed=seed, baseline=baseline is None,
                                              progress=progress, folder=folder)
        doc["convex"] = extra
    else:
        if recipe is None:
            raise InputError(f"--method {method} needs --recipe FILE.py:FUNCTION returning the model to train")
        torch.manual_seed(seed)
        hardened = build(recipe, classes, x.shape[1:]).to(device)
        check_fits(hardened, x[:2].to(device), classes)
        models = {k: _white_box(v, f"source {k}", device=device,
                                trust_model_file=model_kw.get("trust_model_file", False))
                  for k, v in _surrogate_names(list(sources)).items()}  # loaded before anything trains
        unhardened = None
        if baseline is None:
            torch.manual_seed(seed)
            unhardened = build(recipe, classes, x.shape[1:]).to(device)
            doc["unhardened_log"] = standard(unhardened, x, labels, folder, t, progress)
        if method == "pubdef":
            doc["log"], doc["pubdef"] = pubdef(hardened, x, labels, threat, models, folder, t, pick=pick,
                                               copies=copies, progress=progress)
        else:
            doc["log"] = white_box_defence(method, hardened, x, labels, threat, folder, t, progress)
    save_program(hardened.cpu(), folder / "model.pt2", xte[:2].cpu())
    if unhardened is not None:
        save_program(unhardened.cpu(), folder / "unhardened.pt2", xte[:2].cpu())
    before: ModelLike = folder / "unhardened.pt2" if baseline is None else baseline
    doc["audit"] = {}
    for tag, model in (("unhardened", before), ("hardened", folder / "model.pt2")):
        kw = dict(model_kw) if tag == "unhardened" and baseline is not None else {"device": model_kw.get("device")}
        where = folder / "audit" / tag
        if method == "pubdef":
            attackers_ = list(attackers) or list(sources)
            r = transfer(model, attackers_, xte, yte, eps=threat.eps, attacks=list(transfer_attacks),
                         norm=threat.norm, bounds=bounds, seed=seed, out=where, progress=progress, **kw)
            doc["audit"][tag] = {"command": "transfer", "folder": str(where), "clean_accuracy": r["clean_accuracy"],
                                 "robust_accuracy": r["worst_case_robust_accuracy"],
                                 "robust_accuracy_ci95": r["worst_case_robust_accuracy_ci95"],
                                 "pairs": [{k: p[k] for k in ("source", "attack", "robust_accuracy")}
                                           for p in r["pairs"]]}
        else:
            rec = evaluate(model, xte, yte, eps=threat.eps, norm=threat.norm, attacks=audit, bounds=bounds,
                           seed=seed, out=where, resume=(where / "store.sqlite").is_file(), progress=progress,
                           **kw)
            doc["audit"][tag] = {"command": "evaluate", "folder": str(where), "clean_accuracy": rec.clean_accuracy,
                                 "robust_accuracy": rec.robust_accuracy,
                                 "robust_accuracy_ci95": list(rec.robust_accuracy_ci95), "flags": rec.flag_codes}
    a, b = doc["audit"]["unhardened"], doc["audit"]["hardened"]
    doc["robust_gain"] = b["robust_accuracy"] - a["robust_accuracy"]
    doc["clean_drop"] = a["clean_accuracy"] - b["clean_accuracy"]
    doc["files"] = {"model": str(folder / "model.pt2"), "unhardened": str(before)}
    doc["provenance"] = _provenance(str(recipe) if recipe is not None else "convex two-layer ReLU", x, labels,
                                    seed=seed, model_kw=model_kw, settings={
                                        "method": method, "threat": threat.to_json(), "training": doc["training"],
                                        "audit": audit, "sources": [str(s) for s in sources],
                                        "attackers": [str(s) for s in attackers], "pick": pick, "copies": copies,
                                        "patterns": patterns, "warm": warm, "reg": reg, "solver": solver,
                                        "rounds": rounds})
    doc["caveats"] = _harden_caveats(method, attackers, sources)
    _write_json(folder, "harden.json", doc)
    harden_report(doc).write(folder, doc)
    return doc


def _harden_caveats(method: str, attackers: Sequence[ModelLike], sources: Sequence[ModelLike]) -> list[str]:
    if method == "pubdef":
        out = ["PubDef defends against transfer from public models only: it is not white-box robust, and query "
               "attacks or private surrogates are outside its threat model"]
        seen = {str(a) for a in attackers} & {str(s) for s in sources} if attackers else {str(s) for s in sources}
        if seen:
            out.append("some audit attackers were training sources (seen): the held-out worst case is the honest "
                       "number; give --attackers models not in --sources")
        return out
    if method == "convex":
        return ["the convex program is solved over sampled activation patterns: globally optimal among networks "
                "using those patterns, not over every network of the width"]
    return []


def _convex(x: torch.Tensor, labels: torch.Tensor, classes: int, threat: ThreatModel, *, patterns: int, warm: int,
            reg: float, solver: str, rounds: int, seed: int, baseline: bool, progress: bool, folder: Path,
            ) -> tuple[torch.nn.Module, torch.nn.Module | None, dict[str, Any]]:
    """The standard convex program (the unhardened model unless the user gives one) and the robust one at the
    threat's eps (`defend.run.convex`); their figures for harden.json."""
    from robustaudit.defend.run import convex

    if threat.norm is not Norm.LINF:
        raise InputError("convex training is robust to linf perturbations of tabular inputs: use --norm linf")
    xs, ys = x.reshape(len(x), -1).double().numpy(), labels.numpy()
    std, robust, warm_objective = convex(xs, ys, classes, threat.eps, patterns=patterns, warm=warm, reg=reg,
                                         solver=solver, rounds=rounds, seed=seed, folder=folder, progress=progress)
    extra: dict[str, Any] = {"robust": _convex_json(robust, xs, ys, reg, threat.eps),
                             "standard": _convex_json(std, xs, ys, reg, 0.0), "warm_start_objective": warm_objective}
    return robust.network.module(), std.network.module() if baseline else None, extra


def _convex_json(r: Any, x: np.ndarray, y: np.ndarray, reg: float, eps: float) -> dict[str, Any]:
    return {"optimum": r.optimum, "recovered_objective": r.network.objective(x, y, reg, eps),
            "width": r.network.width, "patterns": r.patterns,
            "solver": r.solver, "status": r.status, "seconds": round(r.seconds, 2), "dual_ratio": r.dual_ratio}
