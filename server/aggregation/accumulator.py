"""The per-round accumulator: where client updates are folded in as they arrive.

Why its own object: the round loop calls ``add`` from request handlers, one
update at a time, long before the round closes; the accumulator must therefore
be small (O(parameters) for the mean), self-describing (it carries the clip norm
and weighting it was opened with) and checkpointable (``to_bytes``).

Recovery after a crash: either persist ``to_bytes()`` and ``Accumulator.from_bytes``
it back, or re-add the stored updates in a fixed order (e.g. by update id).
Float64 addition is not associative, so a *different* order gives a result
equal only to ~1e-15 relative; the *same* order is bit-identical.

The server re-clips every update and decides the adaptive-clipping bit itself
from the received vector's norm (see ``clipping.BOUNDARY_RTOL``); the client's
claimed bit is only compared, and disagreements are counted.  With
``local_noise`` on the devices the received norm includes that noise, so
clipped updates land slightly outside the sphere (still counted as clipped) and
unclipped ones near C may be counted as clipped: the quantile is then biased low.

Not thread-safe: one round's ``add`` calls must be serialised by the caller.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import codec
from .clipping import FOLD_CHUNK, clip_scale, l2_norm, unclipped_bit
from .errors import BufferFull, StateError, UpdateRejected


@dataclass(frozen=True)
class Contribution:
    """What the server made of one update (for logs and per-update audit)."""

    norm: float            # L2 norm of the vector as received
    clipped: bool          # the server scaled it down (or it sat on the clipping sphere)
    unclipped_bit: int     # the bit b the server counts: 1 iff norm <= C * (1 - rtol)
    weight: float          # weight actually used (capped, or 1.0 under uniform weighting)
    claim_mismatch: bool   # the client's within-clip claim disagrees with the server's bit


class Accumulator:
    """Running tally for one round.  Create with ``Aggregator.start``; never share across rounds."""

    def __init__(self, *, round_index: int, num_params: int, clip_norm: float | None, uniform: bool,
                 max_weight: float | None, boundary_rtol: float, capacity: int | None) -> None:
        if not (isinstance(num_params, (int, np.integer)) and num_params >= 1):
            raise StateError(f"num_params must be a positive integer, got {num_params!r}")
        self.round_index = int(round_index)
        self.num_params = int(num_params)
        self.clip_norm = clip_norm
        self.uniform = uniform
        self.max_weight = max_weight
        self.boundary_rtol = boundary_rtol
        self.capacity = capacity
        self.sum: np.ndarray | None = np.zeros(self.num_params, np.float64) if capacity is None else None
        self.buffer: list[np.ndarray] = []
        self.total_weight = 0.0
        self.count = 0
        self.unclipped = 0
        self.mismatches = 0
        self.max_norm = 0.0

    # ------------------------------------------------------------------ folding
    @property
    def full(self) -> bool:
        """True when a buffered (robust) round holds ``capacity`` updates; always False when streaming."""
        return self.capacity is not None and len(self.buffer) >= self.capacity

    def _weight(self, weight: float) -> float:
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise UpdateRejected(f"weight must be a number (the example count), got {weight!r}") from None
        if not (math.isfinite(w) and w > 0):
            raise UpdateRejected(f"weight must be a finite number > 0 (the example count), got {weight!r}")
        if self.uniform:
            return 1.0
        return min(w, self.max_weight) if self.max_weight is not None else w

    def add(self, vec: np.ndarray, weight: float = 1.0, within_clip: bool | None = None) -> Contribution:
        """Fold one update in: validate, re-clip to C, count the bit, add weight x vector.

        ``vec``: 1-D float32 delta of length ``num_params``; ``weight``: the
        client's example count (capped; ignored under uniform weighting);
        ``within_clip``: the client's claimed bit, or None if it sent none.
        Raises :class:`UpdateRejected` (nothing changed) for a bad update and
        :class:`BufferFull` when a robust round is full.
        """
        v = np.asarray(vec)
        if v.ndim != 1 or v.size != self.num_params:
            raise UpdateRejected(f"update has shape {v.shape}, expected ({self.num_params},): "
                                 f"was it computed for this model version?")
        if v.dtype.kind != "f":
            raise UpdateRejected(f"update must be floating point, got {v.dtype}")
        w = self._weight(weight)
        if self.full:
            raise BufferFull(f"this robust round already holds its capacity of {self.capacity} updates; "
                             f"close the round (Accumulator.full) or raise robust.capacity")
        norm, bit, scale, mismatch = self._judge(v, within_clip)

        if self.capacity is None:
            assert self.sum is not None
            factor = scale * w
            for start in range(0, self.num_params, FOLD_CHUNK):
                part = v[start:start + FOLD_CHUNK].astype(np.float64)
                part *= factor
                self.sum[start:start + FOLD_CHUNK] += part
        else:
            self.buffer.append((v.astype(np.float64) * scale).astype(np.float32) if scale != 1.0
                               else v.astype(np.float32))
        return self._count(norm, bit, w, mismatch)

    def _judge(self, values: np.ndarray, within_clip: bool | None) -> tuple[float, int, float, bool]:
        """The server's own view of one update: (norm, unclipped bit, clip scale, claim mismatch)."""
        norm = l2_norm(values)
        if not math.isfinite(norm):
            raise UpdateRejected("update contains NaN or Inf values")
        bit = unclipped_bit(norm, self.clip_norm, self.boundary_rtol)
        mismatch = within_clip is not None and bool(within_clip) != bool(bit)
        return norm, bit, clip_scale(norm, self.clip_norm), mismatch

    def _count(self, norm: float, bit: int, w: float, mismatch: bool) -> Contribution:
        self.total_weight += w
        self.count += 1
        self.unclipped += bit
        self.mismatches += int(mismatch)
        self.max_norm = max(self.max_norm, norm)
        return Contribution(norm=norm, clipped=not bit, unclipped_bit=bit, weight=w, claim_mismatch=mismatch)

    def add_sparse(self, indices: np.ndarray, values: np.ndarray, weight: float = 1.0,
                   within_clip: bool | None = None) -> Contribution:
        """Fold one sparse update (``fedmark.contract.wire.decode_sparse_update``): the same re-clip, bit
        and weight as :meth:`add`, added only at ``indices`` (strictly increasing, < ``num_params``).

        Why: a device's share of a Gram sum touches thousands of its millions of values; densifying it
        would cost O(parameters) per update.  The norm of the values is the norm of the dense update.
        """
        idx = np.asarray(indices)
        v = np.asarray(values)
        if idx.ndim != 1 or v.shape != idx.shape or idx.dtype.kind not in "iu" or v.dtype.kind != "f":
            raise UpdateRejected(f"a sparse update needs matching 1-D integer indices and float values, got "
                                 f"{idx.shape} {idx.dtype} and {v.shape} {v.dtype}")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.num_params
                         or np.any(np.diff(idx.astype(np.int64)) <= 0)):
            raise UpdateRejected(f"sparse indices must be strictly increasing and in [0, {self.num_params})")
        if self.capacity is not None:
            raise UpdateRejected("robust (buffered) rounds keep dense updates; send a dense body")
        w = self._weight(weight)
        norm, bit, scale, mismatch = self._judge(v, within_clip)
        assert self.sum is not None
        self.sum[idx] += v.astype(np.float64) * (scale * w)
        return self._count(norm, bit, w, mismatch)

    # ------------------------------------------------------------------ combining partial tallies
    def copy(self) -> "Accumulator":
        """An independent copy (the running sum is copied, O(parameters))."""
        out = Accumulator(round_index=self.round_index, num_params=self.num_params, clip_norm=self.clip_norm,
                          uniform=self.uniform, max_weight=self.max_weight, boundary_rtol=self.boundary_rtol,
                          capacity=self.capacity)
        out.sum = None if self.sum is None else self.sum.copy()
        out.buffer = list(self.buffer)
        out.total_weight, out.count, out.unclipped = self.total_weight, self.count, self.unclipped
        out.mismatches, out.max_norm = self.mismatches, self.max_norm
        return out

    def merge(self, other: "Accumulator") -> None:
        """Add a partial tally of the same round (another process's share) into this one.

        Both must stream (no robust buffer) with the same clip norm, weighting and size: the
        sum of partial sums then equals the sum of the updates, to float64 rounding in the
        merge order (callers merge in a fixed order, so a replay is bit-identical).
        """
        if other.capacity is not None or self.capacity is not None:
            raise StateError("robust (buffered) tallies cannot be merged; they keep every update")
        if (other.num_params, other.clip_norm, other.uniform, other.max_weight) != \
                (self.num_params, self.clip_norm, self.uniform, self.max_weight):
            raise StateError(f"cannot merge a tally of {other.num_params} values at clip norm {other.clip_norm} into "
                             f"one of {self.num_params} at {self.clip_norm}: they belong to different rounds")
        assert self.sum is not None and other.sum is not None
        self.sum += other.sum
        self.total_weight += other.total_weight
        self.count += other.count
        self.unclipped += other.unclipped
        self.mismatches += other.mismatches
        self.max_norm = max(self.max_norm, other.max_norm)

    # ------------------------------------------------------------------ persistence
    def tree(self) -> dict[str, Any]:
        return {
            "round": self.round_index, "n": self.num_params, "clip_norm": self.clip_norm,
            "uniform": self.uniform, "max_weight": self.max_weight, "rtol": self.boundary_rtol,
            "capacity": self.capacity, "sum": self.sum, "buffer": list(self.buffer),
            "total_weight": self.total_weight, "count": self.count, "unclipped": self.unclipped,
            "mismatches": self.mismatches, "max_norm": self.max_norm,
        }

    def to_bytes(self) -> bytes:
        """Checkpoint: float64 running sum (or float32 buffer) as raw bytes plus a JSON header."""
        return codec.pack(self.tree())

    @staticmethod
    def from_bytes(data: bytes) -> "Accumulator":
        t = codec.unpack(data)
        try:
            acc = Accumulator(round_index=t["round"], num_params=t["n"], clip_norm=t["clip_norm"],
                              uniform=bool(t["uniform"]), max_weight=t["max_weight"],
                              boundary_rtol=float(t["rtol"]), capacity=t["capacity"])
            acc.sum = t["sum"]
            acc.buffer = [np.asarray(b, np.float32) for b in t["buffer"]]
            acc.total_weight = float(t["total_weight"])
            acc.count = int(t["count"])
            acc.unclipped = int(t["unclipped"])
            acc.mismatches = int(t["mismatches"])
            acc.max_norm = float(t["max_norm"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"bad accumulator checkpoint: {exc}") from exc
        if (acc.capacity is None) != (acc.sum is not None) or (acc.sum is not None and acc.sum.size != acc.num_params):
            raise StateError("bad accumulator checkpoint: running sum missing or of the wrong length")
        return acc
