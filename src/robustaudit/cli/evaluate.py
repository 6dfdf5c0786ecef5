"""`robustaudit evaluate`: parse the options, call `robustaudit.audit`, show the record."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from robustaudit.cli.common import (
    BoundsOpt,
    EpsOpt,
    ModelOptions,
    NormOpt,
    OutOpt,
    QuietOpt,
    SeedOpt,
    eps_value,
    err,
    out,
    parse_bounds,
    show_progress,
    verdict,
)
from robustaudit.errors import InputError
from robustaudit.gate import Gate
from robustaudit.tracking import Tracking
from robustaudit.types import DataOptions

if TYPE_CHECKING:
    from robustaudit.results import EvalRecord


def evaluate(
    model: Annotated[str, typer.Option(help="model.pt (TorchScript), model.pt2 (torch.export), model.onnx, "
                                            "package.module:callable, file.py:callable or an http(s) URL (Open "
                                            "Inference Protocol)")],
    data: Annotated[Path, typer.Option(help=".npz with x (float32) and y (int labels); a folder with one "
                                            "sub-folder of images per class; or Parquet (file or folder)")],
    eps: EpsOpt,
    out_dir: OutOpt,
    model_options: ModelOptions,
    data_options: DataOptions,
    gate: Gate | None,
    track: Tracking,
    norm: NormOpt = "linf",
    attacks: Annotated[str | None, typer.Option(help="fast | standard | strongest | NAME[,NAME...]; default: fast "
                                                     "with gradients; square,genetic (l2: square) with scores; "
                                                     "with labels cgba (targeted cgba-h) under l2, rays (targeted "
                                                     "hsja) under linf; at l0: pgd-l0,sparse-rs with "
                                                     "gradients, sparse-rs,fgbb with scores")] = None,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option(help="examples per batch")] = 256,
    bounds: BoundsOpt = "0,1",
    budget: Annotated[int | None, typer.Option(help="hard total of queries per example, everything included "
                                                    "(clean check, diagnostics, attacks, verification)")] = None,
    access: Annotated[str | None, typer.Option(help="gradients | scores | labels (default: the most the model "
                                                    "offers)")] = None,
    player2: Annotated[str | None, typer.Option(help="fgbb (--norm l0): player II of the game, cooperative | "
                                                     "adversarial | random")] = None,
    checks: Annotated[bool, typer.Option(help="run the diagnostics")] = True,
    adaptive: Annotated[str, typer.Option(help="auto: adapt the attacks to what the diagnostics find (log-"
                                               "probabilities, EOT, BPDA, gradient-free) and report the naive "
                                               "figure beside; off: the naive cascade alone")] = "auto",
    eot: Annotated[int, typer.Option(help="randomised models: draws per gradient and per decision (majority)")]
    = 20,
    quiet: QuietOpt = False,
    surrogate: Annotated[str | None, typer.Option(help="white-box model that seeds the genetic attack (free: never "
                                                       "charged to the target)")] = None,
    target: Annotated[str | None, typer.Option("--target-class", "--target",
                                               help="targeted audit: a class index N, 'second' (the second most "
                                                    "likely class, one score query each) or 'random' (seeded)")] = None,
    starts: Annotated[Path | None, typer.Option(help=".npz (x, y) of starting points for decision-based attacks, "
                                                     "e.g. images of the target classes")] = None,
    shard_size: Annotated[int, typer.Option(help="examples per shard: each finished shard is committed to "
                                                 "DIR/store.sqlite")] = 512,
    resume: Annotated[bool, typer.Option(help="continue the run in --out (rerunning into the same folder does so "
                                              "too); refused if its options differ")] = False,
    backend: Annotated[str, typer.Option(help="local (this process) or ray (shards as tasks on a Ray "
                                              "cluster)")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (e.g. auto, ray://HOST:10001); default: "
                                                     "a local cluster")] = None,
    workers: Annotated[int | None, typer.Option(help="Ray workers (default: one per CPU of the cluster)")] = None,
    interpreter: Annotated[str | None, typer.Option(help="gradient | smoothgrad | gradxinput | ig | gradcam | cam: "
                                                         "add, per broken example, how similar the interpreter's map "
                                                         "of the adversarial input is to the clean one (PyTorch "
                                                         "models)")]
    = None,
    layer: Annotated[str | None, typer.Option(help="the interpreter's layer (gradcam, cam; default: the last "
                                                   "Conv2d)")] = None,
    map_weight: Annotated[float, typer.Option(help="genetic attack at --access scores: weight of the map-similarity "
                                                   "term in its fitness (needs --interpreter)")] = 0.0,
) -> None:
    """Attack MODEL on DATA under a threat model and write results.json, adversarial.npz, summary.md and
    report.html to --out."""
    _log_to_stderr()
    low_high = parse_bounds(bounds)
    if adaptive not in ("auto", "off"):
        raise InputError(f"--adaptive must be auto or off, got {adaptive!r}")
    from robustaudit.api import audit

    record = audit(model, data, eps=eps_value(eps), norm=norm, attacks=attacks, out=out_dir, resume=resume,
                   backend=backend, seed=seed, batch_size=batch_size, bounds=low_high, budget=budget, access=access,
                   target=target, surrogate=surrogate, starts=starts, interpreter=interpreter, layer=layer,
                   map_weight=map_weight, player2=player2, checks=checks, adaptive=adaptive == "auto", eot=eot,
                   shard_size=shard_size, address=address, workers=workers,
                   data_options=data_options, progress=show_progress(quiet), gate=gate,
                   **model_options.load_kwargs())
    show(record, out_dir)
    track.log("evaluate", out_dir, {k: v for k, v in record.to_json().items() if k != "examples"})
    if not record.complete:
        err.print(f"[bold red]error:[/] {record.stopped}; the results written cover what was done; rerun the same "
                  "command to resume", highlight=False)
        raise typer.Exit(code=1)
    verdict(record.gate)


def show(record: EvalRecord, where: Path) -> None:
    """The run's table, headline figures, notes and flags on stdout."""
    lo, hi = record.robust_accuracy_ci95
    table = Table(title=f"robustaudit: {record.threat['norm']} eps={record.threat['eps']:g} on {record.n} examples")
    for col in ("attack", "attacked", "broken", "seconds", "gradients", "forwards"):
        table.add_column(col, justify="left" if col == "attack" else "right")
    for a in record.attacks:
        table.add_row(a.name, str(a.attacked), str(a.broken), f"{a.seconds:.1f}", str(a.gradients), str(a.forwards))
    out.print(table)
    out.print(f"clean accuracy  {record.clean_accuracy:.3f}")
    out.print(f"robust accuracy {record.robust_accuracy:.3f}  (95% CI {lo:.3f}-{hi:.3f})")
    for adaptation in record.adaptations:
        out.print(f"[cyan]adapted[/] {adaptation['name']} ({adaptation['reason']}): {adaptation['detail']}",
                  highlight=False)
    if record.naive_robust_accuracy is not None:
        out.print(f"the naive cascade alone reported {record.naive_robust_accuracy:.3f}: masking would have hidden "
                  f"{record.naive_robust_accuracy - record.robust_accuracy:.3f}", highlight=False)
    for a in record.attacks:
        for note in a.notes:
            out.print(f"note: {note}", highlight=False)
    for f in record.flags:
        out.print(f"[yellow]flag {f.code}:[/] {f.message}", highlight=False)
    if record.interpretation is not None and record.interpretation.get("broken"):
        s = record.interpretation
        out.print(f"interpreter {s['interpreter']}: on the {s['broken']} broken examples the adversarial map's Pearson "
                  f"correlation with the clean map is {s['mean_pearson']:.3f} on average, top-10% IoU "
                  f"{s['mean_topk_iou']:.3f}", highlight=False)
    files = "report.html, results.json, adversarial.npz, summary.md" + (
        ", minnorm.json, curves.json" if (where / "minnorm.json").is_file() else "")
    out.print(f"results written to {where}/ ({files})", highlight=False)


class _ToStderr(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        err.print(record.getMessage(), highlight=False, soft_wrap=True)


def _log_to_stderr() -> None:
    """robustaudit's INFO messages (a resumed run) on stderr, once."""
    log = logging.getLogger("robustaudit")
    if not any(isinstance(h, _ToStderr) for h in log.handlers):
        log.addHandler(_ToStderr())
        log.setLevel(logging.INFO)
