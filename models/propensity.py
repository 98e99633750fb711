"""Propensity (conversion) scoring on Bank Marketing: schema, model, TF train step.

The model is a small MLP, width -> hidden -> 1 with ReLU (``hidden=0`` gives
logistic regression).  The train step is written as a pure function of its
parameters — not of Keras variables — because it is what gets exported: the
ONNX graph takes the parameters as inputs and returns the new ones, so the
device holds no hidden state and the server can diff parameters.

The loss is the binary cross-entropy on logits, averaged over the *real* rows
of a padded batch: ``sum(mask * bce) / max(sum(mask), 1)``.  Padding the last
batch (mask 0) keeps every graph shape static, which tf2onnx needs.

TensorFlow is imported inside functions so ``import models.propensity`` is cheap.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from fedmark.contract import Column, FeatureSchema, ParamSpec
from models import data as data_mod

DEFAULT_HIDDEN = 32
DEFAULT_BATCH = 64
DEFAULT_LR = 0.1
DEFAULT_EPOCHS = 1


# --------------------------------------------------------------------------- schema
def build_schema(train_records: Sequence[Mapping[str, Any]], *,
                 numeric: Sequence[str] = data_mod.BANK_NUMERIC,
                 categorical: Sequence[str] = data_mod.BANK_CATEGORICAL,
                 label: str = data_mod.BANK_LABEL, positive: str = data_mod.BANK_POSITIVE) -> FeatureSchema:
    """Encoding rules fitted on the training split only (no test leakage).

    Numerics are standardised with the training mean/std; categoricals are
    one-hot over the values seen in training plus an unknown slot, so a device
    with a new job title still encodes.  ``duration`` is never a column.
    """
    if not train_records:
        raise ValueError("cannot build a feature schema from zero training records")
    cols: list[Column] = []
    for name in numeric:
        if name in data_mod.BANK_DROPPED:
            raise ValueError(f"column {name!r} leaks the outcome (known only after the call); drop it")
        vals = np.array([float(r[name]) for r in train_records], dtype=np.float64)
        std = float(vals.std())
        cols.append(Column(name, "numeric", mean=float(vals.mean()), std=std if std > 0 else 1.0))
    for name in categorical:
        vocab = tuple(sorted({str(r[name]) for r in train_records}))
        cols.append(Column(name, "onehot", vocabulary=vocab))
    return FeatureSchema(tuple(cols), label=label, positive=positive)


def encode(schema: FeatureSchema, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Records -> (x float32 [N, width], y float32 [N]) using the shared contract encoder."""
    x, y, _ = schema.encode(records)
    assert y is not None
    return x, y


# --------------------------------------------------------------------------- parameters
def param_specs(width: int, hidden: int = DEFAULT_HIDDEN) -> tuple[ParamSpec, ...]:
    """Manifest order of the global parameters (also the Keras weight order)."""
    if hidden <= 0:
        return (ParamSpec("w", (width, 1)), ParamSpec("b", (1,)))
    return (ParamSpec("w1", (width, hidden)), ParamSpec("b1", (hidden,)),
            ParamSpec("w2", (hidden, 1)), ParamSpec("b2", (1,)))


def init_params(width: int, hidden: int = DEFAULT_HIDDEN, seed: int = 0) -> list[np.ndarray]:
    """Glorot-uniform kernels and zero biases (what Keras would draw), seeded."""
    rng = np.random.default_rng(seed)
    out = []
    for spec in param_specs(width, hidden):
        if len(spec.shape) == 2:
            limit = np.sqrt(6.0 / (spec.shape[0] + spec.shape[1]))
            out.append(rng.uniform(-limit, limit, spec.shape).astype(np.float32))
        else:
            out.append(np.zeros(spec.shape, np.float32))
    return out


# --------------------------------------------------------------------------- TF maths
def forward(params: Sequence[Any], x: Any) -> Any:
    """Logits [N] for inputs x [N, width]."""
    import tensorflow as tf

    if len(params) == 2:
        w, b = params
        return tf.reshape(tf.matmul(x, w) + b, [-1])
    w1, b1, w2, b2 = params
    h = tf.nn.relu(tf.matmul(x, w1) + b1)
    return tf.reshape(tf.matmul(h, w2) + b2, [-1])


def masked_bce(logits: Any, y: Any, mask: Any) -> Any:
    """Mean BCE over the real rows: sum(mask*bce)/max(sum(mask),1).

    Written as relu(z) - z*y + log1p(exp(-|z|)), the overflow-free form (the
    same one tf.nn.sigmoid_cross_entropy_with_logits uses).
    """
    import tensorflow as tf

    per_row = tf.nn.relu(logits) - logits * y + tf.math.log1p(tf.exp(-tf.abs(logits)))
    return tf.reduce_sum(per_row * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def make_train_step(width: int, hidden: int = DEFAULT_HIDDEN, batch_size: int = DEFAULT_BATCH) -> Any:
    """A ``tf.function`` (params..., x, y, mask, lr) -> (new params..., loss), static shapes.

    One plain-SGD step: params - lr * grad.  This exact function is what the
    ONNX train graph is converted from, and what the parity tests compare with.
    """
    import tensorflow as tf

    specs = param_specs(width, hidden)
    sig = [tf.TensorSpec(s.shape, tf.float32, name=s.name) for s in specs] + [
        tf.TensorSpec([batch_size, width], tf.float32, name="x"),
        tf.TensorSpec([batch_size], tf.float32, name="y"),
        tf.TensorSpec([batch_size], tf.float32, name="mask"),
        tf.TensorSpec([], tf.float32, name="lr"),
    ]
    n = len(specs)

    @tf.function(input_signature=sig)
    def train_step(*args: Any) -> Any:
        params = list(args[:n])
        x, y, mask, lr = args[n:]
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = masked_bce(forward(params, x), y, mask)
        grads = tape.gradient(loss, params)
        return tuple(p - lr * g for p, g in zip(params, grads)) + (loss,)

    return train_step


def make_predict(width: int, hidden: int = DEFAULT_HIDDEN) -> Any:
    """A ``tf.function`` (params..., x [N, width]) -> probabilities [N]; N is dynamic."""
    import tensorflow as tf

    specs = param_specs(width, hidden)
    sig = [tf.TensorSpec(s.shape, tf.float32, name=s.name) for s in specs] + [
        tf.TensorSpec([None, width], tf.float32, name="x")]
    n = len(specs)

    @tf.function(input_signature=sig)
    def predict(*args: Any) -> Any:
        return tf.sigmoid(forward(list(args[:n]), args[n]))

    return predict


def step_io_names(width: int, hidden: int = DEFAULT_HIDDEN) -> tuple[list[str], list[str]]:
    """ONNX train-step input and output names (see docs/ARTIFACT.md)."""
    names = [s.name for s in param_specs(width, hidden)]
    return names + ["x", "y", "mask", "lr"], [f"{n}_new" for n in names] + ["loss"]


# --------------------------------------------------------------------------- Keras twin
def build_keras_model(width: int, hidden: int = DEFAULT_HIDDEN, params: Sequence[np.ndarray] | None = None) -> Any:
    """The same network as Keras layers (logits out), weights in manifest order.

    Used for the centralized baseline, for ``tff.learning`` (which wraps Keras
    models) and by the benchmark's ``model.fit`` comparison.
    """
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(width,), name="x")
    if hidden > 0:
        h = tf.keras.layers.Dense(hidden, activation="relu", name="hidden")(inputs)
        out = tf.keras.layers.Dense(1, name="logit")(h)
    else:
        out = tf.keras.layers.Dense(1, name="logit")(inputs)
    model = tf.keras.Model(inputs, out)
    model.set_weights(list(params) if params is not None else init_params(width, hidden))
    return model


def train_centralized(x: np.ndarray, y: np.ndarray, *, hidden: int = DEFAULT_HIDDEN, epochs: int = 5,
                      lr: float = DEFAULT_LR, batch_size: int = DEFAULT_BATCH, seed: int = 0,
                      params: Sequence[np.ndarray] | None = None, verbose: int = 0) -> list[np.ndarray]:
    """Centralized baseline: Keras ``fit`` with plain SGD on all the data; returns params.

    The reference point the federated runs are judged against (what the same
    model reaches when the data *is* pooled).
    """
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    model = build_keras_model(x.shape[1], hidden, params if params is not None else init_params(x.shape[1], hidden, seed))
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=lr),
                  loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)
    return [np.asarray(w, np.float32) for w in model.get_weights()]


def predict_numpy(params: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Probabilities with numpy only (evaluation without a session)."""
    if len(params) == 2:
        z = x @ params[0][:, 0] + params[1][0]
    else:
        h = np.maximum(x @ params[0] + params[1], 0.0)
        z = h @ params[2][:, 0] + params[3][0]
    return 1.0 / (1.0 + np.exp(-z))
