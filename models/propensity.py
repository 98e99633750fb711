"""Propensity (conversion) scoring on Bank Marketing: a recipe on the family API.

The model is a small Keras MLP, width -> hidden -> 1 logit with ReLU
(``hidden=0`` gives logistic regression), trained with the binary
cross-entropy (``models.tasks``).  It is defined once, by :func:`family`; the
exported train step, the inference graph, the TFF process and the centralized
baseline are all derived from that definition by ``models.family``.  What is
specific to this recipe: the Bank Marketing columns (``duration`` dropped: it
is known only after the call), the parameter names ``w1, b1, w2, b2`` (``w, b``
for logistic regression) and a numpy Glorot initialisation seeded like the
first artifacts were, so earlier artifacts keep their bytes.

The functions below the recipe keep the signatures the tests, benchmarks and
demo call (``make_train_step(width, hidden, batch)`` and so on).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from fedmark.contract import Column, FeatureSchema, ParamSpec
from models import data as data_mod
from models.family import Family, GraphFunction, mlp_builder

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


# --------------------------------------------------------------------------- the recipe
def _layer_names(hidden: int) -> list[str]:
    return ["hidden", "logit"] if hidden > 0 else ["logit"]


def param_names(hidden: int = DEFAULT_HIDDEN) -> list[str]:
    return ["w1", "b1", "w2", "b2"] if hidden > 0 else ["w", "b"]


def _schema_of_width(width: int) -> FeatureSchema:
    # Graph-only uses (parity tests, benchmarks) know the width, not the fitted schema.
    return FeatureSchema((Column("x", "hash", buckets=width),), label=data_mod.BANK_LABEL, positive=data_mod.BANK_POSITIVE)


def family(schema: FeatureSchema | int, hidden: int = DEFAULT_HIDDEN, *, batch_size: int = DEFAULT_BATCH,
           learning_rate: float = DEFAULT_LR, epochs: int = DEFAULT_EPOCHS, name: str = "propensity") -> Family:
    """The propensity family for a fitted schema (or just an input width)."""
    if hidden < 0:
        raise ValueError("hidden must be >= 0 (0 = logistic regression)")
    if isinstance(schema, int):
        schema = _schema_of_width(schema)
    width = schema.width
    return Family(name=name, build_model=mlp_builder(width, 1, hidden, names=_layer_names(hidden)), task="binary",
                  schema=schema, batch_size=batch_size, learning_rate=learning_rate, epochs=epochs,
                  param_names=param_names(hidden), init=lambda seed: init_params(width, hidden, seed),
                  hyperparams={"hidden": hidden})


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


# --------------------------------------------------------------------------- derived graphs
def make_train_step(width: int, hidden: int = DEFAULT_HIDDEN, batch_size: int = DEFAULT_BATCH) -> GraphFunction:
    """(params..., x, y, mask, lr) -> (new params..., loss): the family's exported SGD step."""
    return family(width, hidden, batch_size=batch_size).make_train_step()


def make_predict(width: int, hidden: int = DEFAULT_HIDDEN) -> GraphFunction:
    """(params..., x [N, width]) -> probabilities [N]."""
    return family(width, hidden).make_predict()


def step_io_names(width: int, hidden: int = DEFAULT_HIDDEN) -> tuple[list[str], list[str]]:
    """ONNX train-step input and output names (see docs/ARTIFACT.md)."""
    names = param_names(hidden)
    return names + ["x", "y", "mask", "lr"], [f"{n}_new" for n in names] + ["loss"]


def build_keras_model(width: int, hidden: int = DEFAULT_HIDDEN, params: Sequence[np.ndarray] | None = None) -> Any:
    """The family's Keras model (logits out) with ``params`` in manifest order (benchmarks' ``model.fit``)."""
    return family(width, hidden).keras_model(params if params is not None else init_params(width, hidden))


def train_centralized(x: np.ndarray, y: np.ndarray, *, hidden: int = DEFAULT_HIDDEN, epochs: int = 5,
                      lr: float = DEFAULT_LR, batch_size: int = DEFAULT_BATCH, seed: int = 0,
                      params: Sequence[np.ndarray] | None = None, verbose: int = 0) -> list[np.ndarray]:
    """Centralized baseline: Keras ``fit`` with plain SGD on all the data; returns params.

    The reference point the federated runs are judged against (what the same
    model reaches when the data *is* pooled).
    """
    fam = family(x.shape[1], hidden, batch_size=batch_size, learning_rate=lr)
    return fam.train_centralized(x, y, epochs=epochs, lr=lr, seed=seed,
                                 params=params if params is not None else init_params(x.shape[1], hidden, seed))
