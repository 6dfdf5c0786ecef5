"""A remote model speaking the Open Inference Protocol (KServe v2 REST: Triton, KServe, MLServer, TorchServe).

Batches are sent to POST {url}/infer, `concurrency` at a time, at most `rate` requests per second. Connection
errors, timeouts, malformed replies, 429 and 5xx are retried with exponential backoff and jitter (honouring
Retry-After); a request that never got an answer raises `RemoteError`, so a query is counted once, and only when
the server answered it.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import torch

from robustaudit.errors import InputError, RemoteError
from robustaudit.types import Access

__all__ = ["RemoteError", "RemoteModel"]

TOKEN_ENV = "ROBUSTAUDIT_TOKEN"
_FLOAT = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}
_RETRY_STATUS = {429, 500, 502, 503, 504}


class RemoteModel:
    """Score access (or label access when the output is integer labels) to an Open Inference Protocol endpoint."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        output_name: str | None = None,
        max_batch: int = 256,
        concurrency: int = 1,
        rate: float | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.2,
    ) -> None:
        if max_batch < 1 or concurrency < 1 or retries < 0 or timeout <= 0 or (rate is not None and rate <= 0):
            raise InputError("--max-batch and --concurrency must be >= 1, --retries >= 0, --timeout and --rate > 0")
        self.url = url.rstrip("/")
        self.name = self.url
        self.device = torch.device("cpu")
        self.max_batch, self.concurrency, self.retries, self.backoff = max_batch, concurrency, retries, backoff
        token = token or os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(headers=headers, timeout=timeout)
        self._interval = 0.0 if rate is None else 1.0 / rate
        self._next_slot = time.monotonic()
        self._slot_lock = threading.Lock()
        self._rng = random.Random(0)
        meta = self._metadata()
        try:  # servers may leave inputs/outputs undeclared (MLServer does unless configured): assume FP32 "input"
            inputs = meta.get("inputs") or [{"name": "input", "datatype": "FP32"}]
            self._input = inputs[0]["name"]
            self._datatype = inputs[0].get("datatype", "FP32")
            outputs = {o["name"]: o for o in meta.get("outputs") or []}
        except (KeyError, IndexError, TypeError, AttributeError):
            raise RemoteError(f"{self.url}: the model metadata is not in the v2 format") from None
        if self._datatype not in _FLOAT:
            raise RemoteError(f"{self.url}: input datatype {self._datatype} is not a float type")
        if output_name is not None and outputs and output_name not in outputs:
            raise InputError(f"{self.url}: no output named {output_name!r}; outputs are {sorted(outputs)}")
        # None: the first output of each reply
        self._output = output_name or next(iter(outputs), None)
        datatype = str(outputs[self._output].get("datatype", "FP32")) if self._output in outputs else "FP32"
        self.access = Access.LABELS if datatype.startswith(("INT", "UINT")) else Access.SCORES

    def _metadata(self) -> dict[str, Any]:
        try:
            r = self._client.get(self.url)
        except httpx.HTTPError as e:
            raise RemoteError(f"cannot reach {self.url}: {type(e).__name__} {e}; check the URL and that the "
                              "server is up") from None
        if r.status_code == 401:
            raise RemoteError(f"{self.url} refused the request (401): pass --token or set {TOKEN_ENV}")
        if r.status_code != 200:
            raise RemoteError(f"{self.url}: model metadata request failed with HTTP {r.status_code}: {r.text[:200]}")
        try:
            meta: dict[str, Any] = r.json()
            return meta
        except ValueError:
            raise RemoteError(f"{self.url}: the metadata reply is not JSON") from None

    def _wait_for_slot(self) -> None:
        if not self._interval:
            return
        with self._slot_lock:
            now = time.monotonic()
            start = max(now, self._next_slot)
            self._next_slot = start + self._interval
        time.sleep(max(0.0, start - now))

    def _infer(self, chunk: np.ndarray) -> np.ndarray:
        request: dict[str, Any] = {"inputs": [{
            "name": self._input, "shape": list(chunk.shape), "datatype": self._datatype,
            "data": chunk.astype(_FLOAT[self._datatype]).ravel().tolist(),
        }]}
        if self._output is not None:
            request["outputs"] = [{"name": self._output}]
        body = json.dumps(request)
        last = "no attempt"
        for attempt in range(self.retries + 1):
            self._wait_for_slot()
            wait = None
            try:
                r = self._client.post(f"{self.url}/infer", content=body, headers={"Content-Type": "application/json"})
            except httpx.HTTPError as e:  # connection refused or dropped, timeouts
                last = f"{type(e).__name__} {e}".strip()
            else:
                if r.status_code == 200:
                    try:
                        return self._read(r.json(), len(chunk))
                    except (ValueError, KeyError, IndexError, TypeError) as e:
                        last = f"malformed reply ({type(e).__name__})"
                elif r.status_code in _RETRY_STATUS:
                    last = f"HTTP {r.status_code}"
                    wait = _retry_after(r.headers.get("retry-after"))
                else:
                    raise RemoteError(f"{self.url}/infer refused the request with HTTP {r.status_code}: {r.text[:300]}")
            if attempt < self.retries:
                jitter = 0.5 + self._rng.random()
                time.sleep(wait if wait is not None else min(30.0, self.backoff * 2**attempt) * jitter)
        raise RemoteError(f"{self.url}/infer gave no answer after {self.retries + 1} attempts (last: {last})")

    def _read(self, reply: dict[str, Any], n: int) -> np.ndarray:
        outputs = {o["name"]: o for o in reply["outputs"]}
        out = outputs[self._output] if self._output is not None else reply["outputs"][0]
        arr = np.asarray(out["data"]).reshape([int(d) for d in out["shape"]])
        if len(arr) != n:
            raise ValueError(f"{len(arr)} rows for {n} inputs")
        return arr

    def _run(self, x: torch.Tensor) -> np.ndarray:
        arr = x.detach().cpu().numpy()
        chunks = [arr[s:s + self.max_batch] for s in range(0, len(arr), self.max_batch)]
        if self.concurrency == 1 or len(chunks) == 1:
            parts = [self._infer(c) for c in chunks]
        else:
            with ThreadPoolExecutor(self.concurrency) as pool:
                parts = list(pool.map(self._infer, chunks))
        return np.concatenate(parts)

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        if self.access < Access.SCORES:
            raise InputError(f"{self.url} returns labels only")
        return torch.from_numpy(self._run(x).astype(np.float32)).to(x.device)

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        out = self._run(x)
        labels = out if self.access == Access.LABELS else out.argmax(1)
        return torch.from_numpy(labels.astype(np.int64)).to(x.device)

    def close(self) -> None:
        self._client.close()


def _retry_after(value: str | None) -> float | None:
    try:
        return min(60.0, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None
