"""One device's contribution to an item-item Gram sum: the statistic a federated EASE model is solved from.

Why a Gram sum: EASE (Steck 2019) needs only G = X'X = sum over customers of x_u x_u', where x_u is
a customer's 0/1 purchase vector.  Each device can compute its own x_u x_u' and the server's
aggregation sums them, so the purchase history itself (quantities, dates, prices, baskets) never
leaves the device.  What does leave is honest to state: without secure aggregation or DP noise,
one device's contribution shows the server *which* catalogue items that device bought (its
diagonal), and the k-threshold applies only to what is published.

Layout (device and server must agree, so it lives here): the symmetric Gram over ``n`` items is
sent as its upper triangle, row-major, ``n (n + 1) / 2`` values; entry (i, j), i <= j, sits at
``i n - i (i - 1) / 2 + (j - i)``.  A device sends only the entries it touches (a sparse body,
:func:`fedmark.contract.wire.encode_sparse_update`): m items give m (m + 1) / 2 ones.

Clipping: a device with more than ``cap`` items contributes a seeded sample of ``cap`` of them,
so every contribution is a 0/1 vector of norm <= :func:`clip_norm_for` (cap), and the server's
re-clip to that norm never changes an honest one.  Sampling (instead of scaling the ones down)
keeps every summed entry an integer count of devices, which is what the k-threshold reads.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from fedmark.contract.errors import ManifestError

#: The training protocol of Gram-trained models (federated EASE): devices send counts, the server solves.
PROTOCOL_EASE = "ease-gram/1"

__all__ = ["PROTOCOL_EASE", "triu_size", "triu_index", "capped_items", "history_seed", "gram_contribution",
           "check_contribution", "gram_from_triu", "clip_norm_for", "GramSpace", "gram_space"]


def triu_size(n: int) -> int:
    """Values in the upper triangle (diagonal included) of an n x n symmetric matrix."""
    return n * (n + 1) // 2


def triu_index(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """Flat position of entries (i, j), i <= j, in the row-major upper triangle."""
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    if np.any(i > j) or np.any(i < 0) or np.any(j >= n):
        raise ValueError(f"entries must satisfy 0 <= i <= j < {n}")
    return i * n - i * (i - 1) // 2 + (j - i)


def capped_items(items: Sequence[int], cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """The sorted distinct items a device contributes: all of them, or a sample of ``cap``."""
    uniq = np.unique(np.asarray(items, np.int64))
    if cap is not None and uniq.size > cap:
        uniq = np.sort(rng.choice(uniq, cap, replace=False))
    return uniq


def history_seed(items: Sequence[int]) -> int:
    """The cap's sampling seed, a function of the (distinct) items alone: the same history always sends
    the same sample, so a device that retries sends the same body and a central run can rebuild the
    exact sum.  (Sampling here bounds a contribution; it is not a privacy mechanism.)"""
    return zlib.crc32(np.unique(np.asarray(items, np.int64)).astype("<i8").tobytes())


def gram_contribution(items: Sequence[int], n: int, *, cap: int | None = None,
                      rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sorted flat indices, float32 ones) of x x' over the device's (capped) items, upper triangle."""
    chosen = capped_items(items, cap, rng or np.random.default_rng())
    if chosen.size and (chosen[0] < 0 or chosen[-1] >= n):
        raise ValueError(f"item indices must lie in [0, {n})")
    ii, jj = np.triu_indices(chosen.size)
    idx = triu_index(chosen[ii], chosen[jj], n)  # chosen is sorted, so idx comes out sorted too
    return idx.astype(np.uint32 if triu_size(n) < 2 ** 32 else np.int64), np.ones(idx.size, np.float32)


def check_contribution(indices: np.ndarray, values: np.ndarray, n: int) -> int:
    """Raise ValueError unless (indices, values) is an honest contribution: ones on exactly every pair
    (i <= j) of one item set.  Returns the set's size.

    Why the server checks it: a body that put 70 on one pair (still inside the clip norm) would lift a
    pair seen by one customer over the k-threshold by itself; with every body a full 0/1 triangle,
    each published count is a number of devices (of Sybils too: counts need attestation to mean people).
    """
    idx = np.asarray(indices, np.int64)
    if idx.size and not np.all(np.asarray(values) == 1.0):
        raise ValueError("a Gram contribution's values are all 1 (one co-purchase each)")
    rows = np.arange(n, dtype=np.int64)
    offsets = rows * n - rows * (rows - 1) // 2  # where each row of the triangle starts (triu_index(i, i))
    i = np.searchsorted(offsets, idx, side="right") - 1
    j = idx - offsets[i] + i
    items = i[i == j]
    m = items.size
    if idx.size != triu_size(m) or not (np.isin(i, items).all() and np.isin(j, items).all()):
        raise ValueError(f"a Gram contribution holds every pair of one item set: {m} items need "
                         f"{triu_size(m)} pairs, the body has {idx.size} that do not match")
    return m


def gram_from_triu(vec: np.ndarray, n: int) -> np.ndarray:
    """The dense symmetric n x n matrix (float64) from its flat upper triangle."""
    v = np.asarray(vec, np.float64).ravel()
    if v.size != triu_size(n):
        raise ValueError(f"an upper triangle of {n} items has {triu_size(n)} values, got {v.size}")
    g = np.zeros((n, n), np.float64)
    g[np.triu_indices(n)] = v
    return g + np.triu(g, 1).T


def clip_norm_for(cap: int) -> float:
    """The L2 norm of an honest contribution of ``cap`` items (all ones on cap (cap + 1) / 2 entries)."""
    return math.sqrt(triu_size(cap))


@dataclass(frozen=True)
class GramSpace:
    """What a Gram-trained model's manifest declares (``hyperparams["gram"]``): the catalogue size
    (``items``, the first ``items`` entries of the item vocabulary), the device cap, and how the
    server turns the sum into the published factors (``lam``, ``k_min``, ``rank``)."""

    items: int
    cap: int
    lam: float
    k_min: int
    rank: int

    @property
    def num_values(self) -> int:
        """Length of the summed upper triangle (the round's accumulator)."""
        return triu_size(self.items)

    @property
    def max_nnz(self) -> int:
        """The most pairs one honest body holds."""
        return triu_size(self.cap)

    @property
    def clip_norm(self) -> float:
        return clip_norm_for(self.cap)


def gram_space(hyperparams: Mapping[str, Any]) -> GramSpace | None:
    """The manifest's Gram space, or None for a model trained by parameter deltas."""
    g = hyperparams.get("gram") if isinstance(hyperparams, Mapping) else None
    if g is None:
        return None
    try:
        space = GramSpace(int(g["items"]), int(g["cap"]), float(g["lambda"]), int(g.get("k_min", 1)), int(g["rank"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"hyperparams.gram needs integer items, cap, rank and a number lambda: {exc}") from exc
    if not (1 <= space.cap <= space.items and 1 <= space.rank <= space.items and space.lam > 0 and space.k_min >= 1):
        raise ManifestError(f"hyperparams.gram is out of range: {g}")
    return space
