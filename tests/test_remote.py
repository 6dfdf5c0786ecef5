"""Remote models over the Open Inference Protocol: a real `robustaudit serve` process, a fault-injecting server,
exact query counts against the server's own counter, and clear errors when the server is gone."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from robustaudit import ThreatModel, evaluate
from robustaudit.attacks.score.square import Square
from robustaudit.models import TorchModel, as_score_only, load_model
from robustaudit.models.remote import RemoteError, RemoteModel

NET_PY = """
import torch
def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def served_examples(base: str) -> int:
    text = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret"}).text
    return int(float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith("robustaudit_inferred_examples_total"))))


@pytest.fixture(scope="module")
def net_spec(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("net") / "net.py"
    p.write_text(NET_PY)
    return f"{p}:build"


def start_serve(*options: str) -> tuple[subprocess.Popen[bytes], str]:
    """`robustaudit serve OPTIONS` in its own process on an ephemeral port, once it answers: (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "robustaudit", "serve", *options, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/v2/health/ready").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError(proc.stdout.read().decode() if proc.stdout else "server did not start")
    return proc, base


@pytest.fixture(scope="module")
def server(net_spec: str) -> Iterator[str]:
    """`robustaudit serve` with a token."""
    proc, base = start_serve("--model", net_spec, "--token", "s3cret", "--max-batch", "64", "--input-shape", "1,8,8")
    yield base
    proc.terminate()
    proc.wait(10)


def data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.from_numpy((d.images[:n] / 16.0).astype(np.float32))[:, None], torch.from_numpy(d.target[:n])


def test_audit_through_serve_counts_what_the_server_saw(server: str, net_spec: str) -> None:
    x, y = data()
    remote = RemoteModel(f"{server}/v2/models/model", token="s3cret", max_batch=16, concurrency=2)
    before = served_examples(server)
    rec = evaluate(remote, x, y, ThreatModel(eps=0.2, max_queries=60), [Square(n_queries=60)], seed=1)
    assert sum(e.queries for e in rec.examples) == served_examples(server) - before
    local = evaluate(as_score_only(load_model(net_spec)), x, y, ThreatModel(eps=0.2, max_queries=60),
                     [Square(n_queries=60)], seed=1)
    assert [e.broken_by for e in rec.examples] == [e.broken_by for e in local.examples]
    assert [e.queries for e in rec.examples] == [e.queries for e in local.examples]


def test_server_protects_itself(server: str) -> None:
    url = f"{server}/v2/models/model"
    auth = {"Authorization": "Bearer s3cret"}
    assert httpx.get(url).status_code == 401
    meta = httpx.get(url, headers=auth).json()
    assert meta["inputs"][0]["shape"] == [-1, 1, 8, 8] and meta["outputs"][0]["datatype"] == "FP32"
    ok = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64}]}
    r = httpx.post(f"{url}/infer", json=ok, headers=auth)
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 10]
    too_many = {"inputs": [{"name": "input", "shape": [65, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64 * 65}]}
    for body, status in [(b"{not json", 400), (json.dumps(too_many).encode(), 400),
                         (json.dumps({"inputs": [{"shape": [2, 3], "datatype": "FP32", "data": [1]}]}).encode(), 400),
                         (b"x" * (65 << 20), 413), (b"[" * 100_000 + b"]" * 100_000, 400),
                         (b'{"inputs": [{"name": "input", "shape": [100000, 64], "datatype": "FP32", "data": [' +
                          b"0.5," * 1000, 400)]:
        r = httpx.post(f"{url}/infer", content=body, headers=auth)
        assert r.status_code == status and "error" in r.json(), (body[:40], r.text[:200])
    for private in ("/metrics", "/openapi.json", "/v2", "/v2/models/model/ready"):
        assert httpx.get(f"{server}{private}").status_code == 401
        assert httpx.get(f"{server}{private}", headers=auth).status_code == 200
    assert httpx.get(f"{url}/versions/7", headers=auth).status_code == 404
    assert httpx.get(f"{server}/v2/health/ready").status_code == 200


class FaultServer:
    """A v2 server on http.server that fails a share of inference requests: 500, 429 with Retry-After, a reply
    slower than the client's timeout, a dropped connection, malformed JSON. Only proper answers are counted."""

    def __init__(self, model: torch.nn.Module, rate: float, seed: int = 0, die_after: int | None = None) -> None:
        self.model, self.rate, self.rng, self.served = model, rate, random.Random(seed), 0
        self.die_after = die_after  # after this many answered requests, every request is dropped
        self.answered = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                meta = {"name": "m", "inputs": [{"name": "in", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
                        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]}
                self._send(200, json.dumps(meta).encode())

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    fault = outer.rng.choice(["500", "429", "slow", "drop", "junk"]) \
                        if outer.rng.random() < outer.rate else None
                    if outer.die_after is not None and outer.answered >= outer.die_after:
                        fault = "drop"
                if fault == "500":
                    return self._send(500, b'{"error": "boom"}')
                if fault == "429":
                    return self._send(429, b'{"error": "slow down"}', {"Retry-After": "0.01"})
                if fault == "slow":
                    time.sleep(0.6)
                    return self._send(503, b"{}")
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if fault == "junk":
                    return self._send(200, b'{"outputs": [{"name": "logits", "sha')
                t = json.loads(body)["inputs"][0]
                x = torch.tensor(t["data"], dtype=torch.float32).reshape(t["shape"])
                with torch.no_grad():
                    z = outer.model(x).numpy()
                with outer.lock:
                    outer.served += len(x)
                    outer.answered += 1
                reply = {"outputs": [{"name": "logits", "datatype": "FP32", "shape": list(z.shape),
                                      "data": z.ravel().tolist()}]}
                return self._send(200, json.dumps(reply).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v2/models/m"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_faults_are_retried_and_counts_stay_exact(net_spec: str) -> None:
    net = load_model(net_spec).module  # type: ignore[attr-defined]
    faulty = FaultServer(net, rate=0.3)
    try:
        x, y = data(16)
        remote = RemoteModel(faulty.url, max_batch=8, concurrency=2, timeout=0.3, retries=12, backoff=0.01)
        budget = 40
        rec = evaluate(remote, x, y, ThreatModel(eps=0.2, max_queries=budget), [Square(n_queries=budget)], seed=2)
        assert sum(e.queries for e in rec.examples) == faulty.served
        local = evaluate(as_score_only(TorchModel(net)), x, y, ThreatModel(eps=0.2, max_queries=budget),
                         [Square(n_queries=budget)], seed=2)
        assert [e.queries for e in rec.examples] == [e.queries for e in local.examples]
        assert max(e.queries for e in rec.examples) <= budget
    finally:
        faulty.stop()


def test_a_server_that_is_gone_gives_a_clear_error(net_spec: str, tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="cannot reach"):
        RemoteModel(f"http://127.0.0.1:{free_port()}/v2/models/m", timeout=1)
    net = load_model(net_spec).module  # type: ignore[attr-defined]
    server = FaultServer(net, rate=0.0)
    remote = RemoteModel(server.url, retries=2, backoff=0.01, timeout=1)
    server.stop()
    x, y = data(4)
    with pytest.raises(RemoteError, match="no answer after 3 attempts"):
        evaluate(remote, x, y, ThreatModel(eps=0.1), [Square(n_queries=10)])
    from typer.testing import CliRunner

    from robustaudit.cli import app

    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    r = CliRunner().invoke(app, ["evaluate", "--model", server.url, "--data", str(tmp_path / "d.npz"), "--eps", "0.1",
                                 "--out", str(tmp_path / "o"), "--retries", "1"])
    assert r.exit_code == 2 and "cannot reach" in r.output and not (tmp_path / "o").exists()


def test_rate_limit_spaces_requests(server: str) -> None:
    remote = RemoteModel(f"{server}/v2/models/model", token="s3cret", max_batch=1, rate=20.0)
    x, _ = data(6)
    start = time.monotonic()
    remote.predict_scores(x)
    assert time.monotonic() - start >= 5 / 20 - 0.01  # six requests, at least 1/20 s apart


def test_nvidia_tritonclient_talks_to_serve(server: str, net_spec: str) -> None:
    """An Open Inference Protocol client we did not write: NVIDIA's tritonclient[http]."""
    http = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    auth = {"Authorization": "Bearer s3cret"}
    client = http.InferenceServerClient(url=server.removeprefix("http://"))
    assert client.is_server_live(headers=auth) and client.is_server_ready(headers=auth)
    assert client.is_model_ready("model", headers=auth) and client.is_model_ready("model", "1", headers=auth)
    assert not client.is_model_ready("other", headers=auth)
    assert client.get_server_metadata(headers=auth)["name"] == "robustaudit"
    meta = client.get_model_metadata("model", headers=auth)
    assert meta["inputs"][0]["name"] == "input" and meta["outputs"][0]["name"] == "scores"
    x, _ = data(3)
    with torch.no_grad():
        ref = load_model(net_spec).predict_scores(x)
    for binary in (False, True):  # JSON tensors, and the binary tensor data extension both ways
        inp = http.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x.numpy(), binary_data=binary)
        out = http.InferRequestedOutput("scores", binary_data=binary)
        res = client.infer("model", [inp], outputs=[out], headers=auth, model_version="1")
        assert np.allclose(res.as_numpy("scores"), ref.numpy(), atol=1e-5)
    with pytest.raises(InferenceServerException):
        client.infer("model", [inp], outputs=[out], headers=auth, model_version="2")
    assert httpx.get(f"{server}/v2/health/ready").status_code == 200


def test_a_server_that_dies_mid_audit_keeps_what_was_done(net_spec: str, tmp_path: Path) -> None:
    net = load_model(net_spec).module  # type: ignore[attr-defined]
    server = FaultServer(net, rate=0.0, die_after=12)
    try:
        x, _ = data(24)
        with torch.no_grad():
            y = net(x).argmax(1)  # every example clean-correct, so every batch is attacked
        remote = RemoteModel(server.url, max_batch=8, retries=1, backoff=0.01, timeout=1)
        rec = evaluate(remote, x, y, ThreatModel(eps=0.3), [Square(n_queries=5)], batch_size=8, checks=False)
        assert not rec.complete and "incomplete" in {f.code for f in rec.flags}
        assert rec.attacks[0].broken > 0  # the batches finished before the outage are kept
        from typer.testing import CliRunner

        from robustaudit.cli import app

        server.answered = 0
        np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
        r = CliRunner().invoke(app, ["evaluate", "--model", server.url, "--data", str(tmp_path / "d.npz"),
                                     "--eps", "0.3", "--attacks", "square", "--batch-size", "8", "--no-checks",
                                     "--retries", "1", "--max-batch", "8", "--out", str(tmp_path / "o")])
        assert r.exit_code == 1, r.output
        res = json.loads((tmp_path / "o" / "results.json").read_text())
        assert res["complete"] is False and any(f["code"] == "incomplete" for f in res["flags"])
    finally:
        server.stop()
