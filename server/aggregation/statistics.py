"""The statistics release: per-device clipping, sums per cell, Gaussian noise, the k rule for categories.

Pure maths with explicit inputs (no storage): :mod:`server.rounds.statistics`
reads the stored contributions and calls :func:`release`.

How one release is computed, and why:

* **A device's contribution is one vector.**  Every statistic a device sent
  (``fedmark.contract.statistics.parse_contribution``) becomes a coordinate:
  the record count, per numeric column count / sum / sum of squares /
  missing, per categorical value its count, missing and "other" counts, the
  rule-violation and exclusion counts.  Sums are divided by the column's
  bound B (the largest |value| inside its declared range) and sums of squares
  by B², so every coordinate grows by at most 1 per record.
* **Clipped per device** to L2 norm ``clip`` with the contract's one clipping
  rule (:func:`fedmark.contract.clipping.clip_scale`).  The whole vector is
  scaled, so a clipped device keeps its proportions: means and shares stay
  unbiased, the device just weighs less.  Adding or removing one device
  changes the cell's sum by at most ``clip`` in L2.
* **Summed (not averaged) per cell** (region x partner, as training cells),
  then **Gaussian noise** N(0, (z * clip)²) is added to every coordinate of
  every cell's sum.  A device is in one cell, so the cells compose in
  parallel: the release is one Gaussian mechanism with multiplier z, one event
  in the privacy ledger.  The fleet totals are the sums of the noised cells
  (post-processing, no further cost).
* **Category values** are released only if at least ``k`` distinct devices
  hold them (counted exactly: the server is trusted with the individual
  contributions, as with updates) *and* their noised total count reaches
  ``selection_sd * z * clip * sqrt(cells)`` (default one noise standard
  deviation of the total, chosen in sweeps/statistics_fit.py), so that the
  presence of a rare value does not hinge on one device alone.  That
  threshold is the usual DP partition selection but a weak one at this
  setting, and it is *not* in the RDP accountant's epsilon: the k rule is
  what protects a value's presence (docs/GOVERNANCE.md says so).
* Cells with fewer than ``k`` devices are left out of the per-cell view (they
  still count in the totals).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from fedmark.contract.clipping import clip_scale
from fedmark.contract.statistics import StatisticsPlan

from .accounting import PrivacyLedger
from .errors import ConfigError

__all__ = ["StatisticsConfig", "DeviceContribution", "release", "coordinates"]


@dataclass(frozen=True)
class StatisticsConfig:
    """A statistics task's privacy settings: noise multiplier z, per-device clip, k, delta, record cap."""

    noise_multiplier: float = 1.0
    clip: float = 50.0
    k: int = 5
    delta: float = 1e-5
    max_records: int = 100_000
    #: how many noise standard deviations (of the fleet total) a category value's noised count must reach
    selection_sd: float = 1.0

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "StatisticsConfig":
        base = StatisticsConfig()
        try:
            cfg = StatisticsConfig(float(d.get("noise_multiplier", base.noise_multiplier)),
                                   float(d.get("clip", base.clip)), int(d.get("k", base.k)),
                                   float(d.get("delta", base.delta)), int(d.get("max_records", base.max_records)),
                                   float(d.get("selection_sd", base.selection_sd)))
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: float(10**400), int(Infinity)
            raise ConfigError(f"statistics config: {exc}") from None
        if not (math.isfinite(cfg.noise_multiplier) and cfg.noise_multiplier >= 0):
            raise ConfigError("noise_multiplier must be a finite number >= 0 (0: no DP noise)")
        if not (math.isfinite(cfg.clip) and cfg.clip > 0):
            raise ConfigError("clip must be a finite number > 0 (the L2 bound of one device's contribution)")
        if not 1 <= cfg.k <= 10_000:
            raise ConfigError("k must be a whole number from 1 to 10000")
        if not 0 < cfg.delta < 1:
            raise ConfigError("delta must be in (0, 1)")
        if not 1 <= cfg.max_records <= 10_000_000:
            raise ConfigError("max_records must be from 1 to 10000000")
        if not (math.isfinite(cfg.selection_sd) and 0 <= cfg.selection_sd <= 10):
            raise ConfigError("selection_sd must be from 0 to 10 (noise standard deviations a category value's "
                              "noised count must reach to be released)")
        return cfg

    def to_json(self) -> dict[str, Any]:
        return {"noise_multiplier": self.noise_multiplier, "clip": self.clip, "k": self.k, "delta": self.delta,
                "max_records": self.max_records, "selection_sd": self.selection_sd}


@dataclass(frozen=True)
class DeviceContribution:
    """One device's parsed statistics and the cell it was placed in."""

    device_id: str
    cell: str
    body: Mapping[str, Any]


Key = tuple[str, ...]


def coordinates(plan: StatisticsPlan, body: Mapping[str, Any]) -> dict[Key, float]:
    """A contribution as normalised coordinates (each grows by at most 1 per record, see the module docstring)."""
    out: dict[Key, float] = {("records",): float(body["records"])}
    for c in plan.measured:
        s = body["columns"][c.name]
        out[("col", c.name, "missing")] = float(s["missing"])
        if c.kind == "numeric":
            b = c.bound
            out[("col", c.name, "count")] = float(s["count"])
            out[("col", c.name, "sum")] = float(s["sum"]) / b
            out[("col", c.name, "sumsq")] = float(s["sumsq"]) / (b * b)
        else:
            out[("col", c.name, "other")] = float(s.get("other", 0))
            for v, n in s["values"].items():
                out[("val", c.name, v)] = float(n)
    for rule, n in body.get("violations", {}).items():
        out[("rule", rule)] = float(n)
    for why, n in body.get("excluded", {}).items():
        out[("excluded", why)] = float(n)
    return out


def _unflatten(plan: StatisticsPlan, flat: Mapping[Key, float], released: Mapping[str, set[str]] | None,
               round_counts: bool) -> dict[str, Any]:
    def cnt(x: float) -> float:
        x = max(x, 0.0)
        return float(round(x)) if round_counts else x

    cols: dict[str, Any] = {}
    for c in plan.measured:
        entry: dict[str, Any] = {"missing": cnt(flat.get(("col", c.name, "missing"), 0.0))}
        if c.kind == "numeric":
            entry.update(count=cnt(flat.get(("col", c.name, "count"), 0.0)),
                         sum=flat.get(("col", c.name, "sum"), 0.0) * c.bound,
                         sumsq=max(flat.get(("col", c.name, "sumsq"), 0.0), 0.0) * c.bound * c.bound)
        else:
            keep = released.get(c.name, set()) if released is not None else None
            entry["other"] = cnt(flat.get(("col", c.name, "other"), 0.0))
            entry["values"] = {k[2]: cnt(v) for k, v in sorted(flat.items())
                               if k[0] == "val" and k[1] == c.name and (keep is None or k[2] in keep)}
        cols[c.name] = entry
    return {"records": cnt(flat.get(("records",), 0.0)), "columns": cols,
            "violations": {k[1]: cnt(v) for k, v in sorted(flat.items()) if k[0] == "rule"},
            "excluded": {k[1]: cnt(v) for k, v in sorted(flat.items()) if k[0] == "excluded"}}


def release(plan: StatisticsPlan, contributions: Sequence[DeviceContribution], cfg: StatisticsConfig,
            rng: np.random.Generator, ledger: PrivacyLedger = PrivacyLedger()) -> dict[str, Any]:
    """The release of one statistics task: totals, per-cell views (k-suppressed), ledger and epsilon.

    Deterministic for a given ``rng`` and contribution order (the caller passes them in id order).
    """
    z, clip = cfg.noise_multiplier, cfg.clip
    sums: dict[str, dict[Key, float]] = {}
    devices: dict[str, set[str]] = {}
    holders: dict[tuple[str, str], set[str]] = {}
    clipped = 0
    for con in contributions:
        coords = coordinates(plan, con.body)
        norm = math.sqrt(math.fsum(v * v for v in coords.values()))
        scale = clip_scale(norm, clip)
        clipped += scale < 1.0
        cell = sums.setdefault(con.cell, {})
        for key, v in coords.items():
            cell[key] = cell.get(key, 0.0) + v * scale
            if key[0] == "val" and v > 0:
                holders.setdefault((key[1], key[2]), set()).add(con.device_id)
        devices.setdefault(con.cell, set()).add(con.device_id)
    sigma = z * clip
    noised: dict[str, dict[Key, float]] = {}
    for cell in sorted(sums):  # sorted: the same contributions and seed give the same release
        flat = sums[cell]
        noise = rng.normal(0.0, sigma, size=len(flat)) if sigma > 0 else np.zeros(len(flat))
        noised[cell] = {k: v + float(e) for (k, v), e in zip(sorted(flat.items()), noise)}
    total: dict[Key, float] = {}
    for flat in noised.values():
        for k, v in flat.items():
            total[k] = total.get(k, 0.0) + v
    threshold = cfg.selection_sd * sigma * math.sqrt(max(len(noised), 1))
    released: dict[str, set[str]] = {}
    suppressed: dict[str, int] = {}
    for (col, value), who in holders.items():
        if len(who) >= cfg.k and total.get(("val", col, value), 0.0) >= max(threshold, 1e-12):
            released.setdefault(col, set()).add(value)
        else:
            suppressed[col] = suppressed.get(col, 0) + 1
    totals = _unflatten(plan, total, released, round_counts=sigma > 0)
    cells = {}
    for cell, flat in noised.items():
        n_dev = len(devices[cell])
        if n_dev < cfg.k:
            cells[cell] = {"devices": None, "suppressed": True}
            continue
        cells[cell] = dict(_unflatten(plan, flat, released, round_counts=sigma > 0), devices=n_dev,
                           suppressed=False)
    n_devices = sum(len(d) for d in devices.values())
    new_ledger = ledger.record(z, 1.0) if z > 0 else ledger
    epsilon = new_ledger.epsilon(cfg.delta) if z > 0 else None  # None: no DP guarantee (noise off)
    return {"totals": totals, "cells": cells, "devices": n_devices if n_devices >= cfg.k else None,
            "clipped_devices": clipped, "suppressed_values": suppressed, "noise_stddev": sigma,
            "value_threshold": threshold, "k": cfg.k, "ledger": new_ledger.to_json(),
            "epsilon": epsilon, "delta": cfg.delta,
            "noise_multiplier": z}
