"""Protocol ``supervised-tabular/1``: records -> (x, y) -> one fused-epoch call per epoch.

The artifact ships ``train_epoch`` (params…, x [nb, B, width], y [nb, B(, C)],
mask [nb, B], lr) -> (params_new…, loss [nb]) and ``infer`` (params…, x [N,
width]) -> the task's output.  The manifest's feature schema says the task:

* binary: y 0/1 (or probabilities); infer -> probabilities [N].
* regression: y in label units; the graph takes it standardised with the
  schema's label mean/std; infer -> predictions in label units [N].
* multiclass: y = class index; the graph takes it one-hot; infer ->
  class probabilities [N, C].

Each epoch shuffles with ``seed``, pads the last batch with mask 0 and makes
one ``train_epoch`` call.  The Bank Marketing propensity model and any model
``fedmark export tabular|keras`` writes use this protocol.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from edge_sdk.families.base import TrainerError, TrainingProtocol, TrainResult, register
from fedmark.contract import PROTOCOL_SUPERVISED, FeatureSchema

__all__ = ["SupervisedTabular", "regression_metrics", "multiclass_metrics"]


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and n in label units (NaN when empty)."""
    y = np.asarray(y, np.float64).ravel()
    err = np.asarray(pred, np.float64).ravel() - y
    if y.size == 0:
        return {"mae": math.nan, "rmse": math.nan, "n": 0.0}
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt(np.mean(err ** 2))), "n": float(y.size)}


def multiclass_metrics(y: np.ndarray, probs: np.ndarray, k: int) -> dict[str, float]:
    """Top-1 accuracy, top-k accuracy (k capped at the number of classes), log loss and n."""
    idx = np.asarray(y, np.int64).ravel()
    p = np.asarray(probs, np.float64).reshape(idx.size, -1)
    k = max(1, min(int(k), p.shape[1]))
    if idx.size == 0:
        return {"accuracy": math.nan, f"top{k}_accuracy": math.nan, "loss": math.nan, "n": 0.0}
    order = np.argsort(-p, axis=1, kind="stable")
    top_k = (order[:, :k] == idx[:, None]).any(axis=1)
    loss = -np.log(np.clip(p[np.arange(idx.size), idx], 1e-7, 1.0))
    return {"accuracy": float((order[:, 0] == idx).mean()), f"top{k}_accuracy": float(top_k.mean()),
            "loss": float(loss.mean()), "n": float(idx.size)}


@register
class SupervisedTabular(TrainingProtocol):
    """Tabular records with a label (binary, regression, multiclass)."""

    name = PROTOCOL_SUPERVISED
    graphs = ("train_epoch", "infer")

    def __init__(self, manifest: Any, trainer: Any = None) -> None:
        super().__init__(manifest, trainer)
        self.schema: FeatureSchema = self.manifest.schema()
        self.task = self.schema.task
        # score() gives one number per record: a probability or a prediction, not a class distribution
        self.verbs = frozenset({"score"}) if self.task in ("binary", "regression") else frozenset()
        if self.task == "binary":  # federated validation sums per-label histograms of probabilities
            self.verbs |= {"validate"}

    @property
    def width(self) -> int:
        return int(self.manifest.features.get("width", self.manifest.params[0].shape[0]))

    @property
    def index_slots(self) -> list[tuple[int, int, str]]:
        """(slot in x, cardinality, column) of each "index" column: what an Embedding inside the graph looks up."""
        out, off = [], 0
        for c in self.schema.columns:
            if c.kind == "index":
                out.append((off, c.cardinality, c.name))
            off += c.width
        return out

    def check_tabular(self, x: Any, y: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate (x, y) for this artifact's graphs; returns float32 copies (y as the schema encodes it)."""
        xa = np.asarray(x, dtype=np.float32)
        if xa.ndim != 2 or xa.shape[1] != self.width:
            raise TrainerError(f"x has shape {xa.shape}, expected [N, {self.width}]: encode records with "
                               "manifest.schema().encode(records)")
        if not np.all(np.isfinite(xa)):
            raise TrainerError("x contains NaN or Inf; the schema encoder fills missing values, use it")
        for slot, card, name in self.index_slots:
            ids = xa[:, slot]
            if np.any((ids < 0) | (ids >= card) | (ids != np.floor(ids))):
                raise TrainerError(f"x slot {slot} (column {name!r}) feeds an Embedding and must hold category indices "
                                   f"0..{card - 1}; encode records with manifest.schema().encode(records)")
        if y is None:
            return xa, None
        ya = np.asarray(y, dtype=np.float32).reshape(-1)
        if ya.shape[0] != xa.shape[0]:
            raise TrainerError(f"x has {xa.shape[0]} rows but y has {ya.shape[0]} labels")
        if not np.all(np.isfinite(ya)):
            raise TrainerError("labels y contain NaN or Inf")
        if self.task == "binary" and np.any((ya < 0) | (ya > 1)):
            raise TrainerError("labels y must be 0/1 (or probabilities in [0, 1])")
        if self.task == "multiclass":
            c = len(self.schema.classes)
            if np.any((ya < 0) | (ya >= c) | (ya != np.round(ya))):
                raise TrainerError(f"multiclass labels y must be class indices 0..{c - 1} (the schema's classes "
                                   f"{list(self.schema.classes)})")
        return xa, ya

    def batches(self, x: np.ndarray, y: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stack rows in ``order`` into [num_batches, B, ...] with a 0/1 mask padding the last batch.

        ``y`` is taken as the graph takes it ([N] or one-hot [N, C]).
        """
        b = self.manifest.batch_size
        n = order.size
        nb = max(1, -(-n // b))
        xs = np.zeros((nb * b, x.shape[1]), np.float32)
        ys = np.zeros((nb * b,) + y.shape[1:], np.float32)
        ms = np.zeros(nb * b, np.float32)
        xs[:n], ys[:n], ms[:n] = x[order], y[order], 1.0
        return xs.reshape(nb, b, -1), ys.reshape((nb, b) + y.shape[1:]), ms.reshape(nb, b)

    def train(self, params: list[np.ndarray], data: Any, *, local: Mapping[str, np.ndarray] | None, epochs: int,
              lr: float, seed: int, shuffle: bool) -> TrainResult:
        try:
            x, y = data
        except (TypeError, ValueError) as exc:
            raise TrainerError("tabular data must be a pair (x [N, width], y [N])") from exc
        x, y = self.check_tabular(x, y)
        assert y is not None
        if x.shape[0] == 0:
            raise TrainerError("no training rows: a device needs at least one consented record")
        graph_y = self.schema.graph_labels(y)
        rng = np.random.default_rng(seed)
        names = [p.name for p in self.manifest.params]
        loss = float("nan")
        for _ in range(epochs):
            order = rng.permutation(x.shape[0]) if shuffle else np.arange(x.shape[0])
            xs, ys, ms = self.batches(x, graph_y, order)
            feeds = dict(zip(names, params))
            feeds.update(x=xs, y=ys, mask=ms, lr=np.array(lr, np.float32))
            out = self.trainer.run("train_epoch", feeds)
            params = [np.asarray(o, np.float32) for o in out[:len(names)]]
            losses = out[len(names)]
            counts = ms.sum(axis=1)
            loss = float((losses * counts).sum() / counts.sum())
        return TrainResult(params=params, local={}, loss=loss, num_examples=int(x.shape[0]))

    def predict(self, params: list[np.ndarray], data: Any, *, local: Mapping[str, np.ndarray] | None) -> np.ndarray:
        """Binary: probabilities [N]; regression: predictions [N]; multiclass: class probabilities [N, C]."""
        if data is None:
            raise TrainerError("predict needs x [N, width]")
        x, _ = self.check_tabular(data)
        feeds = dict(zip([p.name for p in self.manifest.params], params))
        feeds["x"] = x
        return np.asarray(self.trainer.run("infer", feeds)[0], np.float32)

    # ---------------------------------------------------------------- device side
    def training_input(self, rows: Sequence[Any], *, purposes: Sequence[str] | None, strict: bool,
                       consent_field: str) -> tuple[Any, Any]:
        from edge_sdk import data as data_mod

        x, y, _, report = data_mod.prepare_tabular(rows, self.manifest, with_label=True, strict=strict,
                                                   consent_field=consent_field, purposes=purposes)
        return (x, y), report

    def evaluate(self, store: Any, model: str, rows: Sequence[Any], *, k: int, consent_field: str,
                 purposes: Sequence[str] | None) -> Any:
        from edge_sdk import data as data_mod
        from edge_sdk.metrics import propensity_metrics
        from edge_sdk.reports import EvalReport
        from edge_sdk.runtime import converted

        x, y, _, report = data_mod.prepare_tabular(rows, self.manifest, with_label=True, consent_field=consent_field,
                                                   purposes=purposes)
        with converted("evaluation"):
            out = np.asarray(self.trainer.predict(self.trainer.initial_params(), x))
        assert y is not None
        if self.task == "regression":
            return EvalReport(model, self.manifest.version, regression_metrics(y, out), report)
        if self.task == "multiclass":
            return EvalReport(model, self.manifest.version, multiclass_metrics(y, out, k), report)
        metrics, histogram = propensity_metrics(y, out.ravel())
        return EvalReport(model, self.manifest.version, metrics, report, histogram)
