"""The Flower side of bench/peer_flower.py; runs under ``.venv-flwr/bin/python`` (imports flwr, numpy only).

    python bench/flwr_peer.py server PORT ROUNDS CLIENTS NPARAMS   # prints one JSON line of timings
    python bench/flwr_peer.py client PORT NPARAMS SEED

The workload matches the fedmark side exactly: a model of NPARAMS float32
values, CLIENTS clients that each return the received parameters plus a
pre-computed update (no local compute in the timed path), FedAvg weighted by
example count, ROUNDS rounds, no evaluation rounds.  Flower's classic
``start_server`` / ``start_client`` (gRPC bidirectional stream) on 127.0.0.1.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np


def _update(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, n).astype(np.float32)


def server(port: int, rounds: int, clients: int, n: int) -> None:
    import flwr as fl
    from flwr.common import ndarrays_to_parameters

    marks: dict[str, list[float]] = {"start": [], "end": []}

    class Timed(fl.server.strategy.FedAvg):
        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            marks["start"].append(time.time())
            return super().configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            out = super().aggregate_fit(server_round, results, failures)
            marks["end"].append(time.time())
            marks.setdefault("results", []).append(len(results))
            marks.setdefault("failures", []).append(len(failures))
            return out

    strategy = Timed(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=clients, min_evaluate_clients=0,
                     min_available_clients=clients, accept_failures=False,
                     initial_parameters=ndarrays_to_parameters([np.zeros(n, np.float32)]))
    fl.server.start_server(server_address=f"127.0.0.1:{port}", config=fl.server.ServerConfig(num_rounds=rounds),
                           strategy=strategy)
    print(json.dumps(marks), flush=True)


def client(port: int, n: int, seed: int) -> None:
    import flwr as fl

    delta = _update(n, seed)

    class Pre(fl.client.NumPyClient):
        def fit(self, parameters: Any, config: Any) -> Any:
            return [parameters[0] + delta], 10, {}

        def evaluate(self, parameters: Any, config: Any) -> Any:
            return 0.0, 1, {}

    fl.client.start_client(server_address=f"127.0.0.1:{port}", client=Pre().to_client(), insecure=True,
                           max_retries=50, max_wait_time=60)


if __name__ == "__main__":
    role, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    server(*args) if role == "server" else client(*args)
