"""TFF learning processes for the two families (simulation and reference maths).

The federated process is defined once with ``tff.learning`` building blocks:
client work (local SGD, the same maths as the exported trainer), an
aggregator (example-weighted mean, or DP: clipping + Gaussian noise on an
unweighted mean), and a server optimizer (SGD or Adam).  The server in
``server/`` re-implements the aggregation for production fleets; these
processes are the reference it is checked against and the simulation the demo
uses.

* any supervised family (``models.family``; propensity is one):
  ``tff.learning.algorithms.build_weighted_fed_avg`` (or the unweighted
  variant under DP) around the family's functional model — the forward pass
  the exported train step differentiates.
* recommender: a custom ``ClientWorkProcess`` (reconstruct the user vector
  with the items frozen, then train the item rows) composed with
  ``compose_learning_process``; the client work calls the very ``tf.function``
  steps that are exported to ONNX.

Every TFF import goes through ``models.tff_runtime`` so its ``worker_binary``
is stopped at exit.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from models import propensity as prop
from models import recommender as rec
from models.family import Family
from models.tff_runtime import import_tff


@dataclass(frozen=True)
class DPConfig:
    """Central DP for a simulated round: clip each client update, add N(0, (z·C)²) to the sum.

    ``clip=None`` selects adaptive clipping (Andrew et al. 2021) towards the
    ``target_quantile`` of update norms, as ``tff.learning.dp_aggregator`` does.
    """

    noise_multiplier: float
    clients_per_round: int
    clip: float | None = 1.0
    target_quantile: float = 0.5


def build_aggregator(dp: DPConfig | None) -> Any:
    """Weighted mean (no DP) or a DifferentiallyPrivateFactory (unweighted, as DP requires)."""
    tff = import_tff()
    if dp is None:
        return tff.aggregators.MeanFactory()
    if dp.noise_multiplier < 0 or dp.clients_per_round < 1:
        raise ValueError("noise_multiplier must be >= 0 and clients_per_round >= 1")
    if dp.clip is not None:
        return tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
            noise_multiplier=dp.noise_multiplier, clients_per_round=dp.clients_per_round, clip=dp.clip)
    return tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
        noise_multiplier=dp.noise_multiplier, clients_per_round=dp.clients_per_round,
        target_unclipped_quantile=dp.target_quantile,
        # TFF's default (0.05 x clients) raises for large noise multipliers; this stays valid.
        clipped_count_stddev=max(0.05 * dp.clients_per_round, dp.noise_multiplier * 0.5 + 1e-3))


def build_server_optimizer(name: str = "sgd", lr: float = 1.0) -> Any:
    """``sgd`` (lr 1.0 = plain FedAvg) or ``adam`` (FedAdam, Reddi et al. 2021)."""
    tff = import_tff()
    if name == "sgd":
        return tff.learning.optimizers.build_sgdm(learning_rate=lr)
    if name == "adam":
        return tff.learning.optimizers.build_adam(learning_rate=lr)
    raise ValueError(f"unknown server optimizer {name!r}; use 'sgd' or 'adam'")


# --------------------------------------------------------------------------- any supervised family
def client_data(family: Family, x: np.ndarray, y: np.ndarray, batch_size: int | None = None) -> Any:
    """One client's tf.data.Dataset for ``build_process``: (x, labels as the train graph takes them) batches.

    Rows stay in order and the last batch is short; the exported trainer pads
    it with mask 0 instead, which gives the same mean loss.
    """
    import tensorflow as tf

    labels = family.graph_labels(y).reshape(len(y), -1)
    return tf.data.Dataset.from_tensor_slices((np.asarray(x, np.float32), labels)).batch(
        batch_size or family.batch_size)


def build_process(family: Family | rec.ReconstructionFamily, *, client_lr: float | None = None,
                  server_optimizer: str = "sgd", server_lr: float = 1.0, dp: DPConfig | None = None,
                  initial_params: Sequence[np.ndarray] | None = None) -> Any:
    """FedAvg (or DP-FedAvg) for a family; a ``tff.learning.templates.LearningProcess``.

    A :class:`models.recommender.ReconstructionFamily` gets Federated
    Reconstruction (``build_recommender_process``).  For a supervised
    :class:`models.family.Family` the model is the family's ``functional_model`` (TFF's functional form of
    the same Keras model the export differentiates), client work is local
    plain SGD on the task's loss — what the exported trainer runs.  Without DP
    clients are weighted by example count; DP needs the unweighted mean.
    """
    if isinstance(family, rec.ReconstructionFamily):
        return build_recommender_process(family.n_items, family.dim, family.block,
                                         client_lr=client_lr or family.learning_rate, recon_lr=family.recon_lr,
                                         epochs=family.epochs,
                                         server_optimizer=server_optimizer, server_lr=server_lr, dp=dp,
                                         initial_params=initial_params)
    tff = import_tff()

    model = family.functional_model(initial_params)
    client_opt = tff.learning.optimizers.build_sgdm(learning_rate=client_lr or family.learning_rate)
    server_opt = build_server_optimizer(server_optimizer, server_lr)
    if dp is None:
        return tff.learning.algorithms.build_weighted_fed_avg(
            model, client_opt, server_opt, model_aggregator=build_aggregator(None))
    return tff.learning.algorithms.build_unweighted_fed_avg(
        model, client_opt, server_opt, model_aggregator=build_aggregator(dp))


# --------------------------------------------------------------------------- propensity
def propensity_client_data(x: np.ndarray, y: np.ndarray, batch_size: int = prop.DEFAULT_BATCH) -> Any:
    """One client's tf.data.Dataset: (x, y[:, None]) batches in row order (last batch short)."""
    return client_data(prop.family(x.shape[1]), x, y, batch_size)


def build_propensity_process(width: int, hidden: int = prop.DEFAULT_HIDDEN, *, client_lr: float = prop.DEFAULT_LR,
                             server_optimizer: str = "sgd", server_lr: float = 1.0, dp: DPConfig | None = None,
                             initial_params: Sequence[np.ndarray] | None = None) -> Any:
    """``build_process`` of the propensity recipe (kept for the benchmarks and the demo)."""
    init = list(initial_params) if initial_params is not None else prop.init_params(width, hidden)
    return build_process(prop.family(width, hidden), client_lr=client_lr, server_optimizer=server_optimizer,
                         server_lr=server_lr, dp=dp, initial_params=init)


# --------------------------------------------------------------------------- recommender
def _block_element_type(block: int) -> Any:
    tff = import_tff()
    return collections.OrderedDict(
        idx=tff.TensorType(np.int64, [block]), labels=tff.TensorType(np.float32, [block]),
        mask=tff.TensorType(np.float32, [block]))


def recommender_client_data(plan: Any) -> Any:
    """(recon dataset, train dataset) of blocks from a ``Trainer.recommender_plan``.

    The plan carries the device's negatives and block order, so the simulated
    client replays exactly what the device computed.
    """
    import tensorflow as tf

    def ds(idx: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> Any:
        return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
            idx=idx.astype(np.int64), labels=labels.astype(np.float32), mask=mask.astype(np.float32)))

    train = [ds(b.idx, b.labels, b.mask) for b in plan.epochs]
    train_ds = train[0]
    for more in train[1:]:
        train_ds = train_ds.concatenate(more)
    return collections.OrderedDict(recon=ds(plan.recon.idx, plan.recon.labels, plan.recon.mask), train=train_ds)


def build_recommender_process(n_items: int, dim: int = rec.DEFAULT_DIM, block: int = rec.DEFAULT_BLOCK, *,
                              client_lr: float = rec.DEFAULT_LR, recon_lr: float = rec.DEFAULT_RECON_LR,
                              epochs: int = rec.DEFAULT_EPOCHS, server_optimizer: str = "sgd",
                              server_lr: float = 1.0, dp: DPConfig | None = None,
                              initial_params: Sequence[np.ndarray] | None = None) -> Any:
    """Federated Reconstruction for the item table, as a composed LearningProcess.

    Client data: ``recommender_client_data(plan)``.  Each client starts its
    user vector at zero, runs the reconstruction blocks (user step, items
    frozen), then the train blocks (item-row step, user frozen, rows
    scattered back).  Update = old item table − new (TFF's pseudo-gradient sign); weight = the client's
    number of positive items.  The user vector never leaves the client.
    """
    tff = import_tff()
    import tensorflow as tf

    init = list(initial_params) if initial_params is not None else rec.init_params(n_items, dim)
    recon_step = rec.make_recon_step(dim, block)
    train_step = rec.make_train_step(dim, block)
    weights_type = tff.to_type(tff.learning.models.ModelWeights(
        trainable=(tff.TensorType(np.float32, [n_items, dim]), tff.TensorType(np.float32, [n_items])),
        non_trainable=()))
    data_type = collections.OrderedDict(recon=tff.SequenceType(_block_element_type(block)),
                                        train=tff.SequenceType(_block_element_type(block)))

    @tff.tensorflow.computation
    def initial_weights() -> Any:
        return tff.learning.models.ModelWeights(
            trainable=(tf.constant(init[0]), tf.constant(init[1])), non_trainable=())

    @tff.tensorflow.computation(weights_type, data_type)
    def client_update(weights: Any, data: Any) -> Any:
        item_emb, item_bias = weights.trainable
        r_lr = tf.constant(recon_lr, tf.float32)
        c_lr = tf.constant(client_lr, tf.float32)

        def recon_body(u: Any, el: Any) -> Any:
            new_u, _ = recon_step(u, tf.gather(item_emb, el["idx"]), tf.gather(item_bias, el["idx"]),
                                  el["labels"], el["mask"], r_lr)
            return new_u

        user = data["recon"].reduce(tf.zeros([dim], tf.float32), recon_body)

        def train_body(state: Any, el: Any) -> Any:
            emb, bias, loss_sum, count, positives = state
            idx = el["idx"]
            rows_new, bias_new, loss = train_step(user, tf.gather(emb, idx), tf.gather(bias, idx),
                                                  el["labels"], el["mask"], c_lr)
            real = tf.where(el["mask"] > 0)[:, 0]  # padded slots must not be written back
            at = tf.expand_dims(tf.gather(idx, real), 1)
            emb = tf.tensor_scatter_nd_update(emb, at, tf.gather(rows_new, real))
            bias = tf.tensor_scatter_nd_update(bias, at, tf.gather(bias_new, real))
            n = tf.reduce_sum(el["mask"])
            return emb, bias, loss_sum + loss * n, count + n, positives + tf.reduce_sum(el["labels"] * el["mask"])

        zero = tf.constant(0.0, tf.float32)
        emb, bias, loss_sum, count, positives = data["train"].reduce(
            (item_emb, item_bias, zero, zero, zero), train_body)
        # TFF convention: the update is a pseudo-gradient, old - new, so SGD at lr 1 adds the mean delta.
        update = (item_emb - emb, item_bias - bias)
        weight = positives / float(epochs)
        return (tff.learning.templates.ClientResult(update=update, update_weight=weight),
                collections.OrderedDict(loss=loss_sum / tf.maximum(count, 1.0), examples=weight))

    @tff.federated_computation
    def work_init() -> Any:
        return tff.federated_value((), tff.SERVER)

    @tff.federated_computation(tff.FederatedType((), tff.SERVER), tff.FederatedType(weights_type, tff.CLIENTS),
                               tff.FederatedType(data_type, tff.CLIENTS))
    def work_next(state: Any, weights: Any, data: Any) -> Any:
        result, metrics = tff.federated_map(client_update, (weights, data))
        measurements = collections.OrderedDict(
            loss=tff.federated_mean(metrics["loss"], weight=metrics["examples"]),
            examples=tff.federated_sum(metrics["examples"]))
        return tff.templates.MeasuredProcessOutput(state, result, tff.federated_zip(measurements))

    client_work = tff.learning.templates.ClientWorkProcess(work_init, work_next)
    update_type = weights_type.trainable
    factory = build_aggregator(dp)
    if dp is not None:
        factory = tff.aggregators.as_weighted_aggregator(factory)
    aggregator = factory.create(update_type, tff.TensorType(np.float32))
    finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
        build_server_optimizer(server_optimizer, server_lr), weights_type)
    return tff.learning.templates.compose_learning_process(
        initial_weights, tff.learning.templates.build_broadcast_process(weights_type), client_work, aggregator,
        finalizer)


def model_weights(process: Any, state: Any) -> list[np.ndarray]:
    """The global params of a process state, as numpy arrays in manifest order."""
    weights = process.get_model_weights(state)
    return [np.asarray(w, np.float32) for w in weights.trainable]


def with_params(process: Any, state: Any, params: Sequence[np.ndarray]) -> Any:
    """A state whose global model is ``params`` (e.g. an artifact's initial params)."""
    tff = import_tff()
    return process.set_model_weights(state, tff.learning.models.ModelWeights(
        trainable=tuple(np.asarray(p, np.float32) for p in params), non_trainable=()))
