"""Supervised tasks: the loss a family trains with and what its inference graph returns.

Why a separate module: the same three losses feed two very different
consumers — the exported ONNX train step (a masked mean over a padded batch,
written with ops every ONNX Runtime build has) and the TFF learning process
(a Keras loss over an unpadded batch).  Keeping both forms of one task side by
side is what lets the parity tests hold them to 1e-5 of each other.

* ``binary``: one logit per row, binary cross-entropy on logits; infer -> probability.
* ``regression``: one output per row on the *standardised* label, mean squared
  error; infer -> the prediction in label units (``z * std + mean``).
* ``multiclass``: one logit per class, softmax cross-entropy against one-hot
  labels; infer -> class probabilities.

TensorFlow is imported inside the functions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Task", "TASKS", "BINARY", "REGRESSION", "MULTICLASS", "get_task"]

BINARY = "binary"
REGRESSION = "regression"
MULTICLASS = "multiclass"


@dataclass(frozen=True)
class Task:
    """One supervised task: its name, loss (both forms) and inference output."""

    name: str
    output_name: str  # the inference graph's output ("prob", "value", "probs")

    def units(self, classes: int) -> int:
        """Width of the model's last layer."""
        return classes if self.name == MULTICLASS else 1

    def label_shape(self, batch: int, classes: int) -> list[int]:
        """Shape of ``y`` in the train step: [B] (binary, regression) or [B, C] one-hot (multiclass)."""
        return [batch, classes] if self.name == MULTICLASS else [batch]

    def masked_loss(self, z: Any, y: Any, mask: Any) -> Any:
        """Mean loss over the real rows of a padded batch: sum(mask * loss_row) / max(sum(mask), 1).

        ``z`` is the model output [B, units]; written with plain ops (no fused
        TF loss kernels) so tf2onnx maps every op and its gradient.
        """
        import tensorflow as tf

        if self.name == MULTICLASS:
            zmax = tf.stop_gradient(tf.reduce_max(z, axis=1, keepdims=True))
            lse = tf.math.log(tf.reduce_sum(tf.exp(z - zmax), axis=1)) + zmax[:, 0]
            per_row = lse - tf.reduce_sum(y * z, axis=1)
        else:
            z = tf.reshape(z, [-1])
            if self.name == BINARY:
                # relu(z) - z*y + log1p(exp(-|z|)): the overflow-free form sigmoid_cross_entropy_with_logits uses
                per_row = tf.nn.relu(z) - z * y + tf.math.log1p(tf.exp(-tf.abs(z)))
            else:
                per_row = tf.square(z - y)
        return tf.reduce_sum(per_row * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)

    def keras_loss(self) -> Any:
        """The same loss as a Keras loss (mean over the batch), for ``tff.learning`` and centralized fits."""
        import tensorflow as tf

        if self.name == BINARY:
            return tf.keras.losses.BinaryCrossentropy(from_logits=True)
        if self.name == REGRESSION:
            return tf.keras.losses.MeanSquaredError()
        return tf.keras.losses.CategoricalCrossentropy(from_logits=True)

    def infer(self, z: Any, label_mean: float = 0.0, label_std: float = 1.0, label_transform: str = "") -> Any:
        """The inference output from the model output ``z`` [N, units]."""
        import tensorflow as tf

        if self.name == BINARY:
            return tf.sigmoid(tf.reshape(z, [-1]))
        if self.name == REGRESSION:
            v = tf.reshape(z, [-1]) * label_std + label_mean
            if label_transform == "log1p":  # back to label units: sign(v)·(exp(|v|) - 1)
                v = tf.sign(v) * (tf.exp(tf.abs(v)) - 1.0)
            return v
        return tf.nn.softmax(z, axis=1)


TASKS: dict[str, Task] = {
    BINARY: Task(BINARY, "prob"),
    REGRESSION: Task(REGRESSION, "value"),
    MULTICLASS: Task(MULTICLASS, "probs"),
}


def get_task(name: str) -> Task:
    """The task called ``name``; a clear error for any other."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
