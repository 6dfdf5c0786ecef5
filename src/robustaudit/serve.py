"""An Open Inference Protocol (KServe v2 REST) server for any loadable model: for tests, demos and as a
reference server. Binds 127.0.0.1 by default; malformed requests get a JSON error, never a crash."""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from robustaudit.models.base import LabelModel
from robustaudit.types import Access

DATATYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(
    model: LabelModel,
    *,
    name: str = "model",
    token: str | None = None,
    max_batch: int = 1024,
    max_body_bytes: int = 64 << 20,
    input_shape: Sequence[int] | None = None,
) -> FastAPI:
    """A FastAPI app serving `model` as `name`: scores (FP32 [n, k]) at score access, labels (INT64 [n]) below."""
    app = FastAPI(title="robustaudit model server", docs_url=None, redoc_url=None)
    scores = Access(model.access) >= Access.SCORES
    out_name, out_type = ("scores", "FP32") if scores else ("label", "INT64")
    lock = threading.Lock()
    served = {"examples": 0}

    def check_token(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise _ApiError(401, "missing or wrong bearer token")

    @app.exception_handler(_ApiError)
    async def api_error(_: Request, e: _ApiError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/v2/health/live")
    def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return (
            "# HELP robustaudit_inferred_examples_total Examples inferred by this server.\n"
            "# TYPE robustaudit_inferred_examples_total counter\n"
            f"robustaudit_inferred_examples_total {served['examples']}\n"
        )

    @app.get("/v2/models/{model_name}")
    def metadata(model_name: str, request: Request) -> dict[str, Any]:
        check_token(request)
        _known(model_name, name)
        shape = [-1, *input_shape] if input_shape else [-1]
        return {
            "name": name, "versions": ["1"], "platform": "robustaudit",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": shape}],
            "outputs": [{"name": out_name, "datatype": out_type, "shape": [-1, -1] if scores else [-1]}],
        }

    @app.post("/v2/models/{model_name}/infer")
    async def infer(model_name: str, request: Request) -> JSONResponse:
        check_token(request)
        _known(model_name, name)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            raise _ApiError(413, f"request body over {max_body_bytes} bytes")
        body = await request.body()
        if len(body) > max_body_bytes:
            raise _ApiError(413, f"request body over {max_body_bytes} bytes")
        x = _parse(body, max_batch)
        try:
            with torch.inference_mode():
                out = model.predict_scores(x) if scores else model.predict_labels(x)  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 - the model failed on this input: the client's problem
            raise _ApiError(400, f"the model failed on inputs of shape {list(x.shape)}: {e}") from None
        with lock:
            served["examples"] += len(x)
        arr = out.detach().cpu().numpy()
        return JSONResponse({
            "model_name": name, "outputs": [{
                "name": out_name, "datatype": out_type, "shape": list(arr.shape),
                "data": arr.astype(np.float32 if scores else np.int64).ravel().tolist(),
            }],
        })

    app.state.served = served
    return app


def _known(model_name: str, name: str) -> None:
    if model_name != name:
        raise _ApiError(404, f"unknown model {model_name!r}; this server serves {name!r}")


def _parse(body: bytes, max_batch: int) -> torch.Tensor:
    try:
        req = json.loads(body)
        tensor = req["inputs"][0]
        shape = [int(d) for d in tensor["shape"]]
        dtype = DATATYPES[tensor["datatype"]]
        data = np.asarray(tensor["data"], dtype=dtype)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise _ApiError(400, f"malformed inference request ({type(e).__name__}: {e}); send "
                             "{'inputs': [{'name', 'shape', 'datatype': 'FP32', 'data'}]}") from None
    if not shape or any(d < 0 for d in shape) or int(np.prod(shape)) != data.size:
        raise _ApiError(400, f"shape {shape} does not match {data.size} data values")
    if shape[0] > max_batch:
        raise _ApiError(400, f"batch of {shape[0]} is over this server's limit of {max_batch}")
    if not np.isfinite(data).all():
        raise _ApiError(400, "input holds NaN or infinite values")
    return torch.from_numpy(data.reshape(shape).astype(np.float32))
