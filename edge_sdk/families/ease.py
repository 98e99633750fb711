"""The device's half of federated EASE: its Gram contribution out, its scores in, its history kept.

Why on the device: the history (which items, when, how many, in which baskets) stays in the
app's storage.  Training sends one sparse body (``fedmark.contract.gram``: the 0/1 upper
triangle of x x' over at most ``cap`` of the device's items, within the catalogue the server
aggregates); scoring multiplies the local history by the published weights, B or the low-rank
factors (L, R), so a recommendation never needs a server round trip.

Not yet a registered ``TrainingProtocol``: there is no ONNX step to run (the contribution is a
counting rule, the model a closed-form solve on the server), and the round close that would
publish B is not wired in; see docs/SIMULATE.md.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from fedmark.contract.gram import gram_contribution, triu_size
from fedmark.contract.wire import encode_sparse_update

__all__ = ["history_vector", "contribution_body", "scores", "recommend"]


def history_vector(history: Sequence[str], item_index: Mapping[str, int], n: int) -> np.ndarray:
    """The device's 0/1 purchase vector over the aggregated catalogue (items outside it are ignored)."""
    x = np.zeros(n, np.float32)
    idx = [item_index[i] for i in history if i in item_index]
    x[idx] = 1.0
    return x


def contribution_body(history: Sequence[str], item_index: Mapping[str, int], n: int, *, cap: int,
                      seed: int) -> bytes:
    """The sparse upload body of this device's capped Gram contribution (seeded sample beyond ``cap``)."""
    items = sorted({item_index[i] for i in history if i in item_index})
    idx, val = gram_contribution(items, n, cap=cap, rng=np.random.default_rng(seed))
    return encode_sparse_update(idx, val, triu_size(n))


def scores(x: np.ndarray, weights: np.ndarray | tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Scores of every item: ``x @ B``, or ``(x @ L) @ R`` for published low-rank factors."""
    if isinstance(weights, tuple):
        left, right = weights
        return (np.asarray(x, np.float64) @ left) @ right
    return np.asarray(x, np.float64) @ weights


def recommend(x: np.ndarray, weights: np.ndarray | tuple[np.ndarray, np.ndarray], k: int) -> list[int]:
    """The top-k items not already in the history, best first."""
    s = np.array(scores(x, weights), dtype=np.float64)
    s[np.asarray(x) > 0] = -np.inf
    top = np.argpartition(-s, k)[:k]
    return top[np.argsort(-s[top], kind="stable")].tolist()
