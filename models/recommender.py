"""Implicit-feedback matrix factorisation for Online Retail, Federated Reconstruction style.

Global parameters (travel to the server): ``item_emb`` [n_items, d] and
``item_bias`` [n_items].  Local parameter (never leaves the device):
``user_emb`` [d].  Following Singhal et al. 2021 (Federated Reconstruction),
each round a device first *reconstructs* its user vector with the items frozen,
then trains the item rows with the user vector frozen; only item deltas are
uploaded, so no per-user state is ever stored on the server.

Sparse fast path: the graphs work on a gathered *block* of K rows (the user's
positives and sampled negatives, padded with mask 0).  The device gathers the
rows, runs the graph, and scatters the new rows back, so a step costs O(K·d)
instead of rewriting the whole [n_items, d] table.  ``make_dense_train_step``
is the full-table alternative kept for the benchmark.

Loss per row: BCE on the logit dot(u, v_i) + b_i, label 1 for positives and 0
for negatives.  Reconstruction minimises the masked *mean* (a well-scaled
problem in d unknowns whatever the block fill).  The item step follows the
gradient of the masked *sum*: each row's update depends only on its own term,
so the step a row takes does not shrink when a block holds more rows.  Both
graphs report the masked mean as ``loss``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fedmark.contract import PROTOCOL_MF, ParamSpec

DEFAULT_DIM = 32
DEFAULT_BLOCK = 256
DEFAULT_LR = 0.5
DEFAULT_EPOCHS = 1
DEFAULT_NEGATIVES = 4
DEFAULT_RECON_STEPS = 20
DEFAULT_RECON_LR = 1.0
INIT_SCALE = 0.1


def param_specs(n_items: int, dim: int = DEFAULT_DIM) -> tuple[ParamSpec, ...]:
    return (ParamSpec("item_emb", (n_items, dim)), ParamSpec("item_bias", (n_items,)))


def local_specs(dim: int = DEFAULT_DIM) -> tuple[ParamSpec, ...]:
    return (ParamSpec("user_emb", (dim,)),)


def init_params(n_items: int, dim: int = DEFAULT_DIM, seed: int = 0) -> list[np.ndarray]:
    """Item vectors ~ N(0, 0.1²), biases 0."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((n_items, dim)) * INIT_SCALE).astype(np.float32), np.zeros(n_items, np.float32)]


def item_popularity(positives: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Number of users who have each item (for a popularity baseline)."""
    counts = np.zeros(n_items, np.float64)
    for p in positives:
        counts[np.asarray(p, np.int64)] += 1
    return counts


# --------------------------------------------------------------------------- TF maths
def _block_loss(u: Any, rows: Any, bias: Any, labels: Any, mask: Any) -> tuple[Any, Any]:
    """(masked sum of BCE, masked mean of BCE) for a block."""
    import tensorflow as tf

    logits = tf.linalg.matvec(rows, u) + bias
    per_row = tf.nn.relu(logits) - logits * labels + tf.math.log1p(tf.exp(-tf.abs(logits)))
    total = tf.reduce_sum(per_row * mask)
    return total, total / tf.maximum(tf.reduce_sum(mask), 1.0)


def _block_signature(dim: int, block: int) -> list[Any]:
    import tensorflow as tf

    return [
        tf.TensorSpec([dim], tf.float32, name="user_emb"),
        tf.TensorSpec([block, dim], tf.float32, name="rows"),
        tf.TensorSpec([block], tf.float32, name="row_bias"),
        tf.TensorSpec([block], tf.float32, name="labels"),
        tf.TensorSpec([block], tf.float32, name="mask"),
        tf.TensorSpec([], tf.float32, name="lr"),
    ]


BLOCK_INPUTS = ["user_emb", "rows", "row_bias", "labels", "mask", "lr"]
RECON_OUTPUTS = ["user_emb_new", "loss"]
TRAIN_OUTPUTS = ["rows_new", "row_bias_new", "loss"]


def make_recon_step(dim: int = DEFAULT_DIM, block: int = DEFAULT_BLOCK) -> Any:
    """``tf.function`` (user_emb, rows, row_bias, labels, mask, lr) -> (user_emb_new, loss).

    One SGD step on the user vector with the item rows frozen (reconstruction).
    """
    import tensorflow as tf

    @tf.function(input_signature=_block_signature(dim, block))
    def recon_step(user_emb: Any, rows: Any, row_bias: Any, labels: Any, mask: Any, lr: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(user_emb)
            _total, mean = _block_loss(user_emb, rows, row_bias, labels, mask)
        return user_emb - lr * tape.gradient(mean, user_emb), mean

    return recon_step


def make_train_step(dim: int = DEFAULT_DIM, block: int = DEFAULT_BLOCK) -> Any:
    """``tf.function`` (user_emb, rows, row_bias, labels, mask, lr) -> (rows_new, row_bias_new, loss).

    One SGD step on the gathered item rows and biases with the user vector frozen.
    """
    import tensorflow as tf

    @tf.function(input_signature=_block_signature(dim, block))
    def train_step(user_emb: Any, rows: Any, row_bias: Any, labels: Any, mask: Any, lr: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch([rows, row_bias])
            total, mean = _block_loss(user_emb, rows, row_bias, labels, mask)
        g_rows, g_bias = tape.gradient(total, [rows, row_bias])
        return rows - lr * g_rows, row_bias - lr * g_bias, mean

    return train_step


def make_dense_train_step(n_items: int, dim: int = DEFAULT_DIM, block: int = DEFAULT_BLOCK) -> Any:
    """The full-table alternative: (item_emb, item_bias, user_emb, idx, labels, mask, lr) -> new tables, loss.

    Same maths as ``make_train_step`` but the gather happens in the graph, so
    the gradient is scattered into, and the update rewrites, the whole table.
    Kept only to measure what the sparse block path saves.
    """
    import tensorflow as tf

    sig = [tf.TensorSpec([n_items, dim], tf.float32, name="item_emb"),
           tf.TensorSpec([n_items], tf.float32, name="item_bias"),
           tf.TensorSpec([dim], tf.float32, name="user_emb"),
           tf.TensorSpec([block], tf.int64, name="idx"),
           tf.TensorSpec([block], tf.float32, name="labels"),
           tf.TensorSpec([block], tf.float32, name="mask"),
           tf.TensorSpec([], tf.float32, name="lr")]

    @tf.function(input_signature=sig)
    def dense_step(item_emb: Any, item_bias: Any, user_emb: Any, idx: Any, labels: Any, mask: Any, lr: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch([item_emb, item_bias])
            rows = tf.gather(item_emb, idx)
            bias = tf.gather(item_bias, idx)
            total, mean = _block_loss(user_emb, rows, bias, labels, mask)
        g_emb, g_bias = tape.gradient(total, [item_emb, item_bias])
        return (item_emb - lr * tf.convert_to_tensor(g_emb), item_bias - lr * tf.convert_to_tensor(g_bias), mean)

    return dense_step


def make_scores(n_items: int, dim: int = DEFAULT_DIM) -> Any:
    """``tf.function`` (user_emb, item_emb, item_bias) -> scores [n_items] (logits)."""
    import tensorflow as tf

    sig = [tf.TensorSpec([dim], tf.float32, name="user_emb"),
           tf.TensorSpec([n_items, dim], tf.float32, name="item_emb"),
           tf.TensorSpec([n_items], tf.float32, name="item_bias")]

    @tf.function(input_signature=sig)
    def scores(user_emb: Any, item_emb: Any, item_bias: Any) -> Any:
        return tf.linalg.matvec(item_emb, user_emb) + item_bias

    return scores


# --------------------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class ReconstructionFamily:
    """The recommender as a family (protocol ``mf-reconstruction/1``): what ``models.export_family`` exports
    and ``models.federated.build_process`` federates, from the one set of ``tf.function`` steps above.

    Not a Keras model: Federated Reconstruction splits the parameters into a
    global item table and a device-only user vector, and a round is two
    different steps, which the supervised ``models.family.Family`` (one
    model, one loss, one step) does not express.
    """

    items: tuple[str, ...]
    dim: int = DEFAULT_DIM
    block: int = DEFAULT_BLOCK
    learning_rate: float = DEFAULT_LR
    epochs: int = DEFAULT_EPOCHS
    negatives: int = DEFAULT_NEGATIVES
    recon_steps: int = DEFAULT_RECON_STEPS
    recon_lr: float = DEFAULT_RECON_LR
    name: str = "recommender"
    protocol: str = PROTOCOL_MF

    @property
    def batch_size(self) -> int:
        return self.block

    @property
    def n_items(self) -> int:
        return len(self.items)

    def param_specs(self) -> tuple[ParamSpec, ...]:
        return param_specs(self.n_items, self.dim)

    def initial_params(self, seed: int = 0) -> list[np.ndarray]:
        return init_params(self.n_items, self.dim, seed)

    def onnx_graphs(self) -> dict[str, Any]:
        """recon_step/recon_epoch (user vector, items frozen), train_step/train_epoch (item rows), infer (scores)."""
        from models import onnx_export as oe

        recon_step = oe.convert(make_recon_step(self.dim, self.block), BLOCK_INPUTS, RECON_OUTPUTS)
        train_step = oe.convert(make_train_step(self.dim, self.block), BLOCK_INPUTS, TRAIN_OUTPUTS)
        sliced = ("rows", "row_bias", "labels", "mask")
        recon_epoch = oe.fuse_epoch(recon_step, oe.FuseSpec(carried=(("user_emb", "user_emb_new"),), sliced=sliced,
                                                            constant=("lr",), stacked=("loss",)),
                                    graph_name="recon_epoch")
        train_epoch = oe.fuse_epoch(train_step, oe.FuseSpec(carried=(), sliced=sliced, constant=("user_emb", "lr"),
                                                            stacked=("rows_new", "row_bias_new", "loss")),
                                    graph_name="train_epoch")
        infer = oe.convert(make_scores(self.n_items, self.dim), ["user_emb", "item_emb", "item_bias"], ["scores"])
        return {"recon_step": recon_step, "recon_epoch": recon_epoch, "train_step": train_step,
                "train_epoch": train_epoch, "infer": infer}

    def manifest_fields(self) -> dict[str, Any]:
        return {"features": {"kind": "interactions", "user_column": "CustomerID", "item_column": "StockCode",
                             "items": list(self.items)},
                "local_params": local_specs(self.dim),
                "hyperparams": {"learning_rate": self.learning_rate, "epochs": self.epochs,
                                "negatives": self.negatives, "recon_steps": self.recon_steps,
                                "recon_lr": self.recon_lr, "dim": self.dim, "init_scale": INIT_SCALE}}


def family(items: Sequence[str], **opts: Any) -> ReconstructionFamily:
    """The Online Retail recommender recipe over ``items`` (stock codes, index = position)."""
    return ReconstructionFamily(tuple(str(i) for i in items), **opts)


# --------------------------------------------------------------------------- evaluation
def hit_rate_at_k(item_emb: np.ndarray, item_bias: np.ndarray, users: np.ndarray,
                  train: Sequence[np.ndarray], test: Sequence[np.ndarray], k: int = 10) -> float:
    """Share of held-out items ranked in a user's top k (already-bought items excluded).

    ``users`` [U, d] are reconstructed user vectors aligned with train/test.
    """
    hits = total = 0
    for u, seen, held in zip(users, train, test):
        held = np.setdiff1d(np.asarray(held, np.int64), seen)
        if held.size == 0:
            continue
        s = item_emb @ u + item_bias
        s[np.asarray(seen, np.int64)] = -np.inf
        top = np.argpartition(-s, k)[:k]
        hits += np.isin(held, top).sum()
        total += held.size
    return float(hits / total) if total else 0.0
