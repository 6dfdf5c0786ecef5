"""`robustaudit demo`, `serve` and `attacks`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robustaudit.cli.common import ModelOptions, QuietOpt, err, ints, out, show_progress
from robustaudit.errors import InputError
from robustaudit.types import Access


def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="report folder")] = Path("demo-report"),
    attacks: Annotated[str, typer.Option(help="fast | standard | strongest | NAME[,NAME...]")] = "fast",
    eps: Annotated[float, typer.Option(help="Linf budget")] = 0.1,
    quiet: QuietOpt = False,
    certify: Annotated[bool, typer.Option(help="also certify a noise-trained digits CNN with randomized smoothing "
                                               "(sigma 0.25) into DIR/certify/")] = True,
) -> None:
    """Train (once, cached) a small CNN on real handwritten digits, audit it and write a report folder."""
    from robustaudit.api import audit
    from robustaudit.cli.evaluate import show
    from robustaudit.demo import demo_files
    from robustaudit.run.data import load_npz

    model_path, data_path = demo_files()
    out.print(f"demo model: {model_path}\ndemo data:  {data_path}", highlight=False)
    record = audit(str(model_path), str(data_path), eps=eps, attacks=attacks, out=out_dir,
                   progress=show_progress(quiet))
    show(record, out_dir)
    if certify:
        from robustaudit.commands import certify as run_certify
        from robustaudit.demo import noisy_files

        x, y = load_npz(data_path)
        r = run_certify(str(noisy_files(0.25)), x[::6], y[::6], sigma=0.25, n0=100, n=1000, alpha=0.001,
                        batch_size=500, out=out_dir / "certify", progress=show_progress(quiet))
        out.print(f"certified accuracy at L2 radius 0.5: {r['certified_accuracy']['0.5']['certified_accuracy']:.3f} "
                  f"({r['examples']} examples); written to {out_dir / 'certify'}/", highlight=False)


def serve(
    model: Annotated[str, typer.Option(help="any model --model accepts in evaluate")],
    model_options: ModelOptions,
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
    from robustaudit.extras import require
    from robustaudit.models.load import load_model

    uvicorn = require("uvicorn", "robustaudit serve")
    require("fastapi", "robustaudit serve")
    require("prometheus_client", "robustaudit serve")
    from robustaudit.serve import create_app

    level = {"scores": Access.SCORES, "labels": Access.LABELS}.get(access)
    if level is None:
        raise InputError(f"--access must be scores or labels, got {access!r}")
    shape = ints(input_shape, "--input-shape") if input_shape else None
    if shape is not None and any(d < 1 for d in shape):
        raise InputError(f"--input-shape must be positive sizes, got {input_shape!r}")
    if max_batch < 1 or not name.strip() or "/" in name or not 0 < port < 65536:
        raise InputError("--max-batch must be >= 1, --name a non-empty name without '/', --port in 1..65535")
    m = load_model(model, access=level, **model_options.load_kwargs())
    err.print(f"serving {model} at http://{host}:{port}/v2/models/{name}", highlight=False)
    uvicorn.run(create_app(m, name=name, token=token, max_batch=max_batch, input_shape=shape), host=host, port=port,
                log_level="warning")


def attacks() -> None:
    """List attack names and presets."""
    from robustaudit.attacks.registry import PRESETS, available, get

    for name in available():
        a = get(name)
        out.print(f"{name:10s} {a.requires.name.lower():9s} {','.join(sorted(n.value for n in a.norms))}")
    for preset, names in PRESETS.items():
        out.print(f"preset {preset}: {' -> '.join(names)}")


