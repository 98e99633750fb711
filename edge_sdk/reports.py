"""What the SDK reports: to the app (train / flush / evaluation reports) and to the server
(federated-evaluation and audience-segment bodies).

Why one module: everything that leaves the device besides an update is built
here, so a reader can check in one place that it is counts and aggregates
only, never a record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from edge_sdk.data import DataReport
from edge_sdk.metrics import ScoreHistogram
from edge_sdk.update import PreparedUpdate
from fedmark.contract import OUTCOME_ACCEPTED, OUTCOME_DUPLICATE, OUTCOME_EXPIRED, OUTCOME_REJECTED, Manifest

__all__ = ["UploadOutcome", "FlushReport", "TrainReport", "EvalReport", "evaluation_entry",
           "segment_counts", "segment_report", "consent_report", "DEFAULT_SEGMENT_CUTS"]

DEFAULT_SEGMENT_CUTS: tuple[tuple[str, float], ...] = (
    ("high_propensity", 0.5), ("medium_propensity", 0.2), ("low_propensity", 0.0))


@dataclass(frozen=True)
class UploadOutcome:
    """What happened to one queued update during a flush."""

    key: str
    round_id: str
    # "accepted" (202), "duplicate" (200: the server already had it), "pending" (kept for later),
    # "expired" (round/version gone: dropped), "rejected" (refused as invalid: dropped);
    # the names are fedmark.contract.OUTCOMES
    status: str
    code: str | None = None
    update_id: str | None = None
    http_status: int | None = None


@dataclass(frozen=True)
class FlushReport:
    outcomes: tuple[UploadOutcome, ...]
    pending: int

    @property
    def sent(self) -> int:
        return sum(o.status in (OUTCOME_ACCEPTED, OUTCOME_DUPLICATE) for o in self.outcomes)

    @property
    def dropped(self) -> int:
        return sum(o.status in (OUTCOME_EXPIRED, OUTCOME_REJECTED) for o in self.outcomes)


@dataclass(frozen=True)
class TrainReport:
    """The outcome of one local training run; counts and norms only, never records."""

    model: str
    version: int
    round_id: str
    status: str  # "accepted" | "duplicate" | "queued"
    idempotency_key: str
    update_id: str | None
    num_examples: int
    loss: float
    update_norm: float
    within_clip: bool
    clip_norm: float | None
    encoding: str
    upload_bytes: int
    data: DataReport
    update: PreparedUpdate = field(repr=False)
    #: records per consent decision reason (fedmark.contract.consent), e.g. {"allowed": 40, "gpc_opt_out": 3}
    consent: Mapping[str, int] = field(default_factory=dict)
    consent_reported: bool = False  # the counts reached the server (POST /v1/consent/reports)

    @staticmethod
    def build(model: str, version: int, round_id: str, status: str, key: str, update_id: str | None, loss: float,
              prepared: PreparedUpdate, data: DataReport, *, consent: Mapping[str, int] | None = None,
              consent_reported: bool = False) -> "TrainReport":
        return TrainReport(model, version, round_id, status, key, update_id, prepared.num_examples, float(loss),
                           prepared.norm, prepared.within_clip, prepared.clip_norm, prepared.encoding,
                           len(prepared.body), data, prepared, dict(consent or {}), consent_reported)


def consent_report(model: str | None, round_id: str | None, counts: Mapping[str, int], withdrawn: int) -> dict[str, Any]:
    """The body of ``POST /v1/consent/reports``: records per decision reason and withdrawals since the last
    report — counts only, never which record or which customer."""
    return {"model": model, "round_id": round_id, "counts": {k: int(v) for k, v in sorted(counts.items())},
            "withdrawn": int(withdrawn)}


@dataclass(frozen=True)
class EvalReport:
    """Local evaluation: aggregate metrics and counts only.

    ``histogram`` (propensity) is the per-label score histogram: counts that
    reveal no single record and add up across devices to fleet-wide AUC, lift
    and calibration (:class:`fedmark.metrics.ScoreHistogram`).
    """

    model: str
    version: int
    metrics: dict[str, float]
    data: DataReport
    histogram: ScoreHistogram | None = None


def evaluation_entry(version: int, ev: EvalReport) -> dict[str, Any] | None:
    """One version's federated-evaluation report (``POST …/reports``): count, loss sum and the score
    histogram; None when no consented record was evaluated (nothing to report)."""
    assert ev.histogram is not None, "federated evaluation reports binary (propensity) models only"
    count = ev.histogram.count
    if count == 0:
        return None
    loss = ev.metrics.get("loss", math.nan)
    return {"version": version, "segment": "all", "kind": "binary", "count": count,
            "loss_sum": float(loss) * count if math.isfinite(loss) else 0.0, "histogram": ev.histogram.to_json()}


def segment_counts(scores: np.ndarray, cuts: Sequence[tuple[str, float]]) -> dict[str, int]:
    """How many scored records fall in each segment (``cuts``: name and lowest score, highest first);
    unscored records (NaN: no consent or refused by the schema) count nowhere."""
    counts = {name: 0 for name, _ in cuts}
    for sc in scores[np.isfinite(scores)]:
        for name, low in cuts:
            if sc >= low:
                counts[name] += 1
                break
    return counts


def segment_report(model: str, manifest: Manifest, counts: Mapping[str, int]) -> dict[str, Any]:
    """The body of ``POST /v1/segments/reports``: the model version, its purpose and the counts."""
    return {"model": model, "version": manifest.version, "purpose": manifest.purpose, "counts": dict(counts)}
