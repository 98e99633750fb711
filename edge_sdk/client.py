"""The one object an app embeds: :class:`Client`.

Why one object: an app team should configure the SDK once (server, credentials,
device id, region, storage directory) and then call a handful of verbs —
``train``, ``flush``, ``score``, ``recommend``, ``personalize``, ``evaluate`` —
without knowing about tasks, manifests, clipping or queues.  The Client wires
the single-purpose modules together in the order the privacy design requires:

    task → eligibility → model sync (verified) → consent → schema → local
    training → delta → clip (+ within-clip bit) → local noise → encode →
    durable outbox → upload with an idempotency key

Nothing leaves the device except the encoded update and its headers (round,
version, example count, within-clip bit); reports to the app are counts and
aggregate metrics.
"""
from __future__ import annotations

import logging
import math
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from edge_sdk import data as data_mod
from edge_sdk.auth import Credentials
from edge_sdk.config import ClientConfig, RetryPolicy
from edge_sdk.consent import CONSENT_FIELD
from edge_sdk.eligibility import DeviceConditions, ensure_eligible
from edge_sdk.errors import (AuthenticationError, ConfigurationError, ConsentError, RejectedUpdateError,
                             SchemaError, ServerError, TransportError)
from edge_sdk.metrics import ScoreHistogram, propensity_metrics, recommender_metrics, top_k
from edge_sdk.outbox import Outbox, QueuedUpload
from edge_sdk.personal import PersonalStore
from edge_sdk.runtime import converted, load_trainer
from edge_sdk.sync import ModelCache, SyncResult
from edge_sdk.task import Task
from edge_sdk.transport import Response, Transport
from edge_sdk.update import PreparedUpdate, build_update
from fedmark.contract import (HDR_IDEMPOTENCY, HDR_MODEL_VERSION, HDR_NUM_EXAMPLES, HDR_ROUND, HDR_WITHIN_CLIP,
                              UPDATE_CONTENT_TYPE, Manifest)

log = logging.getLogger("edge_sdk.client")
T = TypeVar("T")

# Server answers that mean a queued update can never be accepted: drop it.
EXPIRED_CODES = frozenset({"round_closed", "stale_version", "unknown_round"})


@dataclass(frozen=True)
class UploadOutcome:
    """What happened to one queued update during a flush."""

    key: str
    round_id: str
    # "accepted" (202), "duplicate" (200: the server already had it), "pending" (kept for later),
    # "expired" (round/version gone: dropped), "rejected" (refused as invalid: dropped)
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
        return sum(o.status in ("accepted", "duplicate") for o in self.outcomes)

    @property
    def dropped(self) -> int:
        return sum(o.status in ("expired", "rejected") for o in self.outcomes)


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
    data: data_mod.DataReport
    update: PreparedUpdate = field(repr=False)


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
    data: data_mod.DataReport
    histogram: ScoreHistogram | None = None


class Client:
    """The on-device federated learning client (see the module docstring).

    >>> client = Client("https://fl.example.com", app_key="ak_…", device_id="d-42",
    ...                 region="eu", storage_dir="/data/app/fedmark")      # doctest: +SKIP
    >>> client.train("propensity", "records.csv",
    ...              conditions=DeviceConditions(charging=True, unmetered=True, idle=True, battery=0.9))  # doctest: +SKIP
    """

    def __init__(self, server_url: str, *, device_id: str, region: str, storage_dir: str | os.PathLike[str],
                 app_key: str | None = None, device_token: str | None = None, timeout: float = 10.0,
                 download_timeout: float = 60.0, retry: RetryPolicy | None = None,
                 allow_insecure_http: bool = False, threads: int = 1, consent_field: str = CONSENT_FIELD) -> None:
        self.config = ClientConfig(server_url=server_url, device_id=device_id, region=region,
                                   storage_dir=storage_dir, app_key=app_key, device_token=device_token,
                                   timeout=timeout, download_timeout=download_timeout, retry=retry or RetryPolicy(),
                                   allow_insecure_http=allow_insecure_http, threads=threads)
        if not consent_field:
            raise ConfigurationError("consent_field must name the record field that lists consented purposes")
        self.consent_field = consent_field
        root = Path(storage_dir)
        self.transport = Transport(self.config.base_url, timeout=timeout, retry=self.config.retry)
        self.credentials = Credentials(self.config, self.transport)
        self.models = ModelCache(root / "models")
        self.outbox = Outbox(root / "outbox")
        self.personal = PersonalStore(root / "personal")
        self._trainers: dict[str, Any] = {}

    # ------------------------------------------------------------------ server calls
    def _authed(self, call: Callable[[dict[str, str]], T]) -> T:
        """Run ``call(auth_headers)``; on a refused token, enrol again once (if an app key is set) and retry."""
        try:
            return call(self.credentials.headers())
        except AuthenticationError as exc:
            if exc.status != 401 or not self.credentials.can_enroll:
                raise
            log.info("device token refused (%s); enrolling again", exc.code)
            self.credentials.invalidate()
            return call(self.credentials.headers())

    def enroll(self) -> str:
        """Enrol this device now (normally done on first use) and return its token."""
        return self.credentials.enroll()

    def get_task(self, model: str) -> Task:
        """Ask for a training task for ``model``; raises :class:`NoTaskError` when no round is open."""
        resp = self._authed(lambda h: self.transport.request("POST", "/v1/tasks", json_body={"model": model},
                                                             headers=h))
        return Task.from_json(resp.json())

    def current_version(self, model: str) -> int:
        """The version the server currently publishes for ``model``."""
        resp = self._authed(lambda h: self.transport.request("GET", f"/v1/models/{model}", headers=h))
        body = resp.json()
        version = body.get("current_version") if isinstance(body, dict) else None
        if version is None:
            raise ServerError(resp.status, "no_version", f"model {model!r} has no published version yet")
        return int(version)

    def sync(self, model: str, version: int | None = None, *, manifest_url: str | None = None) -> SyncResult:
        """Make ``model`` (default: the server's current version) present and verified on this device."""
        if version is None:
            version = self.current_version(model)
        return self._authed(lambda h: self.models.sync(self.transport, h, model, version, manifest_url=manifest_url,
                                                       timeout=self.config.download_timeout))

    # ------------------------------------------------------------------ training
    def train(self, model: str, records: Any, *, conditions: DeviceConditions, seed: int | None = None,
              strict: bool = False) -> TrainReport:
        """Run one federated training task for ``model`` on local ``records`` and upload the update.

        Raises NoTaskError (nothing open), NotEligibleError (device conditions),
        ConsentError / SchemaError (data), ArtifactIntegrityError (model),
        RejectedUpdateError (the server refused the update for good).  A
        network failure during the upload does not raise: the update stays in
        the outbox and the report's status is ``"queued"``; :meth:`flush` sends it.
        """
        task = self.get_task(model)
        ensure_eligible(task.eligibility, conditions)
        rows = data_mod.load_records(records)
        synced = self.sync(model, task.version, manifest_url=task.manifest_url)
        trainer = self._trainer(synced.path)
        manifest: Manifest = trainer.manifest
        seed = secrets.randbits(31) if seed is None else int(seed)
        epochs = task.hyperparams.get("epochs")
        lr = task.hyperparams.get("learning_rate")
        history: list[str] = []
        local: dict[str, np.ndarray] | None = None
        if manifest.family == "recommender":
            items, report = data_mod.prepare_interactions(rows, manifest, strict=strict,
                                                          consent_field=self.consent_field)
            if items.size == 0:
                raise SchemaError("none of the consented records names an item this model knows; nothing to train")
            train_data: Any = items
            local, history = self._personal_state(model, manifest, trainer, seed)
        else:
            x, y, _, report = data_mod.prepare_tabular(rows, manifest, with_label=True, strict=strict,
                                                       consent_field=self.consent_field)
            train_data = (x, y)
        with converted("loading the initial parameters"):
            old = trainer.initial_params()
        with converted("local training"):
            result = trainer.train(old, train_data, local=local, epochs=epochs, lr=lr, seed=seed)
        prepared = build_update(result.params, old, manifest.params, clip_norm=task.clip_norm,
                                num_examples=result.num_examples, encoding=task.encoding,
                                local_noise=task.local_noise)
        if manifest.family == "recommender":
            codes = [str(manifest.features["items"][i]) for i in train_data]
            self.personal.save(model, result.local, history + codes)
        key = uuid.uuid4().hex
        headers = {"Content-Type": UPDATE_CONTENT_TYPE, HDR_MODEL_VERSION: str(task.version),
                   HDR_NUM_EXAMPLES: str(prepared.num_examples), HDR_IDEMPOTENCY: key, HDR_ROUND: task.round_id}
        if prepared.clip_norm is not None:  # the bit adaptive clipping needs; meaningless without a clip norm
            headers[HDR_WITHIN_CLIP] = "1" if prepared.within_clip else "0"
        self.outbox.put(QueuedUpload(key, task.upload_url, task.round_id, model, task.version, headers,
                                     prepared.body, time.time()))
        flushed = self.flush()
        mine = next((o for o in flushed.outcomes if o.key == key), None)
        if mine is not None and mine.status in ("expired", "rejected"):
            raise RejectedUpdateError(mine.http_status or 400, mine.code or "rejected",
                                      f"the server refused this update ({mine.code}); it was dropped from the queue")
        status = mine.status if mine is not None and mine.status != "pending" else "queued"
        return TrainReport(model, task.version, task.round_id, status, key, mine.update_id if mine else None,
                           prepared.num_examples, float(result.loss), prepared.norm, prepared.within_clip,
                           prepared.clip_norm, prepared.encoding, len(prepared.body), report, prepared)

    def pending(self) -> int:
        """How many updates wait in the outbox."""
        return len(self.outbox)

    def flush(self) -> FlushReport:
        """Send queued updates, oldest first, each with its original idempotency key.

        Accepted (202) or already-stored (200) updates are removed; updates the
        server refuses for good (round closed, stale version, unknown round,
        malformed) are dropped; a network failure stops the flush and leaves
        the rest queued for next time.
        """
        outcomes: list[UploadOutcome] = []
        with self.outbox.lock():
            for item in self.outbox.entries():
                outcome = self._send(item)
                outcomes.append(outcome)
                if outcome.status == "pending":
                    break
                self.outbox.remove(item.key)
        return FlushReport(tuple(outcomes), len(self.outbox))

    def _send(self, item: QueuedUpload) -> UploadOutcome:
        try:
            resp: Response = self._authed(lambda h: self.transport.request(
                "POST", item.upload_path, body=item.body, headers={**item.headers, **h}, accept=(200, 202)))
        except TransportError as exc:
            log.info("upload %s stays queued: %s", item.key, exc)
            return UploadOutcome(item.key, item.round_id, "pending")
        except AuthenticationError:
            raise  # credentials problem: keep the update, tell the app
        except ServerError as exc:
            if exc.status >= 500:  # the server failed, not the update: try again later
                log.info("upload %s stays queued after a server error: %s", item.key, exc)
                return UploadOutcome(item.key, item.round_id, "pending", exc.code, http_status=exc.status)
            status = "expired" if exc.code in EXPIRED_CODES else "rejected"
            log.warning("dropping queued update %s for round %s (%s): %s", item.key, item.round_id, status, exc)
            return UploadOutcome(item.key, item.round_id, status, exc.code, http_status=exc.status)
        body = resp.json() if resp.body else {}
        update_id = body.get("update_id") if isinstance(body, dict) else None
        status = "duplicate" if resp.status == 200 else "accepted"
        return UploadOutcome(item.key, item.round_id, status, None, update_id, resp.status)

    # ------------------------------------------------------------------ on-device inference
    def score(self, model: str, records: Any, *, version: int | None = None) -> np.ndarray:
        """Propensity scores in [0, 1], one per input record, computed on the device.

        Records without consent for the model's purpose, or refused by the
        schema, get NaN: they are not scored.
        """
        path, manifest = self._inference_model(model, version)
        if manifest.family != "propensity":
            raise ConfigurationError(f"score() needs a propensity model; {model!r} is a {manifest.family} model — "
                                     "use recommend()")
        rows = data_mod.load_records(records)
        x, _, kept, _ = data_mod.prepare_tabular(rows, manifest, with_label=False, consent_field=self.consent_field)
        trainer = self._trainer(path)
        out = np.full(len(rows), np.nan, dtype=np.float64)
        if kept:
            with converted("scoring"):
                probs = trainer.predict(trainer.initial_params(), x)
            out[kept] = np.asarray(probs, dtype=np.float64).ravel()
        return out

    def personalize(self, model: str, records: Any, *, seed: int | None = None) -> data_mod.DataReport:
        """Fit this customer's user vector on the device from their (consented) interactions; nothing is uploaded."""
        path, manifest = self._inference_model(model, None)
        self._require_recommender(model, manifest)
        rows = data_mod.load_records(records)
        items, report = data_mod.prepare_interactions(rows, manifest, consent_field=self.consent_field)
        if items.size == 0:
            raise SchemaError("none of the consented records names an item this model knows")
        trainer = self._trainer(path)
        seed = secrets.randbits(31) if seed is None else int(seed)
        local, history = self._personal_state(model, manifest, trainer, seed)
        with converted("personalisation"):
            result = trainer.train(trainer.initial_params(), items, local=local, seed=seed)
        codes = [str(manifest.features["items"][i]) for i in items]
        self.personal.save(model, result.local, history + codes)
        return report

    def recommend(self, model: str, k: int = 10, *, exclude: Sequence[str] = ()) -> list[str]:
        """Top-``k`` item codes for this device's customer, excluding items already bought (and ``exclude``)."""
        if k < 1:
            raise ConfigurationError(f"k must be >= 1, got {k}")
        path, manifest = self._inference_model(model, None)
        self._require_recommender(model, manifest)
        local, history = self.personal.load(model, manifest.local_params)
        if not local:
            raise ConfigurationError(f"no personal state for {model!r} on this device yet: call train() or "
                                     "personalize() with the customer's interactions first")
        items = [str(c) for c in manifest.features["items"]]
        index = {c: i for i, c in enumerate(items)}
        seen = np.array([index[c] for c in set(history) | set(map(str, exclude)) if c in index], dtype=np.int64)
        trainer = self._trainer(path)
        with converted("recommendation"):
            scores = trainer.predict(trainer.initial_params(), local=local)
        return [items[i] for i in top_k(np.asarray(scores).ravel(), k, seen.tolist())]

    def evaluate(self, model: str, records: Any, *, k: int = 10, version: int | None = None) -> EvalReport:
        """Metrics on a local holdout, aggregates only.

        Propensity: loss, AUC, top-decile lift, ECE, Brier, n, positive rate
        (+ the score histogram).  Recommender: HR@k, NDCG@k, recall@k of the
        held-out ``records`` against this device's personal user vector,
        ranking only items the customer has not bought.
        """
        path, manifest = self._inference_model(model, version)
        rows = data_mod.load_records(records)
        trainer = self._trainer(path)
        if manifest.family == "recommender":
            held, report = data_mod.prepare_interactions(rows, manifest, consent_field=self.consent_field)
            local, history = self.personal.load(model, manifest.local_params)
            if not local:
                raise ConfigurationError(f"no personal state for {model!r}: personalise before evaluating")
            items = [str(c) for c in manifest.features["items"]]
            held_set, bought = set(held.tolist()), set(history)
            known = np.array([i for i, c in enumerate(items) if c in bought and i not in held_set], np.int64)
            with converted("evaluation"):
                scores = np.asarray(trainer.predict(trainer.initial_params(), local=local)).ravel()
            return EvalReport(model, manifest.version, recommender_metrics(scores, held, k, known), report)
        x, y, _, report = data_mod.prepare_tabular(rows, manifest, with_label=True, consent_field=self.consent_field)
        with converted("evaluation"):
            p = np.asarray(trainer.predict(trainer.initial_params(), x)).ravel()
        assert y is not None
        metrics, histogram = propensity_metrics(y, p)
        return EvalReport(model, manifest.version, metrics, report, histogram)

    def validate(self, model: str, records: Any) -> dict[str, Any]:
        """Federated evaluation: score each version the server names on this local holdout and
        send aggregates only — the count, the loss sum and the per-label score histogram, which
        add up across devices to fleet-wide AUC and calibration without any score leaving.

        Returns the server's answer (``decision`` is the publish gate's, once it has decided).
        Only binary (propensity) models are evaluated this way by this SDK version.
        """
        task = self._authed(lambda h: self.transport.request(
            "POST", "/v1/evaluations/tasks", json_body={"model": model}, headers=h)).json()
        line = str(task.get("model", model))
        reports = []
        for entry in task.get("versions", []):
            version = int(entry["version"])
            ev = self.evaluate(line, records, version=version)
            if ev.histogram is None:
                raise ConfigurationError(f"model {model!r} is not a binary model: federated validation of "
                                         "recommenders is not supported by this SDK version")
            count = ev.histogram.count
            if count == 0:
                continue  # nothing consented to evaluate on; reporting zeros would dilute nothing but noise
            loss = ev.metrics.get("loss", math.nan)
            reports.append({"version": version, "segment": "all", "kind": "binary", "count": count,
                            "loss_sum": float(loss) * count if math.isfinite(loss) else 0.0,
                            "histogram": ev.histogram.to_json()})
        if not reports:
            raise ConsentError("no consented record to evaluate on: nothing was reported")
        return self._authed(lambda h: self.transport.request(
            "POST", str(task["report_url"]), json_body={"reports": reports}, headers=h)).json()

    def report_segments(self, model: str, records: Any, *, cuts: Sequence[tuple[str, float]] = (
            ("high_propensity", 0.5), ("medium_propensity", 0.2), ("low_propensity", 0.0))) -> dict[str, int]:
        """Score consented records on the device and report only how many fall in each audience
        segment (``cuts``: name and lowest score, highest first); the server builds audiences from
        these counts and suppresses any segment below its k.  Returns the counts sent."""
        version = self.current_version(model)  # audiences are built for the version the server publishes
        _, manifest = self._inference_model(model, version)
        scores = self.score(model, records, version=version)
        counts = {name: 0 for name, _ in cuts}
        for sc in scores[np.isfinite(scores)]:
            for name, low in cuts:
                if sc >= low:
                    counts[name] += 1
                    break
        self._authed(lambda h: self.transport.request(
            "POST", "/v1/segments/reports", headers=h,
            json_body={"model": model, "version": manifest.version, "purpose": manifest.purpose, "counts": counts}))
        return counts

    def forget(self, model: str) -> bool:
        """Erase this device's personal state for ``model`` (e.g. after consent is withdrawn)."""
        return self.personal.forget(model)

    # ------------------------------------------------------------------ internals
    def _trainer(self, path: Path) -> Any:
        key = str(path)
        if key not in self._trainers:
            self._trainers = {key: load_trainer(path, threads=self.config.threads)}  # one model in memory at a time
        return self._trainers[key]

    def _inference_model(self, model: str, version: int | None) -> tuple[Path, Manifest]:
        """A verified cached version; fetched from the server when none is cached yet."""
        state = self.models.state(model)
        if (version is None and state["current"] is None) or (version is not None and version not in state.values()):
            synced = self.sync(model, version)
            return synced.path, synced.manifest
        return self.models.load(model, version)

    def _personal_state(self, model: str, manifest: Manifest, trainer: Any,
                        seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
        local, history = self.personal.load(model, manifest.local_params)
        missing = [s.name for s in manifest.local_params if s.name not in local]
        if missing:
            with converted("initialising the personal parameters"):
                fresh = trainer.initial_local(seed)
            local = {**fresh, **local}
        return local, history

    @staticmethod
    def _require_recommender(model: str, manifest: Manifest) -> None:
        if manifest.family != "recommender":
            raise ConfigurationError(f"{model!r} is a {manifest.family} model; recommend()/personalize() need a "
                                     "recommender model")
