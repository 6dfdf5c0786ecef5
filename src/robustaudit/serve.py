"""An Open Inference Protocol (KServe v2 REST) server for any loadable model: for tests, demos and as a
reference server. Binds 127.0.0.1 by default; malformed requests get a JSON error, never a crash.

Endpoints: `GET /v2` (server metadata), `/v2/health/live|ready`, `/v2/models/{name}[/versions/1]` (metadata),
`.../ready`, `POST .../infer` with JSON tensors or the binary tensor data extension (Triton's: a JSON header of
`Inference-Header-Content-Length` bytes, then the raw tensors); `/metrics` and `/openapi.json`, behind the token
when one is set."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from robustaudit.models.base import LabelModel
from robustaudit.types import Access
from robustaudit.version import __version__

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
    app = FastAPI(title="robustaudit model server", docs_url=None, redoc_url=None, openapi_url=None)
    scores = Access(model.access) >= Access.SCORES
    out_name, out_type = ("scores", "FP32") if scores else ("label", "INT64")
    registry = CollectorRegistry()
    served = Counter("robustaudit_inferred_examples", "Examples inferred by this server.", registry=registry)

    def check_token(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise _ApiError(401, "missing or wrong bearer token")

    @app.exception_handler(_ApiError)
    async def api_error(_: Request, e: _ApiError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.exception_handler(Exception)
    async def any_error(_: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(e).__name__})"}, status_code=500)

    @app.get("/v2")
    def server_metadata(request: Request) -> dict[str, Any]:
        check_token(request)
        return {"name": "robustaudit", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/openapi.json")
    def openapi(request: Request) -> dict[str, Any]:
        check_token(request)
        return app.openapi()

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/v2/health/live")
    def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        check_token(request)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v2/models/{model_name}/ready")
    @app.get("/v2/models/{model_name}/versions/{version}/ready")
    def model_ready(model_name: str, request: Request, version: str = "1") -> dict[str, Any]:
        check_token(request)
        _known(model_name, name, version)
        return {"name": name, "ready": True}

    @app.get("/v2/models/{model_name}")
    @app.get("/v2/models/{model_name}/versions/{version}")
    def metadata(model_name: str, request: Request, version: str = "1") -> dict[str, Any]:
        check_token(request)
        _known(model_name, name, version)
        shape = [-1, *input_shape] if input_shape else [-1]
        return {
            "name": name, "versions": ["1"], "platform": "robustaudit",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": shape}],
            "outputs": [{"name": out_name, "datatype": out_type, "shape": [-1, -1] if scores else [-1]}],
        }

    @app.post("/v2/models/{model_name}/infer")
    @app.post("/v2/models/{model_name}/versions/{version}/infer")
    async def infer(model_name: str, request: Request, version: str = "1") -> Response:
        check_token(request)
        _known(model_name, name, version)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            raise _ApiError(413, f"request body over {max_body_bytes} bytes")
        body = await request.body()
        if len(body) > max_body_bytes:
            raise _ApiError(413, f"request body over {max_body_bytes} bytes")
        header = request.headers.get("inference-header-content-length")
        req, x = _parse(body, max_batch, None if header is None else _int(header))
        try:
            with torch.inference_mode():
                out = model.predict_scores(x) if scores else model.predict_labels(x)  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 - the model failed on this input: the client's problem
            raise _ApiError(400, f"the model failed on inputs of shape {list(x.shape)}: {e}") from None
        served.inc(len(x))
        arr = out.detach().cpu().numpy().astype(np.float32 if scores else np.int64)
        output: dict[str, Any] = {"name": out_name, "datatype": out_type, "shape": list(arr.shape)}
        if not _wants_binary(req):
            return JSONResponse({"model_name": name, "model_version": "1",
                                 "outputs": [output | {"data": arr.ravel().tolist()}]})
        raw = arr.tobytes()
        head = json.dumps({"model_name": name, "model_version": "1",
                           "outputs": [output | {"parameters": {"binary_data_size": len(raw)}}]}).encode()
        return Response(head + raw, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(len(head))})

    return app


def _known(model_name: str, name: str, version: str = "1") -> None:
    if model_name != name:
        raise _ApiError(404, f"unknown model {model_name!r}; this server serves {name!r}")
    if version != "1":
        raise _ApiError(404, f"unknown version {version!r} of {name!r}; this server serves version 1")


def _int(text: str) -> int:
    if not text.isdigit():
        raise _ApiError(400, f"Inference-Header-Content-Length must be a byte count, got {text!r}")
    return int(text)


_BATCH = re.compile(rb'"shape"\s*:\s*\[\s*(\d+)')


def _parse(body: bytes, max_batch: int, header_length: int | None) -> tuple[dict[str, Any], torch.Tensor]:
    """(the request, its input tensor); the binary extension's raw tensor follows a JSON header of
    `header_length` bytes. A batch over the limit is refused from its declared shape, before the data is read."""
    head = body if header_length is None else body[:header_length]
    declared = _BATCH.search(head[:4096])
    if declared and int(declared.group(1)) > max_batch:
        raise _ApiError(400, f"batch of {int(declared.group(1))} is over this server's limit of {max_batch}")
    try:
        req = json.loads(head)
        tensor = req["inputs"][0]
        shape = [int(d) for d in tensor["shape"]]
        dtype = DATATYPES[tensor["datatype"]]
        if header_length is None:
            data = np.asarray(tensor["data"], dtype=dtype)
        else:
            size = int(tensor.get("parameters", {}).get("binary_data_size", len(body) - header_length))
            raw = body[header_length:header_length + size]
            if len(raw) != size or size % np.dtype(dtype).itemsize:
                raise ValueError(f"binary data of {len(raw)} bytes, {size} declared")
            data = np.frombuffer(raw, dtype=dtype)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError) as e:
        raise _ApiError(400, f"malformed inference request ({type(e).__name__}); send "
                             "{'inputs': [{'name', 'shape', 'datatype': 'FP32', 'data'}]}") from None
    if not shape or any(d < 0 for d in shape) or int(np.prod(shape)) != data.size:
        raise _ApiError(400, f"shape {shape} does not match {data.size} data values")
    if shape[0] > max_batch:
        raise _ApiError(400, f"batch of {shape[0]} is over this server's limit of {max_batch}")
    if not np.isfinite(data).all():
        raise _ApiError(400, "input holds NaN or infinite values")
    return req, torch.from_numpy(data.reshape(shape).astype(np.float32))


def _wants_binary(req: dict[str, Any]) -> bool:
    """The client asked for binary outputs (per output, or for all in the request's parameters)."""
    params = req.get("parameters") or {}
    outputs = req.get("outputs") or []
    return bool(params.get("binary_data_output")) or any(
        isinstance(o, dict) and (o.get("parameters") or {}).get("binary_data") for o in outputs)
