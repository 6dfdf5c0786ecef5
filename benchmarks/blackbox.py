"""Score-based black-box benchmark, side by side in one run, on the demo model (360 digits, Linf eps 0.1, 2 threads):

* Square Linf at 1,000 queries: ours against torchattacks' and ART's Square when installed (`make bench-peers`),
  robust accuracy and wall time;
* the HTTP overhead: examples per second through `robustaudit serve` on loopback against in-process queries.

    python benchmarks/blackbox.py [--ours-only] [--seed 0]
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

import numpy as np
import torch
import uvicorn
from common import peer_module, robust_accuracy

from robustaudit import ThreatModel, load_model
from robustaudit.attacks.score.square import Square
from robustaudit.demo import demo_files
from robustaudit.models import TorchModel, as_score_only
from robustaudit.models.remote import RemoteModel
from robustaudit.serve import create_app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours-only", action="store_true")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="seed of ours and of torchattacks' Square")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model_path, data_path = demo_files()
    model = load_model(str(model_path))
    if not isinstance(model, TorchModel):
        raise SystemExit("the demo model should be a torch model")
    net = peer_module(str(model_path))
    d = np.load(data_path)
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"]).long()
    eps, q = 0.1, args.queries
    rows = []
    start = time.perf_counter()
    # torchattacks' defaults: n_queries iterations, schedule rescaled to them; ours counts the initial point too
    ours = Square(n_queries=q + 1, rescale_schedule=True)
    res = ours(as_score_only(model), x, y, ThreatModel(eps=eps), seed=args.seed)
    rows.append(("robustaudit", robust_accuracy(net, x, y, res.x_adv), time.perf_counter() - start))
    if not args.ours_only:
        try:
            import torchattacks

            sq = torchattacks.Square(net, norm="Linf", eps=eps, n_queries=q, p_init=0.8, loss="margin", seed=args.seed)
            start = time.perf_counter()
            adv = sq(x, y)
            rows.append(("torchattacks", robust_accuracy(net, x, y, adv), time.perf_counter() - start))
        except ImportError:
            print("torchattacks not installed: skipped")
        try:
            from art.attacks.evasion import SquareAttack
            from art.estimators.classification import PyTorchClassifier

            clf = PyTorchClassifier(net, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                    nb_classes=10, clip_values=(0.0, 1.0))
            art_sq = SquareAttack(clf, norm=np.inf, eps=eps, max_iter=q, p_init=0.8, nb_restarts=1,
                                  batch_size=len(x), verbose=False)
            start = time.perf_counter()
            adv = torch.from_numpy(art_sq.generate(x.numpy(), y.numpy()))
            rows.append(("ART", robust_accuracy(net, x, y, adv), time.perf_counter() - start))
        except ImportError:
            print("adversarial-robustness-toolbox not installed: skipped")
    print(f"\nSquare Linf eps={eps}, {q} queries, {len(x)} digits")
    print(f"{'implementation':14s} {'RA':>6s} {'seconds':>8s}")
    for impl, ra, t in rows:
        print(f"{impl:14s} {ra:6.3f} {t:8.2f}")
    http_overhead(model, x)


def http_overhead(model: TorchModel, x: torch.Tensor, rounds: int = 20, batch: int = 90) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(as_score_only(model)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    remote = RemoteModel(f"http://127.0.0.1:{port}/v2/models/model", max_batch=batch)
    xb = x[:batch]
    for label, fn in [("in-process", model.predict_scores), ("HTTP loopback", remote.predict_scores)]:
        fn(xb)
        start = time.perf_counter()
        for _ in range(rounds):
            fn(xb)
        rate = rounds * batch / (time.perf_counter() - start)
        print(f"{label:14s} {rate:9.0f} examples/s (batches of {batch})")
    server.should_exit = True
    thread.join(10)


if __name__ == "__main__":
    main()
