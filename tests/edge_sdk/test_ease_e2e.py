"""Federated EASE end to end: real exported artifact, real server over loopback, real SDK devices.

Devices send sparse Gram bodies; the round's close solves EASE and publishes the low-rank factors.
With k = 1, no noise, no device above the cap and full rank, what the server publishes is central
EASE on the same histories (to float32), and the devices' ONNX scores equal the central scores.
"""
from __future__ import annotations

import numpy as np
import pytest

from bench.fleet import Fleet
from examples.demo.fleet import AppKeys, SimDevice, published_params, run_sync_round
from edge_sdk.trainer import Trainer
from fedmark.contract import load_artifact_manifest
from fedmark.contract.gram import clip_norm_for, gram_contribution, triu_size
from fedmark.contract.wire import encode_sparse_update
from server.testing import running_server

N, DEVICES, LAM = 30, 24, 5.0


def histories(seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, N + 1)
    return [sorted(set(rng.choice(N, rng.integers(2, 9), p=p / p.sum()).tolist())) for _ in range(DEVICES)]


def central_scores(hist: list[list[int]]) -> np.ndarray:
    x = np.zeros((len(hist), N))
    for u, h in enumerate(hist):
        x[u, h] = 1.0
    p = np.linalg.inv(x.T @ x + LAM * np.eye(N))
    b = np.eye(N) - p / np.diag(p)[None, :]  # Steck 2019: B = I - P diagMat(1/diag P)
    return x @ b


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from models.ease import export_ease

    out = tmp_path_factory.mktemp("ease")
    export_ease(out, items=[f"SKU{i}" for i in range(N)], cap=10, lam=LAM, k_min=1, rank=N, model="ease-e2e")
    return out


def test_a_round_of_sparse_counts_publishes_central_ease(artifact, tmp_path):
    hist = histories()
    manifest = load_artifact_manifest(artifact)
    with running_server(tmp_path / "srv") as srv:
        admin = Fleet(srv.base_url, srv.admin_token)
        admin.publish_dir(artifact, manifest.model)
        half = DEVICES // 2  # two rounds of fresh devices: the server's Gram sum runs across rounds
        admin.train(manifest.model, mode="sync", goal=half, min_clients=half, deadline_s=60.0,
                    clip={"norm": clip_norm_for(10), "adaptive": False}, noise_multiplier=0.0,
                    server_optimizer={"name": "fedavg", "lr": 1.0})
        devices = [SimDevice(f"shopper-{u}", "eu", "retailer",
                             [{"CustomerID": u, "StockCode": f"SKU{i}", "consent": "recommendations"} for i in h]
                             + [{"CustomerID": u, "StockCode": "NOT-IN-CATALOGUE", "consent": "recommendations"}],
                             tmp_path / "dev" / str(u)) for u, h in enumerate(hist)]
        keys = AppKeys(admin)
        first = run_sync_round(admin, manifest.model, devices[:half], keys, np.random.default_rng(0), goal=half)
        after_one = published_params(admin, manifest.model, first.version, manifest)
        out = run_sync_round(admin, manifest.model, devices[half:], keys, np.random.default_rng(1), goal=half)
        assert (first.state, out.state) == ("closed", "closed") and (first.version, out.version) == (2, 3)
        assert first.accepted + out.accepted == DEVICES
        assert first.upload_bytes + out.upload_bytes == sum(20 + 8 * triu_size(len(h)) for h in hist), \
            "one sparse body per device"
        params = published_params(admin, manifest.model, out.version, manifest)

        # a body the protocol cannot hold is refused with a code, before it is read
        dev = devices[0].connect(srv.base_url, keys.of(devices[0]))
        admin.train(manifest.model, mode="sync", goal=DEVICES, min_clients=1, deadline_s=60.0,
                    clip={"norm": clip_norm_for(10), "adaptive": False}, noise_multiplier=0.0)
        task = dev.get_task(manifest.model)
        too_many = encode_sparse_update(np.arange(triu_size(10) + 1, dtype=np.uint32),
                                        np.ones(triu_size(10) + 1, np.float32), triu_size(N))
        from edge_sdk.errors import ServerError as ApiRefused
        from fedmark.contract import upload_headers

        headers = upload_headers(version=task.version, num_examples=1, key="too-many-pairs", round_id=task.round_id)
        with pytest.raises(ApiRefused) as err:
            dev._request("POST", task.upload_url, body=too_many, headers=headers, accept=(200, 202))
        assert err.value.code == "body_too_large", str(err.value)
        bad = encode_sparse_update(np.array([3, 1], np.uint32)[:0], np.zeros(0, np.float32), triu_size(N) + 1)
        with pytest.raises(ApiRefused) as err:
            dev._request("POST", task.upload_url, body=bad, headers={**headers, "Idempotency-Key": "bad-count"},
                         accept=(200, 202))
        assert err.value.code == "bad_update" and "parameters" in str(err.value), str(err.value)
        idx, val = gram_contribution([1, 2, 3], N)
        with pytest.raises(ApiRefused) as err:  # inside the clip norm, but one device posing as 70
            dev._request("POST", task.upload_url, body=encode_sparse_update(idx, val * 70, triu_size(N)),
                         headers={**headers, "Idempotency-Key": "inflated"}, accept=(200, 202))
        assert err.value.code == "bad_update" and "values are all 1" in str(err.value), str(err.value)

    trainer = Trainer(artifact)
    left, right = params
    central = central_scores(hist)
    for u in (0, 5, 17):
        device_scores = trainer.predict(params, np.array(hist[u]), local=None)
        np.testing.assert_allclose(device_scores, central[u], atol=2e-4)
    # after the first round alone the model is central EASE of the first half only
    np.testing.assert_allclose(trainer.predict(after_one, np.array(hist[0]), local=None),
                               central_scores(hist[:half])[0], atol=2e-4)
    np.testing.assert_allclose((left.astype(np.float64) @ right).diagonal(), 0.0, atol=1e-4)
