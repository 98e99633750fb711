"""Protocol ``ease-gram/1``: the device's half of federated EASE - its Gram contribution out, its scores in.

Why on the device: the history (which items, when, how many, in which baskets) stays in the app's
storage.  "Training" sends one sparse body (``fedmark.contract.gram``: the 0/1 upper triangle of
x x' over at most ``cap`` of the device's items in the catalogue, a seeded sample beyond it);
the server sums the bodies, zeroes pairs seen on fewer than k devices and solves EASE into the
published low-rank factors (L, R).  Scoring runs the artifact's ``infer`` graph on the local
history, ``(x L) R``, so a recommendation needs no server round trip.

What the server learns is stated in ``fedmark.contract.gram``: one body shows which catalogue
items (up to ``cap``) this device bought, not when, how many or with what.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from edge_sdk.families.base import TrainerError, TrainingProtocol, TrainResult, register
from edge_sdk.families.mf import MFReconstruction
from fedmark.contract import l2_norm
from fedmark.contract.gram import PROTOCOL_EASE, gram_contribution, gram_space, history_seed
from fedmark.contract.wire import encode_sparse_update

__all__ = ["EaseGram", "history_vector", "contribution_body", "scores", "recommend"]


def history_vector(history: Sequence[str], item_index: Mapping[str, int], n: int) -> np.ndarray:
    """The device's 0/1 purchase vector over the aggregated catalogue (items outside it are ignored)."""
    x = np.zeros(n, np.float32)
    idx = [item_index[i] for i in history if i in item_index]
    x[idx] = 1.0
    return x


def contribution_body(history: Sequence[str], item_index: Mapping[str, int], n: int, *, cap: int,
                      seed: int | None = None) -> bytes:
    """The sparse upload body of this device's capped Gram contribution (beyond ``cap``: a sample seeded
    by ``seed``, default the history's own seed, as the protocol sends it)."""
    items = sorted({item_index[i] for i in history if i in item_index})
    rng = np.random.default_rng(history_seed(items) if seed is None else seed)
    idx, val = gram_contribution(items, n, cap=cap, rng=rng)
    return encode_sparse_update(idx, val, n * (n + 1) // 2)


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


@register
class EaseGram(TrainingProtocol):
    """Item-item weights global (as low-rank factors), the history local; training is counting."""

    name = PROTOCOL_EASE
    graphs = ("infer",)
    verbs = frozenset({"recommend"})

    def __init__(self, manifest: Any, trainer: Any = None) -> None:
        super().__init__(manifest, trainer)
        space = gram_space(manifest.hyperparams)
        if space is None:
            raise TrainerError(f"artifact {manifest.model!r} (protocol {PROTOCOL_EASE}) has no hyperparams.gram")
        self.space = space

    def _items(self, data: Any) -> np.ndarray:
        raw = np.asarray(data)
        if raw.ndim != 1 or raw.size == 0 or not np.issubdtype(raw.dtype, np.integer):
            raise TrainerError("EASE data must be a non-empty 1-D integer array of catalogue item indices")
        if raw.min() < 0 or raw.max() >= self.space.items:
            raise TrainerError(f"item indices must be in [0, {self.space.items})")
        return np.unique(raw.astype(np.int64))

    def train(self, params: list[np.ndarray], data: Any, *, local: Mapping[str, np.ndarray] | None, epochs: int,
              lr: float, seed: int, shuffle: bool) -> TrainResult:
        """Nothing to fit on the device: the parameters are unchanged; the update is the count (prepare_update)."""
        return TrainResult(params=list(params), local={}, loss=0.0, num_examples=int(self._items(data).size))

    def prepare_update(self, data: Any, *, seed: int) -> Any:
        """The upload: this device's capped Gram contribution as a sparse body (weight 1: one device, one count).
        The cap's sample is seeded by the history itself (``history_seed``), not by ``seed``."""
        from edge_sdk.update import PreparedUpdate

        items = self._items(data)
        idx, val = gram_contribution(items, self.space.items, cap=self.space.cap,
                                     rng=np.random.default_rng(history_seed(items)))
        body = encode_sparse_update(idx, val, self.space.num_values)
        norm = l2_norm(val)
        return PreparedUpdate(val, body, "f32", norm, norm <= self.space.clip_norm, self.space.clip_norm, 1)

    def predict(self, params: list[np.ndarray], data: Any, *, local: Mapping[str, np.ndarray] | None) -> np.ndarray:
        """A score for every catalogue item [items], from the history ``data`` (item indices)."""
        x = np.zeros((1, self.space.items), np.float32)
        x[0, self._items(data)] = 1.0
        left, right = self.trainer.check_params(params)
        out = self.trainer.run("infer", {"x": x, "left": left, "right": right})
        return np.asarray(out[0], np.float32).ravel()

    training_input = MFReconstruction.training_input  # the same interaction records, mapped to the catalogue
