"""Where a run's summary goes besides its folder: a JSON-lines file any tracker reads (`--jsonl`), and MLflow
(`--mlflow`, the optional `[mlflow]` extra): params, metrics, and the run's files as artifacts."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustaudit.errors import InputError
from robustaudit.extras import require

_MAX_PARAM = 500  # characters of one logged parameter value


def append_jsonl(path: str | Path, entry: dict[str, Any]) -> None:
    """Append one run's summary as one JSON line (any tracker can read the file)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"--jsonl {p} is a folder: give a file")
    p.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), **entry})
    with open(p, "a") as f:
        f.write(line + "\n")


def flatten(summary: dict[str, Any], prefix: str = "") -> tuple[dict[str, str], dict[str, float]]:
    """(params, metrics) of a summary: numbers are metrics (a `*_ci95` pair becomes `*_ci95_low/high`), other
    scalars and short lists are params; nested tables are flattened with dotted keys; long lists are left out."""
    params: dict[str, str] = {}
    metrics: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool) or value is None or isinstance(value, str):
            params[name] = str(value)[:_MAX_PARAM]
        elif isinstance(value, int | float):
            metrics[name] = float(value)
        elif isinstance(value, dict):
            p, m = flatten(value, f"{name}.")
            params |= p
            metrics |= m
        elif isinstance(value, list | tuple) and key.endswith("_ci95") and len(value) == 2:
            metrics[f"{name}_low"], metrics[f"{name}_high"] = float(value[0]), float(value[1])
        elif isinstance(value, list | tuple) and len(value) <= 16 and all(
                isinstance(v, str | int | float) for v in value):
            params[name] = json.dumps(list(value))[:_MAX_PARAM]
    return params, metrics


def log_mlflow(command: str, out: str | Path, summary: dict[str, Any]) -> str:
    """Log a run to the active MLflow run, or to a new one in the current experiment (MLFLOW_TRACKING_URI,
    MLFLOW_EXPERIMENT_NAME, MLFLOW_RUN_ID are honoured): params, metrics, and the files of `out` as artifacts under
    `robustaudit/`. Returns the MLflow run id."""
    mlflow = require("mlflow", "--mlflow")
    params, metrics = flatten(summary)
    active = mlflow.active_run()
    run = active or mlflow.start_run(run_name=f"robustaudit {command}")
    try:
        mlflow.set_tag("robustaudit.command", command)
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        if Path(out).is_dir():
            mlflow.log_artifacts(str(out), artifact_path="robustaudit")
    finally:
        if active is None:
            mlflow.end_run()
    return str(run.info.run_id)


@dataclass(frozen=True)
class Tracking:
    """The sinks one command writes its summary to, besides its folder."""

    jsonl: Path | None = None
    mlflow: bool = False

    def __post_init__(self) -> None:
        if self.jsonl is not None and self.jsonl.is_dir():  # refused before the audit runs, not after
            raise InputError(f"--jsonl {self.jsonl} is a folder: give a file")
        if self.mlflow:
            require("mlflow", "--mlflow")

    def log(self, command: str, out: Path, summary: dict[str, Any]) -> None:
        if self.jsonl is not None:
            append_jsonl(self.jsonl, {"command": command, "out": str(out), **summary})
        if self.mlflow:
            log_mlflow(command, out, summary)
