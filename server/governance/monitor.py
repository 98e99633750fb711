"""Prometheus metrics at ``/metrics``, read from the database at scrape time.

Why from the database rather than in-process counters: several server
processes (gunicorn workers, other hosts) share one database, and the
audit trail already records every accepted or rejected update, round,
version and activation decision.  A custom collector turns those records into
counters (so every process reports the same, complete totals and a restart
loses nothing) and reads epsilon per model and per aggregation cell into
gauges.  Each app has its own ``CollectorRegistry``, so tests that run several
apps in one process do not collide.  Cost: a few GROUP BY queries per scrape
(indexed on ``audit_log(kind, code)``).
"""
from __future__ import annotations

import math
from typing import Any, Iterator

from sqlalchemy import func, select

from server.governance import audit
from server.storage import Store, schema


class GovernanceCollector:
    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        return []  # no database access at registration time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        accepted = CounterMetricFamily("fedmark_updates_accepted", "Updates accepted (durably stored)", labels=["model"])
        rejected = CounterMetricFamily("fedmark_updates_rejected", "Updates refused, by reason code", labels=["code"])
        rounds = CounterMetricFamily("fedmark_rounds", "Round transitions", labels=["model", "event"])
        versions = CounterMetricFamily("fedmark_versions", "Model versions, by status", labels=["model", "status"])
        activations = CounterMetricFamily("fedmark_activation_requests", "Activation requests, by decision",
                                          labels=["model", "decision", "reason"])
        denied = CounterMetricFamily("fedmark_tasks_denied", "Task requests refused by policy", labels=["model", "code"])
        entries = GaugeMetricFamily("fedmark_audit_entries", "Entries in the hash-chained audit trail")
        eps = GaugeMetricFamily("fedmark_epsilon", "Epsilon spent (current version's guarantee)", labels=["model", "delta"])
        cell_eps = GaugeMetricFamily("fedmark_cell_epsilon", "Epsilon spent per aggregation cell",
                                     labels=["model", "region", "partner"])
        with self.store.read() as conn:
            total = 0
            for kind, code, model, n in audit.counts(conn):
                total += n
                if kind == "update.accepted":
                    accepted.add_metric([model or ""], n)
                elif kind == "update.rejected":
                    rejected.add_metric([code or ""], n)
                elif kind.startswith("round."):
                    rounds.add_metric([model or "", kind.split(".", 1)[1]], n)
                elif kind.startswith("activation."):
                    activations.add_metric([model or "", kind.split(".", 1)[1], code or ""], n)
                elif kind == "task.denied":
                    denied.add_metric([model or "", code or ""], n)
            entries.add_metric([], total)
            v = schema.versions
            for model, status, n in conn.execute(select(v.c.model, v.c.status, func.count()).group_by(v.c.model, v.c.status)):
                versions.add_metric([model, status or "published"], int(n))
            for m in conn.execute(select(schema.models.c.name, schema.models.c.current_version)):
                if m.current_version is None:
                    continue
                row = conn.execute(select(v.c.epsilon, v.c.delta).where(v.c.model == m.name,
                                                                        v.c.version == m.current_version)).first()
                if row is not None and row.epsilon is not None and math.isfinite(row.epsilon):
                    eps.add_metric([m.name, f"{row.delta:g}"], float(row.epsilon))
            cells = conn.execute(select(schema.cell_aggregates.c.model, schema.cell_aggregates.c.region,
                                        schema.cell_aggregates.c.partner, schema.cell_aggregates.c.epsilon)
                                 .order_by(schema.cell_aggregates.c.id)).all()
        latest: dict[tuple[str, str, str], float] = {}
        for c in cells:
            if c.epsilon is not None:
                latest[(c.model, c.region, c.partner)] = float(c.epsilon)
        for key, value in sorted(latest.items()):
            cell_eps.add_metric(list(key), value)
        yield from (accepted, rejected, rounds, versions, activations, denied, entries, eps, cell_eps)


def init_app(app: Any, store: Store) -> None:
    """Give the app its own registry with the governance collector."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(GovernanceCollector(store))
    app.extensions["fedmark_metrics"] = registry


def render(app: Any) -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(app.extensions["fedmark_metrics"]), CONTENT_TYPE_LATEST
