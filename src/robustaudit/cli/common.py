"""What every command shares: the consoles, the one InputError -> exit 2 handler, and the option groups every
command that takes a model (or data) declares the same way, parsed here once."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from robustaudit.errors import InputError
from robustaudit.gate import Gate
from robustaudit.tracking import Tracking
from robustaudit.types import Bounds, DataOptions, parse_number, parse_size

err = Console(stderr=True)
out = Console()
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> None:
    """Print a one-line error and exit with code 2 (bad input); the message is never read as markup."""
    err.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def check_out(values: dict[str, Any]) -> None:
    """--out is usable: a folder (`out_dir`) that is not a file and not under one; a file (`out_path`) that is
    not a folder and not under a file."""
    for name, folder in (("out_dir", True), ("out_path", False)):
        path = values.get(name)
        if not isinstance(path, Path):
            continue
        if folder and path.is_file():
            raise InputError(f"--out {path} is a file: give a folder")
        if not folder and path.is_dir():
            raise InputError(f"--out {path} is a folder: give a file name")
        above = next((p for p in path.parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise InputError(f"--out {path} lies under {above}, which is a file")


@dataclass(frozen=True)
class ModelOptions:
    """The options of every command that loads a model: normalisation, output field, device, remote settings."""

    mean: list[float] | None = None
    std: list[float] | None = None
    output_key: str | None = None
    device: str | None = None
    remote: dict[str, Any] | None = None
    trust_model_file: bool = False
    precision: str = "fp32"
    compile_model: bool = False

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `load_model` / `as_model` / `audit`."""
        return {"mean": self.mean, "std": self.std, "output_key": self.output_key, "device": self.device,
                "remote": self.remote, "trust_model_file": self.trust_model_file, "precision": self.precision,
                "compile_model": self.compile_model}


def _model_params() -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("mean", kw, default=None, annotation=Annotated[str | None, typer.Option(
            help="per-channel mean to normalise with inside the model, e.g. 0.485,0.456,0.406", rich_help_panel=_M)]),
        inspect.Parameter("std", kw, default=None, annotation=Annotated[str | None, typer.Option(
            help="per-channel std, given with --mean", rich_help_panel=_M)]),
        inspect.Parameter("output_key", kw, default=None, annotation=Annotated[str | None, typer.Option(
            "--output-key", "--output-name", help="the output holding the scores: a field of a tuple/dict/object "
            "returned by a PyTorch forward (default: the tensor, else 'logits', else the first tensor), or an "
            "ONNX / remote output name (default: the first)", rich_help_panel=_M)]),
        inspect.Parameter("device", kw, default=None, annotation=Annotated[str | None, typer.Option(
            help="torch device (default: the model's)", rich_help_panel=_M)]),
        inspect.Parameter("trust_model_file", kw, default=False, annotation=Annotated[bool, typer.Option(
            help="load pickled payloads in model files (.pt2 archives, torch.save modules): they can run arbitrary "
            "code; only for files you trust", rich_help_panel=_M)]),
        inspect.Parameter("precision", kw, default="fp32", annotation=Annotated[str, typer.Option(
            help="torch model: fp32, or bf16 / fp16 mixed precision (scores and losses stay fp32)",
            rich_help_panel=_M)]),
        inspect.Parameter("compile_model", kw, default=False, annotation=Annotated[bool, typer.Option(
            "--compile", help="torch model: run it through torch.compile (pays on long audits; the first batches "
            "compile)", rich_help_panel=_M)]),
    ]


def _remote_params() -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("max_batch", kw, default=256, annotation=Annotated[int, typer.Option(
            help="remote model: examples per request", rich_help_panel=_R)]),
        inspect.Parameter("concurrency", kw, default=1, annotation=Annotated[int, typer.Option(
            help="remote model: requests in flight", rich_help_panel=_R)]),
        inspect.Parameter("rate", kw, default=None, annotation=Annotated[float | None, typer.Option(
            help="remote model: at most this many requests per second", rich_help_panel=_R)]),
        inspect.Parameter("timeout", kw, default=30.0, annotation=Annotated[float, typer.Option(
            help="remote model: seconds per request", rich_help_panel=_R)]),
        inspect.Parameter("retries", kw, default=5, annotation=Annotated[int, typer.Option(
            help="remote model: retries of a failed request", rich_help_panel=_R)]),
        inspect.Parameter("token", kw, default=None, annotation=Annotated[str | None, typer.Option(
            help="remote model: bearer token (or set ROBUSTAUDIT_TOKEN)", envvar="ROBUSTAUDIT_TOKEN",
            rich_help_panel=_R)]),
    ]


def _gate_params() -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("fail_under", kw, default=None, annotation=Annotated[float | None, typer.Option(
            help="release gate: exit 1 when the figure is below this (default rule: the lower end of its 95% "
            "interval)", rich_help_panel=_G)]),
        inspect.Parameter("gate", kw, default="lower", annotation=Annotated[str, typer.Option(
            help="lower (the interval's lower end) or point (the estimate)", rich_help_panel=_G)]),
        inspect.Parameter("allow_flag", kw, default=None, annotation=Annotated[list[str] | None, typer.Option(
            help="a diagnostic code that may fire without failing the gate (repeat the option)",
            rich_help_panel=_G)]),
        inspect.Parameter("jsonl", kw, default=None, annotation=Annotated[Path | None, typer.Option(
            help="append one JSON line per run to this file (for any tracker)", rich_help_panel=_G)]),
        inspect.Parameter("mlflow", kw, default=False, annotation=Annotated[bool, typer.Option(
            "--mlflow", help="log params, metrics and the run's files to the active MLflow run (or a new one; "
            "needs robustaudit[mlflow])", rich_help_panel=_G)]),
    ]


def _gate(values: dict[str, Any]) -> tuple[Gate | None, Tracking]:
    fail_under, rule, allowed = values.pop("fail_under"), values.pop("gate"), values.pop("allow_flag")
    track = Tracking(jsonl=values.pop("jsonl"), mlflow=values.pop("mlflow"))
    return (None if fail_under is None else Gate(fail_under, rule, tuple(allowed or ()))), track


def verdict(result: dict[str, Any] | None) -> None:
    """Print the gate's one line and exit 1 when it failed."""
    if result is None:
        return
    (out if result["passed"] else err).print(result["line"], highlight=False, markup=False, soft_wrap=True)
    if not result["passed"]:
        raise typer.Exit(code=1)


def _data_params() -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("size", kw, default=None, annotation=Annotated[str | None, typer.Option(
            help="image folder / Parquet: resize images to HxW, e.g. 32x32", rich_help_panel=_D)]),
        inspect.Parameter("channels", kw, default=3, annotation=Annotated[int, typer.Option(
            help="image folder / Parquet: 3 (RGB) or 1 (grayscale)", rich_help_panel=_D)]),
        inspect.Parameter("crop", kw, default=False, annotation=Annotated[bool, typer.Option(
            help="image folder / Parquet: centre-crop to the aspect of --size first", rich_help_panel=_D)]),
        inspect.Parameter("classes", kw, default=None, annotation=Annotated[Path | None, typer.Option(
            "--classes", "--class-map", help="image folder: the model's class index of each folder name, as JSON "
            "{\"cat\": 281} or a text file with one class name per line (default: sorted folder names are 0, 1, ...)",
            rich_help_panel=_D)]),
        inspect.Parameter("image_column", kw, default="image", annotation=Annotated[str, typer.Option(
            help="Parquet: the column of encoded image bytes", rich_help_panel=_D)]),
        inspect.Parameter("label_column", kw, default="label", annotation=Annotated[str, typer.Option(
            help="Parquet: the label column (absent: the model's clean predictions are the labels)",
            rich_help_panel=_D)]),
    ]


_M, _R, _D, _G = "Model options", "Remote model options", "Data options", "Gate and tracking"


def _model_options(values: dict[str, Any], remote: bool) -> ModelOptions:
    mean, std = floats(values.pop("mean"), "--mean"), floats(values.pop("std"), "--std")
    remote_opts = None
    if remote:
        remote_opts = {k: values.pop(k) for k in ("token", "max_batch", "concurrency", "rate", "timeout", "retries")}
    return ModelOptions(mean=mean, std=std, output_key=values.pop("output_key"), device=values.pop("device"),
                        remote=remote_opts, trust_model_file=values.pop("trust_model_file"),
                        precision=values.pop("precision"), compile_model=values.pop("compile_model"))


def _data_options(values: dict[str, Any]) -> DataOptions:
    size = values.pop("size")
    return DataOptions(size=None if size is None else parse_size(size), channels=values.pop("channels"),
                       crop=values.pop("crop"), image_column=values.pop("image_column"),
                       label_column=values.pop("label_column"), classes=values.pop("classes"))


def command(app: typer.Typer, name: str | None = None, *, model: bool = False, remote: bool = False,
            data: bool = False, gate: bool = False) -> Callable[[F], F]:
    """Register `fn` as a command of `app`: an `InputError` it raises becomes one line on stderr and exit 2; with
    `model` (and `remote`) it gets the model options as `model_options: ModelOptions`, with `data` the image
    folder / Parquet options as `data_options: DataOptions`, with `gate` `gate: Gate | None` and
    `track: Tracking` (--fail-under, --gate, --allow-flag, --jsonl, --mlflow)."""

    def register(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values()
                  if p.name not in ("model_options", "data_options", "gate", "track")]
        params += (_model_params() if model else []) + (_remote_params() if remote else []) + \
            (_data_params() if data else []) + (_gate_params() if gate else [])

        @functools.wraps(fn)
        def wrapper(**values: Any) -> Any:
            try:
                check_out(values)
                if model:
                    values["model_options"] = _model_options(values, remote)
                if data:
                    values["data_options"] = _data_options(values)
                if gate:
                    values["gate"], values["track"] = _gate(values)
                return fn(**values)
            except InputError as e:
                fail(str(e))

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        app.command(name)(wrapper)
        return fn

    return register


def names(specs: list[str] | None) -> list[str]:
    """A repeatable option's values, each also split at commas: ['a,b', 'c'] -> ['a', 'b', 'c']."""
    return [s for spec in specs or [] for s in spec.split(",") if s]


def floats(text: str | None, option: str) -> list[float] | None:
    """'a,b,c' -> [a, b, c] (None stays None)."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{option} must be comma-separated numbers, got {text!r}") from None


def ints(text: str, option: str, sep: str = ",") -> list[int]:
    try:
        return [int(v) for v in text.split(sep)]
    except ValueError:
        raise InputError(f"{option} must be integers separated by {sep!r}, got {text!r}") from None


def parse_bounds(text: str) -> Bounds:
    """'LOW,HIGH' -> Bounds."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--bounds must be LOW,HIGH, got {text!r}") from None
    return Bounds(low, high)


def eps_value(text: str) -> float:
    """--eps as papers write it: 0.03 or 8/255."""
    return parse_number(text, "--eps")


def show_progress(quiet: bool) -> bool:
    """Progress unless --quiet: a live bar on a terminal, periodic plain lines otherwise (CI logs)."""
    return not quiet


EpsOpt = Annotated[str, typer.Option(help="perturbation budget in input units: a number or a fraction (8/255); "
                                          "at l0 the number of pixels")]
NormOpt = Annotated[str, typer.Option(help="linf, l2 or l0 (pixels changed, all channels of a pixel count as one; "
                                           "where the command supports it)")]
BoundsOpt = Annotated[str, typer.Option(help="valid input range LOW,HIGH")]
SeedOpt = Annotated[int, typer.Option(help="seed of every random draw")]
QuietOpt = Annotated[bool, typer.Option(help="no progress bar")]
OutOpt = Annotated[Path, typer.Option("--out", help="output folder")]
NpzOpt = Annotated[Path, typer.Option(help=".npz with x (float32) and y (int labels)")]
