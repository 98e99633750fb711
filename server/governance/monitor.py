"""Prometheus metrics at ``/metrics``, read from the database at scrape time.

Why from the database rather than in-process counters: several server
processes (gunicorn workers, other hosts) share one database, and the
audit trail already records every accepted or rejected update, round,
version and activation decision.  A custom collector turns those records into
counters (so every process reports the same, complete totals and a restart
loses nothing) and reads epsilon per model and per aggregation cell into
gauges.  Each app has its own ``CollectorRegistry``, so tests that run several
apps in one process do not collide.  Cost: a few GROUP BY queries per scrape
(indexed on ``audit_log(kind, code)``), plus one distinct-device query per
device-derived series (the k rule: :func:`read_samples`).

``/metrics`` answers only to its own bearer credential (config ``METRICS_TOKEN``,
``FEDMARK_METRICS_TOKEN``); without one configured it answers 404 (off).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterator

from sqlalchemy import Connection, func, select

from server.governance import audit, decisions, partners
from server.governance.policy import Policy, current_policy
from server.storage import Store, schema


class GovernanceCollector:
    """Counters and gauges read at scrape time; every device-derived count passes the model's k rule."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        return []  # no database access at registration time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self.store.read() as conn:
            samples = read_samples(conn)
        families = {
            "accepted": CounterMetricFamily("fedmark_updates_accepted", "Updates accepted (durably stored); shown "
                                            "from k_min distinct devices on", labels=["model"]),
            "rejected": CounterMetricFamily("fedmark_updates_rejected", "Updates refused, by reason code; shown "
                                            "from the largest k_min distinct devices on", labels=["code"]),
            "rounds": CounterMetricFamily("fedmark_rounds", "Round transitions", labels=["model", "event"]),
            "versions": CounterMetricFamily("fedmark_versions", "Model versions, by status", labels=["model", "status"]),
            "activations": CounterMetricFamily("fedmark_activation_requests", "Activation requests, by decision",
                                               labels=["model", "decision", "reason"]),
            "denied": CounterMetricFamily("fedmark_tasks_denied", "Task requests refused by policy; shown from k_min "
                                          "distinct devices on", labels=["model", "code"]),
            "entries": GaugeMetricFamily("fedmark_audit_entries", "Entries in the hash-chained audit trail"),
            "eps": GaugeMetricFamily("fedmark_epsilon", "Epsilon spent (current version's guarantee)",
                                     labels=["model", "delta"]),
            "cell_eps": GaugeMetricFamily("fedmark_cell_epsilon", "Epsilon spent per aggregation cell; shown from "
                                          "k_min distinct devices in the cell on", labels=["model", "region", "partner"]),
        }
        for family, series in samples.items():
            for labels, value in sorted(series.items()):
                families[family].add_metric(list(labels), value)
        yield from families.values()


def read_samples(conn: Connection) -> dict[str, dict[tuple[str, ...], float]]:
    """family -> {label values: value}: one value per label set (no duplicate series), k-suppressed.

    A count that comes from devices (accepted updates, task refusals, a cell's epsilon) is exported only when
    :func:`server.governance.decisions.suppressed` says its distinct devices may leave the server; a
    suppressed series is left out (Prometheus has no "null").  Counts with no model label use the largest
    k_min of any policy in force.  Rounds, versions and activation requests count server and marketer
    events, not devices."""
    out: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
    policies: dict[str, Policy | None] = {}

    def policy_of(model: str) -> Policy | None:
        if model not in policies:
            policies[model] = current_policy(conn, model)
        return policies[model]

    def k_of(model: str) -> int:
        return decisions.k_min(policy_of(model))

    widest = max([decisions.k_min(policy_of(m)) for (m,) in conn.execute(select(schema.policies.c.model).distinct())]
                 or [1])
    a = schema.audit_log
    total = 0
    rejected_devices: dict[str, set[str]] = defaultdict(set)
    for kind, code, model, n in audit.counts(conn):
        total += n
        model, code = model or "", code or ""
        if kind.startswith("round."):
            out["rounds"][(model, kind.split(".", 1)[1])] += n
        elif kind.startswith("activation."):
            out["activations"][(model, kind.split(".", 1)[1], code)] += n
        elif kind in ("update.accepted", "update.rejected", "task.denied"):
            who = a.c.subject if kind == "task.denied" else a.c.actor
            q = select(who).where(a.c.kind == kind).distinct()
            q = q.where(a.c.code == code if code else a.c.code.is_(None))
            q = q.where(a.c.model == model if model else a.c.model.is_(None))
            devices = {r[0] for r in conn.execute(q) if r[0]}
            if kind == "update.rejected":
                out["rejected"][(code,)] += n
                rejected_devices[code] |= devices
                continue
            if decisions.suppressed(_counted(conn, policy_of(model) if model else None, devices),
                                    k_of(model) if model else widest):
                continue
            if kind == "update.accepted":
                out["accepted"][(model,)] += n
            else:
                out["denied"][(model, code)] += n
    for code, devices in rejected_devices.items():
        if decisions.suppressed(len(devices), widest):
            del out["rejected"][(code,)]
    out["entries"][()] = float(total)
    v = schema.versions
    for model, status, n in conn.execute(select(v.c.model, v.c.status, func.count()).group_by(v.c.model, v.c.status)):
        out["versions"][(model, status or "published")] += int(n)  # NULL (artifact) and "published" are one series
    for m in conn.execute(select(schema.models.c.name, schema.models.c.current_version)):
        if m.current_version is None:
            continue
        row = conn.execute(select(v.c.epsilon, v.c.delta).where(v.c.model == m.name,
                                                                v.c.version == m.current_version)).first()
        if row is not None and row.epsilon is not None and math.isfinite(row.epsilon):
            out["eps"][(m.name, f"{row.delta:g}")] = float(row.epsilon)
    ca, c = schema.cell_aggregates, schema.contributions
    latest: dict[tuple[str, str, str], float] = {}
    for cell in conn.execute(select(ca.c.model, ca.c.region, ca.c.partner, ca.c.epsilon).order_by(ca.c.id)):
        if cell.epsilon is not None:
            latest[(cell.model, cell.region, cell.partner)] = float(cell.epsilon)
    for (model, region, partner), value in latest.items():
        devices = {r[0] for r in conn.execute(select(c.c.device_id).distinct().where(
            c.c.model == model, c.c.region == region, c.c.partner == partner))}
        if not decisions.suppressed(_counted(conn, policy_of(model), devices), k_of(model)):
            out["cell_eps"][(model, region, partner)] = value
    return out


def _counted(conn: Connection, policy: Policy | None, devices: set[str]) -> int:
    """How many of ``devices`` count toward the k rule of ``policy`` (attested only, under k_counts "attested")."""
    if policy is None or policy.k_counts != "attested":
        return len(devices)
    return decisions.k_devices(policy, partners.attested(conn, devices))


def init_app(app: Any, store: Store) -> None:
    """Give the app its own registry with the governance collector."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(GovernanceCollector(store))
    app.extensions["fedmark_metrics"] = registry


def render(app: Any) -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(app.extensions["fedmark_metrics"]), CONTENT_TYPE_LATEST
