"""(b) One TFF round equals the example-weighted average of what the exported trainer computes.

With no noise and a server SGD of learning rate 1.0, FedAvg's new global model
is old + Σ n_k Δ_k / Σ n_k.  The Δ_k here come from edge_sdk.trainer.Trainer
running the ONNX artifact on the same client data in the same order, so the
test ties the TFF definition of the process to what devices really run.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.trainer import Trainer

pytestmark = pytest.mark.tff
TOL = 1e-4


def max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64)))) for u, v in zip(a, b))


@pytest.fixture(scope="module", autouse=True)
def stop_tff_workers():
    yield
    from models import tff_runtime

    tff_runtime.stop_workers()
    assert tff_runtime.worker_pids() == []


def weighted_average(p0, results):
    w = np.array([r.num_examples for r in results], np.float64)
    return [p + sum(wi * (r.params[k] - p) for wi, r in zip(w, results)) / w.sum() for k, p in enumerate(p0)]


def test_propensity_round_equals_weighted_trainer_updates(propensity_artifact, bank_split):
    from models import data, federated

    tr = Trainer(propensity_artifact)
    schema = tr.manifest.schema()
    parts = data.partition_by_job(bank_split[0])
    # non-IID clients of different sizes (weights matter), last batches partial (masks matter)
    clients = [schema.encode(parts[job][:n])[:2] for job, n in (("student", 90), ("retired", 333),
                                                                   ("admin.", 150), ("unemployed", 61))]
    p0 = tr.initial_params()
    lr = 0.2
    results = [tr.train(p0, c, epochs=1, lr=lr, shuffle=False) for c in clients]
    expected = weighted_average(p0, results)

    proc = federated.build_propensity_process(schema.width, 32, client_lr=lr, server_optimizer="sgd", server_lr=1.0)
    state = federated.with_params(proc, proc.initialize(), p0)
    out = proc.next(state, [federated.propensity_client_data(x, y, tr.manifest.batch_size) for x, y in clients])
    got = federated.model_weights(proc, out.state)
    assert max_diff(expected, got) <= TOL
    assert max_diff(p0, got) > 1e-3  # the round did move the model
    uniform = [p + sum(r.params[k] - p for r in results) / len(results) for k, p in enumerate(p0)]
    assert max_diff(uniform, got) > 10 * TOL  # …and the weighting is what made it match
    assert out.metrics["client_work"]["train"]["num_examples"] == sum(len(c[0]) for c in clients)


def test_recommender_round_equals_weighted_trainer_updates(recommender_artifact, retail):
    from models import federated

    tr = Trainer(recommender_artifact)
    hp = tr.manifest.hyperparams
    users = [3, 17, 40]
    p0 = tr.initial_params()
    zeros = {"user_emb": np.zeros(int(hp["dim"]), np.float32)}  # the TFF client work reconstructs from zero
    epochs = 2
    plans = [tr.recommender_plan(retail.train[u], epochs=epochs, seed=u) for u in users]
    results = [tr.train(p0, retail.train[u], local=zeros, epochs=epochs, seed=u) for u in users]
    expected = weighted_average(p0, results)

    from models import recommender

    # the recipe the artifact was exported from gives the process (models.federated.build_process)
    fam = recommender.family(tr.manifest.features["items"], dim=int(hp["dim"]), block=tr.manifest.batch_size,
                             learning_rate=float(hp["learning_rate"]), recon_lr=float(hp["recon_lr"]), epochs=epochs)
    proc = federated.build_process(fam, server_optimizer="sgd", server_lr=1.0, initial_params=p0)
    out = proc.next(proc.initialize(), [federated.recommender_client_data(p) for p in plans])
    got = federated.model_weights(proc, out.state)
    assert max_diff(expected, got) <= TOL
    assert max_diff(p0, got) > 1e-3
    assert out.metrics["client_work"]["examples"] == sum(r.num_examples for r in results)


def test_dp_process_clips_client_updates(propensity_artifact, bank_split):
    """DP-FedAvg with z = 0 and a tiny fixed clip: the model moves by at most C."""
    from models import federated

    tr = Trainer(propensity_artifact)
    schema = tr.manifest.schema()
    clients = [schema.encode(bank_split[0][i * 200:(i + 1) * 200])[:2] for i in range(3)]
    p0 = tr.initial_params()
    clip = 0.01
    proc = federated.build_propensity_process(
        schema.width, 32, client_lr=0.2, dp=federated.DPConfig(noise_multiplier=0.0, clients_per_round=3, clip=clip))
    out = proc.next(federated.with_params(proc, proc.initialize(), p0),
                    [federated.propensity_client_data(x, y) for x, y in clients])
    moved = np.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(federated.model_weights(proc, out.state), p0)))
    unclipped = tr.train(p0, clients[0], lr=0.2, shuffle=False).params
    assert np.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(unclipped, p0))) > 10 * clip
    assert 0.5 * clip < moved <= clip * (1 + 1e-5)


def test_adaptive_dp_aggregator_moves_clip_towards_the_quantile():
    """All updates far below the clip (b = 1 > γ = 0.5): C must shrink each round, the mean stays exact."""
    from models import federated
    from models.tff_runtime import import_tff

    tff = import_tff()
    agg = federated.build_aggregator(federated.DPConfig(noise_multiplier=0.0, clients_per_round=3, clip=None,
                                                        target_quantile=0.5))
    process = agg.create(tff.TensorType(np.float32, [3]))
    state, clips = process.initialize(), []
    for _ in range(3):
        out = process.next(state, [np.array([0.01, 0.0, 0.0], np.float32)] * 3)
        state = out.state
        clips.append(float(out.measurements["dp_query_metrics"]["clip"]))
        assert np.allclose(out.result, [0.01, 0.0, 0.0], atol=1e-6)
    assert clips[0] > clips[1] > clips[2]
