"""``fedmark simulate`` publishes the version a real server publishes: same artifact, config, seeds and noise.

One DP configuration (adaptive clipping, Gaussian noise, FedAdam) runs twice:
through a real ``fedmark server`` over loopback HTTP with real ``edge_sdk``
clients, and through :func:`simulate.federation.run_federated`.  The devices
train with the simulator's per-round seeds and the simulator is given the
server's per-round noise seeds (its noise secret is set), so the only freedom
left is float rounding: the final parameters, the clip norm and ε must agree.
"""
from __future__ import annotations

import numpy as np
import pytest

from bench.fleet import Fleet
from edge_sdk import Client, DeviceConditions
from fedmark.contract import load_artifact_manifest, unflatten
from server.rounds.aggregate import round_seed
from server.testing import running_server
from simulate.client import device_seed
from simulate.engines import InlineEngine, ProcessEngine
from simulate.federation import FederationSettings, load_config, run_federated
from simulate.propensity import PropensityWorkload
from edge_sdk.trainer import Trainer

READY = DeviceConditions(charging=True, unmetered=True, idle=True, battery=0.9)
DEVICES, ROWS, ROUNDS, SEED = 6, 40, 3, 7
SECRET = "parity-noise-secret"
CONFIG = {"mode": "sync", "goal": DEVICES, "min_clients": DEVICES, "over_select": 1.0, "deadline_s": 120.0,
          "clip": {"norm": 0.5, "adaptive": True, "target_quantile": 0.7, "lr": 0.2, "count_stddev": 2.0},
          "noise_multiplier": 0.8, "delta": 1e-5, "sampling_rate": 0.5,
          "server_optimizer": {"name": "fedadam", "lr": 0.02},
          "hyperparams": {"epochs": 2, "learning_rate": 0.1}}


def _fleet(bank, purpose: str) -> list[list[dict]]:
    rows = [dict(r, consent=purpose) for r in bank.train[: DEVICES * ROWS]]
    return [rows[i * ROWS:(i + 1) * ROWS] for i in range(DEVICES)]


def _server_run(bank, parts, tmp_path):
    manifest = load_artifact_manifest(bank.artifact)
    round_ids, eps = [], None
    with running_server(tmp_path / "server", extra_env={"FEDMARK_NOISE_SECRET": SECRET}) as srv:
        admin = Fleet(srv.base_url, srv.admin_token)
        admin.publish_dir(bank.artifact, manifest.model)
        admin.train(manifest.model, **CONFIG)
        key = admin.app_key("eu")
        clients = [Client(srv.base_url, app_key=key, device_id=f"sim-dev-{d}", region="eu",
                          storage_dir=tmp_path / f"dev{d}", allow_insecure_http=True, timeout=60.0)
                   for d in range(DEVICES)]
        for r in range(ROUNDS):
            version = admin.model(manifest.model)["current_version"]
            ids = set()
            for d, client in enumerate(clients):
                report = client.train(manifest.model, parts[d], conditions=READY, seed=device_seed(SEED, r, d))
                assert report.status == "accepted", report
                ids.add(report.round_id)
            assert len(ids) == 1
            round_ids.append(ids.pop())
            info = admin.wait_version(manifest.model, version + 1)
        final = info["current_version"]
        params = unflatten(np.frombuffer(admin.params_bytes(manifest.model, final), "<f4").astype(np.float32),
                           manifest.params)
        eps = next(v["epsilon"] for v in info["versions"] if v["version"] == final)
    return params, round_ids, eps


@pytest.mark.timeout(300)
def test_simulate_publishes_the_servers_version(bank, tmp_path):
    trainer = Trainer(bank.artifact)
    parts = _fleet(bank, trainer.manifest.purpose)
    server_params, round_ids, server_eps = _server_run(bank, parts, tmp_path)

    work = PropensityWorkload.build(trainer, parts, bank.test[:500])
    cfg = load_config(CONFIG)
    settings = FederationSettings(ROUNDS, 0.0, SEED, eval_every=ROUNDS,
                                  noise_seed=lambda r: round_seed(SECRET, round_ids[r], 0))
    for engine in (InlineEngine(bank.artifact, work.data), ProcessEngine(bank.artifact, work.data, workers=2)):
        try:
            run = run_federated(engine, trainer.manifest, trainer.initial_params(), cfg, settings, work.sizes)
        finally:
            engine.close()
        moved = max(float(np.abs(s - i).max()) for s, i in zip(server_params, trainer.initial_params()))
        assert moved > 1e-3  # training changed the model, so agreement below is not trivial
        for sim, srv in zip(run.params, server_params):
            np.testing.assert_allclose(sim, srv, rtol=0, atol=2e-6)
        assert server_eps is not None and run.epsilon == pytest.approx(server_eps, rel=1e-9)
        assert [r.contributors for r in run.rounds] == [DEVICES] * ROUNDS


def test_a_different_noise_seed_gives_a_different_version(bank):
    """The parity above depends on the noise seed: with another seed the published params differ."""
    trainer = Trainer(bank.artifact)
    work = PropensityWorkload.build(trainer, _fleet(bank, trainer.manifest.purpose), bank.test[:500])
    cfg = load_config(CONFIG)
    outs = []
    for s in (1, 2):
        engine = InlineEngine(bank.artifact, work.data)
        outs.append(run_federated(engine, trainer.manifest, trainer.initial_params(), cfg,
                                  FederationSettings(1, 0.0, SEED, noise_seed=lambda r, s=s: s), work.sizes).params)
    assert max(float(np.abs(a - b).max()) for a, b in zip(*outs)) > 1e-4
