"""Interoperability with a server we did not write: Seldon's MLServer (its own venv, since its pins differ from
ours) serving a TorchScript model through a small custom runtime; our client audits it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from test_remote import data, free_port

from robustaudit import ThreatModel, evaluate
from robustaudit.attacks.score.square import Square
from robustaudit.models import TorchModel, as_score_only
from robustaudit.models.remote import RemoteModel

RUNTIME = '''
import numpy as np
import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class TorchScriptRuntime(MLModel):
    async def load(self) -> bool:
        self._model = torch.jit.load(self.settings.parameters.uri).eval()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        with torch.no_grad():
            z = self._model(torch.from_numpy(x)).numpy()
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("scores", z)])
'''


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory) -> Iterator[tuple[str, torch.nn.Module]]:
    root = tmp_path_factory.mktemp("mlserver")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "mlserver", "torch==2.13.0"],
                         capture_output=True, text=True, timeout=900)
    if pip.returncode != 0:
        pytest.skip(f"could not install MLServer from the registry: {pip.stderr.strip()[-300:]}")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    model_dir = root / "models" / "digits"
    model_dir.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net), str(model_dir / "net.pt"))
    (model_dir / "runtime.py").write_text(RUNTIME)
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": "digits", "implementation": "runtime.TorchScriptRuntime",
        "parameters": {"uri": str(model_dir / "net.pt")},
    }))
    port = free_port()
    (root / "models" / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "parallel_workers": 0,
    }))
    proc = subprocess.Popen([str(venv / "bin" / "mlserver"), "start", str(root / "models")], cwd=model_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/v2/models/digits/ready").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        proc.kill()
        out = proc.stdout.read().decode() if proc.stdout else ""
        raise RuntimeError(f"MLServer did not start:\n{out[-2000:]}")
    yield f"{base}/v2/models/digits", net
    proc.terminate()
    proc.wait(20)


def test_audit_a_model_served_by_mlserver(mlserver) -> None:
    url, net = mlserver
    remote = RemoteModel(url, max_batch=16)  # MLServer declares no inputs here: the client falls back to "input"
    x, _ = data(20)
    with torch.no_grad():
        ref = net(x)
    assert np.allclose(remote.predict_scores(x).numpy(), ref.numpy(), atol=1e-5)
    y = ref.argmax(1)
    threat = ThreatModel(eps=0.2, max_queries=50)
    rec = evaluate(remote, x, y, threat, [Square(n_queries=50)], seed=3)
    local = evaluate(as_score_only(TorchModel(net)), x, y, threat, [Square(n_queries=50)], seed=3)
    assert [e.broken_by for e in rec.examples] == [e.broken_by for e in local.examples]
    assert [e.queries for e in rec.examples] == [e.queries for e in local.examples]
    assert rec.attacks[0].broken > 0
