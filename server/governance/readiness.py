"""The data-readiness assessment: is each region and partner's data fit to train on, and if not, why.

Computed only from a statistics release (``server.aggregation.statistics``):
noised, clipped, k-suppressed aggregates per cell (region x partner), never
a record.  Per cell it reads:

* **schema conformity**: the share of measured records that passed every
  quality rule (records that failed are excluded before measuring; the
  device reports their count as ``excluded.rules``);
* **missingness** per column: missing / records;
* **consent coverage**: the share of the device's records whose consent
  allows the task's purpose (``excluded.consent`` were not measured);
* **label balance**: the minority label's share;
* **records per device**: the cell's (clip-weighted, noised) records over its
  device count;
* **drift**: PSI of each categorical column's released histogram, and of the
  label, against the previous release of the same model
  (:func:`fedmark.metrics.population_stability_index`).

A cell whose (noised) records are fewer than ``NOISE_RECORDS`` noise standard
deviations is not judged on the shares (they would mostly be noise) but
reported as not ready for that reason.  A cell is *not ready* when any check misses its threshold (``THRESHOLDS``,
chosen as common rules of thumb: PSI > 0.25 is the usual "significant shift"
line); the answer says which check and by how much, in a plain sentence.
Cells under the k rule are reported as suppressed, never judged.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from fedmark.metrics import population_stability_index

__all__ = ["THRESHOLDS", "NOISE_RECORDS", "assess"]

THRESHOLDS = {
    "conformity": 0.95,        # at least 95 % of records pass the quality rules
    "missing": 0.20,           # at most 20 % missing in any column
    "consent": 0.50,           # at least half of the records may be used for the purpose
    "label_minority": 0.02,    # the rarer label at least 2 % of records
    "records_per_device": 5.0,  # enough local records to train on
    "psi": 0.25,               # population stability index against the previous release
}
#: A cell is judged only if its records are at least this many noise standard deviations (shares then carry
#: at most ~10 % noise; the full demo's clip-weighted cells hold 300 - 1,100 records at sigma 50): below, the
#: shares computed from it would mostly be noise.
NOISE_RECORDS = 10


def _share(part: float, whole: float) -> float | None:
    return None if whole <= 0 else float(part) / float(whole)


def _psi(now: Mapping[str, float], before: Mapping[str, float]) -> float | None:
    keys = sorted(set(now) | set(before))
    a = np.array([max(float(now.get(k, 0.0)), 0.0) for k in keys])
    b = np.array([max(float(before.get(k, 0.0)), 0.0) for k in keys])
    if not keys or a.sum() <= 0 or b.sum() <= 0:
        return None
    return float(population_stability_index(b / b.sum(), a / a.sum()))


def _judge(view: Mapping[str, Any], previous: Mapping[str, Any] | None, label: str | None,
           noise_sd: float = 0.0) -> dict[str, Any]:
    records = float(view.get("records", 0.0))
    if noise_sd > 0 and records < NOISE_RECORDS * noise_sd:
        why = (f"too few records ({records:.0f}, clip-weighted) for the release's noise (standard deviation "
               f"{noise_sd:.0f}) to judge this cell; gather more devices, or release with less noise")
        return {"ready": False, "reasons": [why], "checks": {}, "devices": view.get("devices"), "records": records}
    excluded = view.get("excluded", {})
    rules_out, consent_out = float(excluded.get("rules", 0.0)), float(excluded.get("consent", 0.0))
    checks: dict[str, Any] = {
        "conformity": _share(records, records + rules_out),
        "consent": _share(records + rules_out, records + rules_out + consent_out),
        "missing": {c: _share(s.get("missing", 0.0), records) for c, s in view["columns"].items()},
        "records_per_device": _share(records, view["devices"]) if view.get("devices") else None,
    }
    reasons: list[str] = []
    t = THRESHOLDS
    if checks["conformity"] is not None and checks["conformity"] < t["conformity"]:
        broken = [f"{k} ({v:g})" for k, v in sorted(view.get("violations", {}).items(), key=lambda kv: -kv[1])[:3]
                  if v > 0]
        reasons.append(f"only {checks['conformity']:.0%} of records pass the quality rules (needs "
                       f"{t['conformity']:.0%})" + (f"; most broken: {', '.join(broken)}" if broken else ""))
    if checks["consent"] is not None and checks["consent"] < t["consent"]:
        reasons.append(f"consent covers {checks['consent']:.0%} of records for the purpose (needs {t['consent']:.0%})")
    for col, share in checks["missing"].items():
        if share is not None and share > t["missing"]:
            reasons.append(f"column {col!r} is missing in {share:.0%} of records (at most {t['missing']:.0%})")
    if checks["records_per_device"] is not None and checks["records_per_device"] < t["records_per_device"]:
        reasons.append(f"{checks['records_per_device']:.1f} records per device (needs {t['records_per_device']:g})")
    if label is not None and label in view["columns"]:
        counts = view["columns"][label].get("values", {})
        total = sum(counts.values())
        minority = min(counts.values()) / total if len(counts) >= 2 and total > 0 else 0.0
        checks["label_minority"] = minority
        if minority < t["label_minority"]:
            reasons.append(f"the label is unbalanced: the rarer value is {minority:.1%} of records (needs "
                           f"{t['label_minority']:.0%})" if len(counts) >= 2 else "only one label value was released")
    drift: dict[str, float] = {}
    if previous is not None and not previous.get("suppressed"):
        for col, s in view["columns"].items():
            before = previous.get("columns", {}).get(col, {})
            if "values" in s and "values" in before:
                p = _psi(s["values"], before["values"])
                if p is not None:
                    drift[col] = p
        for col, p in sorted(drift.items()):
            if p > t["psi"]:
                reasons.append(f"column {col!r} drifted since the previous assessment (PSI {p:.2f} > {t['psi']:g})")
    checks["psi"] = drift
    return {"ready": not reasons, "reasons": reasons, "checks": checks, "devices": view.get("devices"),
            "records": records}


def assess(current: Mapping[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The assessment of a release (and the one before it, for drift); sentences in ``summary``."""
    label = (current.get("declaration") or {}).get("label")
    cells: dict[str, Any] = {}
    summary: list[str] = []
    for key, view in sorted(current.get("cells", {}).items()):
        region, _, partner = key.partition("|")
        if view.get("suppressed"):
            cells[key] = {"region": region, "partner": partner, "ready": None, "suppressed": True,
                          "reasons": [f"fewer than k={current.get('k')} devices: not shown"]}
            continue
        prev = (previous or {}).get("cells", {}).get(key) if previous else None
        judged = _judge(view, prev, label, float(current.get("noise_stddev") or 0.0))
        cells[key] = dict(judged, region=region, partner=partner, suppressed=False)
        if not judged["ready"]:
            summary.append(f"{region} / {partner} is not ready: " + "; ".join(judged["reasons"]) + ".")
    judged_cells = [c for c in cells.values() if c["ready"] is not None]
    if judged_cells and all(c["ready"] for c in judged_cells):
        summary.insert(0, f"All {len(judged_cells)} region/partner cells are ready to train.")
    elif judged_cells:
        summary.insert(0, f"{sum(not c['ready'] for c in judged_cells)} of {len(judged_cells)} region/partner "
                          "cells are not ready.")
    else:
        summary.insert(0, "No region/partner cell has k devices yet: nothing can be judged.")
    return {"model": current.get("model"), "schema_version": current.get("schema_version"),
            "previous_version": previous.get("schema_version") if previous else None, "k": current.get("k"),
            "epsilon": current.get("epsilon"), "thresholds": THRESHOLDS, "cells": cells, "summary": summary,
            "ready": bool(judged_cells) and all(c["ready"] for c in judged_cells)}
