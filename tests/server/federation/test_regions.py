"""The proof of issue #19: three regional servers (eu, us, apac), each on its own PostgreSQL database,
under one global coordinator, all real processes on loopback.

It checks what crosses a region's border (only regional aggregates: the coordinator's database, blob
files and log hold no device id and no individual update), that the global version is the count-weighted
mean of the regional releases, that epsilon composes as the maximum over disjoint regions, and what is
published when a region is SIGKILLed mid-round (the others, at the deadline) and that it resyncs.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from examples.demo.regions import MODEL, Topology, run_region_round
from tests.server.conftest import pg_database

pytestmark = pytest.mark.postgres


def _all_text(url: str) -> str:
    """Every value of every table of a database, as one string (what a regulator would grep)."""
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    out = []
    with psycopg.connect(plain) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")]
        for t in tables:
            for row in conn.execute(f'SELECT * FROM "{t}"'):
                out.append(" ".join(str(v) for v in row))
    return "\n".join(out)


def _count(url: str, table: str) -> int:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def _rows(url: str, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return list(conn.execute(sql))


def test_three_regions_on_postgres_only_aggregates_cross_and_a_killed_region_is_left_out(tmp_path: Path):
    names = ["global", "eu", "us", "apac"]
    with pg_database() as g_url, pg_database() as eu_url, pg_database() as us_url, pg_database() as ap_url:
        urls = dict(zip(names, [g_url, eu_url, us_url, ap_url]))
        with Topology(tmp_path, database_urls=urls, goal=4, deadline_s=6.0, min_regions=2) as topo:
            sent: list[np.ndarray] = []
            # ---- global round 1: every region trains its own devices and pushes one aggregate
            for r in topo.regions:
                sent += run_region_round(topo, r, 4, 1)
            m = topo.wait_global(2, timeout=30)
            v2 = m["versions"][-1]
            assert v2["version"] == 2 and v2["metrics"]["federated"] is True
            assert sorted(v2["metrics"]["regions"]) == ["apac", "eu", "us"]
            assert v2["contributors"] == 12 and v2["metrics"]["left_out"] == []
            # epsilon: parallel composition over disjoint regions = the max of the regions' epsilons
            region_eps = [x["epsilon"] for x in v2["metrics"]["regions"].values()]
            assert all(e is not None and e > 0 for e in region_eps)
            assert v2["epsilon"] == pytest.approx(max(region_eps))
            # each region's devices are aggregated by their own server: its database holds them, not another's
            for r in topo.regions:
                own = _all_text(urls[r])
                assert f"{r}-dev-0" in own
                assert not any(f"{o}-dev-" in own for o in topo.regions if o != r)
            # the global delta is the count-weighted mean of the regional releases (FedAvg, lr 1)
            p1 = np.frombuffer(topo.coord.params_bytes(MODEL, 1), "<f4").astype(np.float64)
            p2 = np.frombuffer(topo.coord.params_bytes(MODEL, 2), "<f4").astype(np.float64)
            aggs = _rows(g_url, "SELECT contributors, aggregate_sha FROM federation_aggregates WHERE used")
            assert len(aggs) == 3
            blobs = topo.coordinator.data_dir / "blobs"  # type: ignore[union-attr]
            mean = sum(n * np.frombuffer(_blob(blobs, sha), "<f4").astype(np.float64) for n, sha in aggs) / 12
            np.testing.assert_allclose(p2 - p1, mean, atol=1e-5)
            for r in topo.regions:
                topo.wait_linked(r, 2)

            # ---- global round 2: apac is killed mid-round (SIGKILL): published from eu + us at the deadline
            for r in ("eu", "us"):
                sent += run_region_round(topo, r, 4, 2)
            sent += run_region_round(topo, "apac", 4, 2, upload=2)
            topo.servers["apac"].kill()
            v3 = topo.wait_global(3, timeout=40)["versions"][-1]
            assert sorted(v3["metrics"]["regions"]) == ["eu", "us"]
            assert v3["metrics"]["left_out"] == ["apac"] and v3["contributors"] == 8
            # apac's ledger still bounds the model (its round-1 release is in v3's lineage)
            assert v3["epsilon"] == pytest.approx(max(region_eps + [x["epsilon"] for x in
                                                                    v3["metrics"]["regions"].values()]))
            # ---- apac comes back and resyncs to the current version; its stale sub-round is dropped
            topo.servers["apac"].restart()
            topo.wait_linked("apac", 3)
            states = _rows(ap_url, "SELECT state FROM rounds ORDER BY created_at")
            assert states[-1][0] == "abandoned"

            # ---- global round 3: the coordinator is SIGKILLed while eu and us push; restarted, it stores each
            # push exactly once (regions retry with the same key) and publishes at the round's deadline
            for r in ("eu", "us"):
                topo.wait_linked(r, 3)
            _fresh_global_round(topo, min_left_s=4.0)
            for r in ("eu", "us"):
                sent += run_region_round(topo, r, 4, 3)
            topo.coordinator.kill()  # type: ignore[union-attr]
            topo.coordinator.restart()  # type: ignore[union-attr]
            v4 = topo.wait_global(4, timeout=40)["versions"][-1]
            assert sorted(v4["metrics"]["regions"]) == ["eu", "us"], v4["metrics"]
            per_round = _rows(g_url, f"SELECT region, count(*) FROM federation_aggregates WHERE global_round = "
                                     f"'{v4['metrics']['global_round']}' GROUP BY region ORDER BY region")
            assert per_round == [("eu", 1), ("us", 1)]
            for url in (eu_url, us_url):
                assert [s[0] for s in _rows(url, "SELECT state FROM federation_pushes")] == ["acked"] * 3

            # ---- what the coordinator holds: regional aggregates only
            text = _all_text(g_url)
            assert "-dev-" not in text
            for table in ("devices", "tasks", "updates", "receipts", "round_sums", "contributions"):
                assert _count(g_url, table) == 0, table
            assert _count(g_url, "federation_aggregates") == 7
            log = topo.coordinator.log()  # type: ignore[union-attr]
            assert "-dev-" not in log and "global round" in log
            stored = {p.read_bytes() for p in blobs.rglob("*") if p.is_file()}
            assert not any(u.astype("<f4").tobytes() in stored for u in sent)
            # and the held regional results never became a region's current version
            for r, url in (("eu", eu_url), ("us", us_url)):
                topo.wait_linked(r, 4)
                held = _rows(url, f"SELECT count(*) FROM versions WHERE model='{MODEL}' AND status='regional'")
                current = _rows(url, f"SELECT v.kind FROM versions v JOIN models m ON m.name = v.model AND "
                                     f"m.current_version = v.version WHERE m.name = '{MODEL}'")
                assert held == [(3,)] and current == [("federated",)], (r, held, current)


def _fresh_global_round(topo: Topology, min_left_s: float) -> None:
    """Wait until the open global round has at least ``min_left_s`` before its deadline (a round that
    opened while the test restarted a region may be nearly over: it closes unpublished, the next one opens)."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        rounds = [r for r in topo.status()["rounds"] if r["state"] == "open"]
        if rounds and rounds[0]["deadline"] - time.time() >= min_left_s:
            return
        time.sleep(0.1)
    raise AssertionError(f"no fresh global round: {topo.status()['rounds'][:2]}")


def _blob(root: Path, sha: str) -> bytes:
    hexd = sha.split(":", 1)[-1]
    hits = [p for p in root.rglob(f"*{hexd}*") if p.is_file()]
    assert hits, f"no blob {sha} under {root}"
    return hits[0].read_bytes()
