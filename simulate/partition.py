"""How a simulated fleet's records are split over devices.

Why several rules: the same data set behaves very differently federated
depending on who holds what.  A column (branch, region, job x month) gives the
natural skew of organisational silos; one record per device is the
cross-device extreme (one customer per phone); a client-id column is "each
customer's own history"; and a Dirichlet(alpha) draw over labels (Hsu et al.
2019, "Measuring the effects of non-identical data distribution") dials label
skew from IID (alpha large) to one class per device (alpha small).

Every rule returns a list of record lists, in a deterministic order, so a
device's index identifies it across runs with the same seed.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["PartitionError", "by_column", "one_per_record", "dirichlet_labels", "chunk", "partition"]

Record = Mapping[str, Any]


class PartitionError(ValueError):
    """The partition cannot be made from these records; the message names the flag that fixes it."""


def _column(records: Sequence[Record], col: str, flag: str) -> list[str]:
    if not records:
        raise PartitionError("no records to partition: check --data")
    if col not in records[0]:
        raise PartitionError(f"{flag} {col!r}: the data has no such column; columns are {sorted(records[0])}")
    return [str(r.get(col, "")) for r in records]


def by_column(records: Sequence[Record], col: str, *, flag: str = "--partition-by") -> list[list[Record]]:
    """One device per distinct value of ``col`` (sorted by value, records in file order).

    ``col`` may name several columns, comma-separated (``job,month``: one device per pair).
    """
    cols = [c.strip() for c in col.split(",") if c.strip()]
    if not cols:
        raise PartitionError(f"{flag} needs a column name, got {col!r}")
    per_col = [_column(records, c, flag) for c in cols]
    keys = ["|".join(vals) for vals in zip(*per_col)]
    groups: dict[str, list[Record]] = {}
    for k, r in zip(keys, records):
        groups.setdefault(k, []).append(r)
    return [groups[k] for k in sorted(groups)]


def one_per_record(records: Sequence[Record]) -> list[list[Record]]:
    """The cross-device extreme: every record is its own device."""
    if not records:
        raise PartitionError("no records to partition: check --data")
    return [[r] for r in records]


def dirichlet_labels(records: Sequence[Record], label: str, devices: int, alpha: float,
                     rng: np.random.Generator) -> list[list[Record]]:
    """Label-skewed split: each class's records are spread over devices in Dirichlet(alpha) proportions.

    Devices left empty by the draw are dropped (a device with no data does not train).
    """
    if devices < 1:
        raise PartitionError(f"--devices must be >= 1 for a Dirichlet partition, got {devices}")
    if not (alpha > 0 and np.isfinite(alpha)):
        raise PartitionError(f"--dirichlet alpha must be a positive number, got {alpha}")
    labels = _column(records, label, "--label")
    out: list[list[Record]] = [[] for _ in range(devices)]
    for cls in sorted(set(labels)):
        idx = np.array([i for i, v in enumerate(labels) if v == cls])
        idx = idx[rng.permutation(idx.size)]
        share = rng.dirichlet(np.full(devices, alpha))
        cuts = (np.cumsum(share)[:-1] * idx.size).astype(int)
        for d, part in enumerate(np.split(idx, cuts)):
            out[d].extend(records[int(i)] for i in part)
    return [d for d in out if d]


def chunk(parts: Sequence[Sequence[Record]], max_rows: int | None) -> list[list[Record]]:
    """Cut each part into devices of at most ``max_rows`` records (a branch's data over several devices)."""
    if max_rows is None:
        return [list(p) for p in parts]
    if max_rows < 1:
        raise PartitionError(f"--max-device-rows must be >= 1, got {max_rows}")
    return [list(p[s:s + max_rows]) for p in parts for s in range(0, len(p), max_rows)]


def partition(records: Sequence[Record], *, by: str | None = None, client_id: str | None = None,
              per_record: bool = False, dirichlet: float | None = None, devices: int | None = None,
              label: str | None = None, max_rows: int | None = None, seed: int = 0) -> list[list[Record]]:
    """The one entry point the CLI uses: exactly one rule, then optional chunking."""
    chosen = [n for n, v in (("--partition-by", by), ("--client-id", client_id), ("--one-per-record", per_record),
                             ("--dirichlet", dirichlet)) if v not in (None, False)]
    if len(chosen) != 1:
        raise PartitionError("choose exactly one partition: --partition-by COL, --client-id COL, "
                             f"--one-per-record or --dirichlet ALPHA (got {chosen or 'none'})")
    if by is not None:
        parts = by_column(records, by)
    elif client_id is not None:
        parts = by_column(records, client_id, flag="--client-id")
    elif per_record:
        parts = one_per_record(records)
    else:
        if label is None or devices is None:
            raise PartitionError("--dirichlet needs --devices N and the label column (--label, default the "
                                 "model's label)")
        assert dirichlet is not None
        parts = dirichlet_labels(records, label, devices, dirichlet, np.random.default_rng(seed))
    return chunk(parts, max_rows)
