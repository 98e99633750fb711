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

This module is the facade only.  The steps live in their own modules:
:mod:`edge_sdk.upload` (outbox and upload policy), :mod:`edge_sdk.reports`
(every report, to the app or the server), :mod:`edge_sdk.families` (what
differs between propensity and recommender models) and
:meth:`edge_sdk.auth.Credentials.call` (re-enrol once on a refused token).
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np

from edge_sdk import data as data_mod
from edge_sdk import families
from edge_sdk import statistics as stats_mod
from edge_sdk.auth import Credentials
from edge_sdk.config import ClientConfig, RetryPolicy
from edge_sdk import consent as consent_mod
from edge_sdk.consent import CONSENT_FIELD, WithdrawalLog, WithdrawalReport
from edge_sdk.eligibility import DeviceConditions, ensure_eligible
from edge_sdk.errors import ConfigurationError, ConsentError, SchemaError, ServerError, TransportError
from edge_sdk.metrics import top_k
from edge_sdk.outbox import Outbox
from edge_sdk.personal import PersonalStore
from edge_sdk.reports import (DEFAULT_SEGMENT_CUTS, EvalReport, FlushReport, TrainReport, UploadOutcome,
                              consent_report, evaluation_entry, segment_counts, segment_report)
from edge_sdk.runtime import converted, load_trainer
from edge_sdk.sync import ModelCache, SyncResult
from edge_sdk.task import Task
from edge_sdk.transport import Response, Transport
from edge_sdk.update import build_update
from edge_sdk.upload import Uploader
from fedmark.contract import ERR_BAD_ANSWER, ERR_NO_VERSION, EXPIRED_CODES, Manifest, ProtocolError, required_purposes
from fedmark.contract.consent import parse_requirement

__all__ = ["Client", "TrainReport", "FlushReport", "UploadOutcome", "EvalReport", "EXPIRED_CODES"]

T = TypeVar("T")


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
                 allow_insecure_http: bool = False, threads: int = 1, consent_field: str = CONSENT_FIELD,
                 subject_field: str | None = None) -> None:
        self.config = ClientConfig(server_url=server_url, device_id=device_id, region=region,
                                   storage_dir=storage_dir, app_key=app_key, device_token=device_token,
                                   timeout=timeout, download_timeout=download_timeout, retry=retry or RetryPolicy(),
                                   allow_insecure_http=allow_insecure_http, threads=threads)
        if not consent_field:
            raise ConfigurationError("consent_field must name the record field that lists consented purposes")
        self.consent_field = consent_field
        # the record field naming the customer a record belongs to (cross-silo tables); None: one person per device
        self.subject_field = subject_field
        root = Path(storage_dir)
        self.transport = Transport(self.config.base_url, timeout=timeout, retry=self.config.retry)
        self.credentials = Credentials(self.config, self.transport)
        self.models = ModelCache(root / "models")
        self.outbox = Outbox(root / "outbox")
        self.personal = PersonalStore(root / "personal")
        self.uploads = Uploader(self.outbox, self._request)
        self.withdrawals = WithdrawalLog(root / "consent")
        self.task_consent = consent_mod.TaskConsent(root / "consent")
        self._trainers: dict[str, Any] = {}
        #: model -> the version the last score/recommend/personalize/evaluate of that model used.
        self.last_version: dict[str, int] = {}

    # ------------------------------------------------------------------ server calls
    def _authed(self, call: Callable[[dict[str, str]], T]) -> T:
        """Run ``call(auth_headers)`` under :meth:`Credentials.call` (re-enrol once on a refused token)."""
        return self.credentials.call(call)

    def _request(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> Response:
        """One authenticated request (``kwargs`` as :meth:`Transport.request`); every server call but sync uses it."""
        return self._authed(lambda h: self.transport.request(method, path, headers={**(headers or {}), **h},
                                                             **kwargs))

    def enroll(self) -> str:
        """Enrol this device now (normally done on first use) and return its token."""
        return self.credentials.enroll()

    def get_task(self, model: str) -> Task:
        """Ask for a training task for ``model``; raises :class:`NoTaskError` when no round is open."""
        return Task.from_json(self._request("POST", "/v1/tasks", json_body={"model": model}).json())

    def current_version(self, model: str) -> int:
        """The version the server currently publishes for ``model``."""
        resp = self._request("GET", f"/v1/models/{model}")
        body = resp.json()
        version = body.get("current_version") if isinstance(body, dict) else None
        if version is None:
            raise ServerError(resp.status, ERR_NO_VERSION, f"model {model!r} has no published version yet")
        return int(version)

    def sync(self, model: str, version: int | None = None, *, manifest_url: str | None = None) -> SyncResult:
        """Make ``model`` (default: the server's current version) present and verified on this device."""
        if version is None:
            version = self.current_version(model)
        return self._authed(lambda h: self.models.sync(self.transport, h, model, version, manifest_url=manifest_url,
                                                       timeout=self.config.download_timeout))

    # ------------------------------------------------------------------ training
    def train(self, model: str, records: Any, *, conditions: DeviceConditions, seed: int | None = None,
              strict: bool = False,
              signals: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None) -> TrainReport:
        """Run one federated training task for ``model`` on local ``records`` and upload the update.

        Raises NoTaskError (nothing open), NotEligibleError (device conditions),
        ConsentError / SchemaError (data), ArtifactIntegrityError (model),
        RejectedUpdateError (the server refused the update for good).  A
        network failure during the upload does not raise: the update stays in
        the outbox and the report's status is ``"queued"``; :meth:`flush` sends it.

        ``signals``: the device's consent signals (``tc_string``, ``gdpr_applies``,
        ``consent_mode``, ``gpc``; docs/CONSENT.md); a record's own fields of the
        same names override them.  A callable is asked before training and again
        before the update is queued: consent that disappeared meanwhile discards
        the update (ConsentError), nothing is queued.
        """
        task = self.get_task(model)
        ensure_eligible(task.eligibility, conditions)
        rows = data_mod.load_records(records)
        synced = self.sync(model, task.version, manifest_url=task.manifest_url)
        trainer = self._trainer(synced.path)
        manifest: Manifest = trainer.manifest
        seed = secrets.randbits(31) if seed is None else int(seed)
        # Consent follows the task: its consent_signals, else its consent_purposes (the manifest's purpose only if
        # the task names none), decided per record by the contract's rule; withdrawn subjects never train.
        requirement = task.consent_requirement(manifest.purpose)
        self.task_consent.remember(model, task.consent_signals, task.required_purposes(manifest.purpose))
        read = signals if callable(signals) else (lambda: signals)
        decided = consent_mod.decide_records(rows, requirement, read(), self.consent_field, self._withdrawn())
        if not any(decided.allowed):
            raise ConsentError(consent_mod.nothing_allowed(rows, requirement, decided, self.consent_field))
        subjects = consent_mod.subject_hashes(rows, decided, self.subject_field, self.withdrawals)
        train_data, report = families.training_input(manifest, consent_mod.mark_decided(rows, decided),
                                                     purposes=(consent_mod.DECIDED_PURPOSE,), strict=strict,
                                                     consent_field=consent_mod.DECIDED_FIELD)
        local, history = families.training_state(self.personal, model, manifest, trainer, seed)
        with converted("loading the initial parameters"):
            old = trainer.initial_params()
        with converted("local training"):
            result = trainer.train(old, train_data, local=local, epochs=task.hyperparams.get("epochs"),
                                   lr=task.hyperparams.get("learning_rate"), seed=seed)
        prepared = families.prepared_update(trainer, train_data, seed) or build_update(
            result.params, old, manifest.params, clip_norm=task.clip_norm, num_examples=result.num_examples,
            encoding=task.encoding, local_noise=task.local_noise)
        if callable(signals):
            consent_mod.ensure_unchanged(rows, requirement, decided, signals(), self.consent_field, self._withdrawn())
        families.after_training(self.personal, model, manifest, train_data, result, history)
        key = self.uploads.queue(task, model, prepared, subjects)
        status, mine = self.uploads.settle(key, self.flush())
        reported = self._report_consent(model, task.round_id, decided.counts)
        return TrainReport.build(model, task.version, task.round_id, status, key, mine.update_id if mine else None,
                                 result.loss, prepared, report, consent=decided.counts, consent_reported=reported)

    def pending(self) -> int:
        """How many updates wait in the outbox."""
        return len(self.outbox)

    def flush(self) -> FlushReport:
        """Send queued updates, oldest first, each with its original idempotency key.

        Accepted (202) or already-stored (200) updates are removed; updates the
        server refuses for good (round closed, stale version, unknown round,
        malformed) are dropped; a network failure stops the flush and leaves
        the rest queued for next time.  Updates computed from a subject who has
        withdrawn consent are dropped first, unsent (even if the device died
        between recording the withdrawal and clearing the queue).
        """
        gone = self.withdrawals.withdrawn()
        if gone:
            self.outbox.drop_where(lambda item: not gone.isdisjoint(item.subjects))
        return self.uploads.flush()

    # ------------------------------------------------------------------ on-device inference
    def score(self, model: str, records: Any, *, version: int | None = None, refresh: bool = True,
              signals: Mapping[str, Any] | None = None) -> np.ndarray:
        """Propensity scores in [0, 1], one per input record, computed on the device.

        Records without consent, or refused by the schema, get NaN: they are not
        scored.  Consent: the mapping the last task for the model carried (its
        consent_signals, with the device's ``signals``), else the manifest's purpose.
        Without ``version``, the server's current version is used (fetched if it
        changed; ``refresh=False`` or an unreachable server: the cached one);
        ``last_version[model]`` says which.
        """
        path, manifest = self._inference_model(model, version, refresh)
        families.require_family(model, manifest, families.PROPENSITY, "score()")
        rows = data_mod.load_records(records)
        field, purposes = self.consent_field, None
        requirement = self.task_consent.recall(model)
        if requirement is not None:
            decided = consent_mod.decide_records(rows, requirement, signals, self.consent_field, self._withdrawn())
            if not any(decided.allowed):
                raise ConsentError(consent_mod.nothing_allowed(rows, requirement, decided, self.consent_field))
            rows, field, purposes = (consent_mod.mark_decided(rows, decided), consent_mod.DECIDED_FIELD,
                                     (consent_mod.DECIDED_PURPOSE,))
        x, _, kept, _ = data_mod.prepare_tabular(rows, manifest, with_label=False, consent_field=field,
                                                 purposes=purposes)
        trainer = self._trainer(path)
        out = np.full(len(rows), np.nan, dtype=np.float64)
        if kept:
            with converted("scoring"):
                probs = trainer.predict(trainer.initial_params(), x)
            out[kept] = np.asarray(probs, dtype=np.float64).ravel()
        return out

    def personalize(self, model: str, records: Any, *, seed: int | None = None,
                    refresh: bool = True) -> data_mod.DataReport:
        """Fit this customer's user vector on the device from their (consented) interactions; nothing is uploaded."""
        path, manifest = self._inference_model(model, None, refresh)
        families.require_family(model, manifest, families.RECOMMENDER, "recommend()/personalize()")
        rows = data_mod.load_records(records)
        items, report = data_mod.prepare_interactions(rows, manifest, consent_field=self.consent_field)
        if items.size == 0:
            raise SchemaError("none of the consented records names an item this model knows")
        trainer = self._trainer(path)
        seed = secrets.randbits(31) if seed is None else int(seed)
        local, history = families.personal_state(self.personal, model, manifest, trainer, seed)
        with converted("personalisation"):
            result = trainer.train(trainer.initial_params(), items, local=local, seed=seed)
        families.after_training(self.personal, model, manifest, items, result, history)
        return report

    def recommend(self, model: str, k: int = 10, *, exclude: Sequence[str] = (), refresh: bool = True) -> list[str]:
        """Top-``k`` item codes for this device's customer, excluding items already bought (and ``exclude``);
        with the server's current version unless ``refresh=False`` (``last_version[model]`` says which)."""
        if k < 1:
            raise ConfigurationError(f"k must be >= 1, got {k}")
        path, manifest = self._inference_model(model, None, refresh)
        families.require_family(model, manifest, families.RECOMMENDER, "recommend()/personalize()")
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
        return self._evaluate(model, records, k=k, version=version, task=None)

    def _evaluate(self, model: str, records: Any, *, k: int, version: int | None,
                  task: dict[str, Any] | None) -> EvalReport:
        """:meth:`evaluate`; under an evaluation ``task``, consent follows the task's purposes."""
        path, manifest = self._inference_model(model, version)
        purposes = None
        if task is not None:
            named = task.get("consent_purposes") or []
            if not isinstance(named, list) or not all(isinstance(p, str) for p in named):
                raise ServerError(200, ERR_BAD_ANSWER, f"the evaluation task's consent_purposes must be a list of "
                                                       f"purposes, got {named!r}")
            purpose = task.get("purpose")
            purposes = required_purposes(named, purpose if isinstance(purpose, str) else None, manifest.purpose)
        rows = data_mod.load_records(records)
        if task is not None:
            # the evaluation task's consent (its standard signals, else its purposes) decides, as in training;
            # a withdrawn subject's records are not evaluated either
            try:
                requirement = parse_requirement(task.get("consent_signals"), purposes or ())
            except ProtocolError as exc:
                raise ServerError(200, ERR_BAD_ANSWER, f"the evaluation task's consent_signals: {exc}") from None
            self.task_consent.remember(model, task.get("consent_signals"), purposes or ())
            decided = consent_mod.decide_records(rows, requirement, None, self.consent_field, self._withdrawn())
            if not any(decided.allowed):
                raise ConsentError(consent_mod.nothing_allowed(rows, requirement, decided, self.consent_field))
            rows, field, purposes = (consent_mod.mark_decided(rows, decided), consent_mod.DECIDED_FIELD,
                                     (consent_mod.DECIDED_PURPOSE,))
        else:
            field = self.consent_field
        return families.evaluate(self.personal, model, manifest, self._trainer(path), rows, k=k,
                                 consent_field=field, purposes=purposes)

    def validate(self, model: str, records: Any) -> dict[str, Any]:
        """Federated evaluation: score each version the server names on this local holdout and
        send aggregates only — the count, the loss sum and the per-label score histogram, which
        add up across devices to fleet-wide AUC and calibration without any score leaving.

        Returns the server's answer (``decision`` is the publish gate's, once it has decided).
        Only binary models are evaluated this way (their protocol's "validate" verb): the
        fleet's figures come from per-label histograms of probabilities.
        """
        task = self._request("POST", "/v1/evaluations/tasks", json_body={"model": model}).json()
        line = str(task.get("model", model))
        reports = []
        for entry in task.get("versions", []):
            version = int(entry["version"])
            families.require_family(model, self._inference_model(line, version)[1], families.VALIDATE, "validate()")
            ev = self._evaluate(line, records, k=10, version=version, task=task)  # consent: the task's purposes
            report = evaluation_entry(version, ev)
            if report is not None:  # nothing consented to evaluate on: reporting zeros would dilute nothing but noise
                reports.append(report)
        if not reports:
            raise ConsentError("no consented record to evaluate on: nothing was reported")
        return self._request("POST", str(task["report_url"]), json_body={"reports": reports}).json()

    def report_segments(self, model: str, records: Any, *, cuts: Sequence[tuple[str, float]] = DEFAULT_SEGMENT_CUTS,
                        signals: Mapping[str, Any] | None = None) -> dict[str, int]:
        """Score consented records on the device and report only how many fall in each audience
        segment (``cuts``: name and lowest score, highest first); the server builds audiences from
        these counts and suppresses any segment below its k.  Returns the counts sent."""
        version = self.current_version(model)  # audiences are built for the version the server publishes
        _, manifest = self._inference_model(model, version)
        counts = segment_counts(self.score(model, records, version=version, signals=signals), cuts)
        self._request("POST", "/v1/segments/reports", json_body=segment_report(model, manifest, counts))
        return counts

    def report_statistics(self, model: str, records: Any) -> dict[str, Any]:
        """Federated feature statistics (issue #15): take the model's open statistics task, measure the
        consented, rule-passing ``records`` (:mod:`edge_sdk.statistics`) and send only their sums and counts.
        Returns the server's answer plus the local counts (``used``, ``excluded_no_consent``, ``failed_rules``)."""
        task = self._request("POST", "/v1/statistics/tasks", json_body={"model": model}).json()
        m = stats_mod.measure(data_mod.load_records(records), task, consent_field=self.consent_field,
                              withdrawn=self._withdrawn())
        body = json.dumps(m.body, sort_keys=True).encode()
        answer = self._request("POST", str(task["report_url"]), body=body,
                               headers={"Content-Type": "application/json",
                                        "Idempotency-Key": stats_mod.idempotency_key(str(task["task_id"]), body)}
                               ).json()
        return dict(answer, used=m.used, excluded_no_consent=m.excluded_no_consent, failed_rules=m.failed_rules)

    def forget(self, model: str) -> bool:
        """Erase this device's personal state for ``model`` (e.g. after consent is withdrawn)."""
        return self.personal.forget(model)

    def withdraw(self, subject: str | None = None) -> WithdrawalReport:
        """Consent withdrawn by the customer ``subject`` (records' ``subject_field``) or by the device's person
        (None): see :func:`edge_sdk.consent.withdraw` and docs/CONSENT.md (what it does not undo)."""
        return consent_mod.withdraw(self.withdrawals, self.outbox, self.personal, subject, self.subject_field)

    def restore_consent(self, subject: str | None = None) -> bool:
        """Consent given again: the subject's records may train again (nothing dropped comes back)."""
        return self.withdrawals.restore(consent_mod.subject_key(subject))

    def _withdrawn(self) -> Callable[[Mapping[str, Any]], bool] | None:
        return self.withdrawals.excluder(self.subject_field)

    def _report_consent(self, model: str, round_id: str | None, counts: Mapping[str, int]) -> bool:
        """Send the per-reason record counts and the withdrawals since the last report (counts only).
        A failure to report never fails training; withdrawals not reported are kept for the next one."""
        withdrawn = self.withdrawals.take_pending()
        try:
            self._request("POST", "/v1/consent/reports",
                          json_body=consent_report(model, round_id, counts, withdrawn))
            return True
        except (ServerError, TransportError):
            self.withdrawals.give_back(withdrawn)
            return False

    # ------------------------------------------------------------------ internals
    def _trainer(self, path: Path) -> Any:
        key = str(path)
        if key not in self._trainers:
            # One model in memory at a time.  Every path here was just verified by the model cache (a sync or
            # a load re-hashes the files), so the trainer does not hash them again.
            self._trainers = {key: load_trainer(path, threads=self.config.threads, verify=False)}
        return self._trainers[key]

    def round_status(self, round_id: str) -> dict[str, Any]:
        """The server's view of a round (accepted, goal, state, result_version), e.g. after :meth:`train`."""
        return self._request("GET", f"/v1/rounds/{round_id}").json()

    def _inference_model(self, model: str, version: int | None, refresh: bool = True) -> tuple[Path, Manifest]:
        """The version to run on the device, verified, recorded in ``last_version``.

        Why refresh by default: a device that trained on v1 must not keep scoring with v1 after v2 is
        published without saying so.  No ``version``: the server's current one (one small request; files
        are downloaded only when it changed); the cached current one with ``refresh=False`` or offline.
        """
        state = self.models.state(model)
        if version is None:
            version = state["current"]
            if refresh or version is None:
                try:
                    version = self.current_version(model)
                except TransportError:
                    if version is None:
                        raise  # nothing cached to fall back on
                    # offline: the cached version keeps working, and last_version says which it is
        if version not in state.values():
            synced = self.sync(model, version)
            path, manifest = synced.path, synced.manifest
        else:
            path, manifest = self.models.load(model, version)
        self.last_version[model] = int(version)
        return path, manifest
