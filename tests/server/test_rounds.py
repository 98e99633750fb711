"""Round policy over HTTP: sync goal / minimum / deadline / over-selection, FedBuff staleness, privacy budget."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select

from server.storage import schema

N = 15  # parameters of the default synthetic artifact: (4, 3) + (3,)


def _devices(live, n, prefix="dev"):
    return [live.enroll(f"{prefix}{i}") for i in range(n)]


def _count(db_url, table):
    eng = create_engine(db_url)
    try:
        with eng.connect() as c:
            return c.execute(select(func.count()).select_from(table)).scalar_one()
    finally:
        eng.dispose()


def test_sync_round_closes_at_goal_with_weighted_mean_and_lineage(live, db_url):
    live.publish("toy")
    live.train("toy", goal=3, min_clients=2, over_select=1.0, deadline_s=60, clip={"norm": 10.0})
    base = live.params("toy", 1)
    toks = _devices(live, 4)
    tasks = [live.task(t).json() for t in toks[:3]]
    assert len({t["round_id"] for t in tasks}) == 1 and tasks[0]["version"] == 1
    assert tasks[0]["clip_norm"] == 10.0 and tasks[0]["encoding"] == "f32"
    # over_select=1.0 -> exactly goal tasks are handed out
    r = live.task(toks[3])
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_task" and int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["reason"] == "round_full"
    # asking again returns the same pending task (idempotent)
    assert live.task(toks[0]).json()["task_id"] == tasks[0]["task_id"]
    deltas = [np.full(N, 0.1 * (i + 1), np.float32) for i in range(3)]
    weights = [10, 20, 30]
    for tok, task, d, w in zip(toks, tasks, deltas, weights):
        assert live.upload(tok, task, d, num_examples=w).status_code == 202
    rid = tasks[0]["round_id"]
    rnd = live.admin("GET", f"/v1/rounds/{rid}").json()
    assert rnd["state"] == "closed" and rnd["result_version"] == 2 and rnd["accepted"] == 3
    v2 = live.model("toy")["versions"][1]
    assert (v2["parent"], v2["round_id"], v2["contributors"], v2["kind"]) == (1, rid, 3, "round")
    assert v2["epsilon"] is None  # no DP noise configured: no finite guarantee
    expected = sum(w * d for w, d in zip(weights, deltas)) / sum(weights)
    np.testing.assert_allclose(live.params("toy", 2) - base, expected, rtol=1e-5, atol=1e-6)
    # the folded updates are gone, their idempotency receipts stay
    assert _count(db_url, schema.updates) == 0 and _count(db_url, schema.receipts) == 3
    # a late update for the closed round is refused
    r = live.upload(toks[3], tasks[0], deltas[0])
    assert r.status_code == 409 and r.json()["error"]["code"] == "round_closed"
    # the next task is for a new round on version 2
    nxt = live.task(toks[3]).json()
    assert nxt["round_id"] != rid and nxt["version"] == 2


def test_over_selection_hands_out_goal_times_factor(live):
    live.publish("toy")
    live.train("toy", goal=4, min_clients=2, over_select=1.5, deadline_s=60)
    codes = [live.task(t).status_code for t in _devices(live, 8)]
    assert codes == [200] * 6 + [409] * 2


def test_round_below_minimum_is_abandoned_at_deadline_and_reopened(live, db_url):
    live.publish("toy")
    live.train("toy", goal=5, min_clients=3, deadline_s=30)
    toks = _devices(live, 3)
    tasks = [live.task(t).json() for t in toks]
    for tok, task in zip(toks[:2], tasks[:2]):
        assert live.upload(tok, task, np.full(N, 0.1, np.float32)).status_code == 202
    live.clock.advance(29)
    live.tick()
    assert live.admin("GET", f"/v1/rounds/{tasks[0]['round_id']}").json()["state"] == "open"
    live.clock.advance(2)
    live.tick()
    rnd = live.admin("GET", f"/v1/rounds/{tasks[0]['round_id']}").json()
    assert rnd["state"] == "abandoned" and "deadline" in rnd["reason"] and rnd["result_version"] is None
    assert live.model("toy")["current_version"] == 1
    assert _count(db_url, schema.updates) == 0  # abandoned updates are discarded
    r = live.upload(toks[2], tasks[2], np.full(N, 0.1, np.float32))
    assert r.status_code == 409 and r.json()["error"]["code"] == "round_closed"
    again = live.task(toks[0]).json()  # a new round on the same version
    assert again["round_id"] != tasks[0]["round_id"] and again["version"] == 1


def test_round_at_deadline_with_minimum_closes(live):
    live.publish("toy")
    live.train("toy", goal=5, min_clients=2, deadline_s=30)
    toks = _devices(live, 2)
    tasks = [live.task(t).json() for t in toks]
    for tok, task in zip(toks, tasks):
        assert live.upload(tok, task, np.full(N, 0.2, np.float32)).status_code == 202
    assert live.model("toy")["current_version"] == 1
    live.clock.advance(31)
    # no explicit tick: the deadline is checked lazily by the next request touching the round
    rnd = live.admin("GET", f"/v1/rounds/{tasks[0]['round_id']}").json()
    assert rnd["state"] == "closed" and rnd["result_version"] == 2


def test_fedbuff_aggregates_every_k_with_staleness_discount_and_limit(live):
    live.publish("toy")
    live.train("toy", mode="async", buffer_size=2, max_staleness=1, clip={"norm": 100.0})
    toks = _devices(live, 5)
    t = {i: live.task(toks[i]).json() for i in range(4)}  # all on version 1
    assert {x["version"] for x in t.values()} == {1} and t[0]["mode"] == "async"
    rid = t[0]["round_id"]
    base = live.params("toy", 1)
    a, b = np.full(N, 1.0, np.float32), np.full(N, 3.0, np.float32)
    assert live.upload(toks[0], t[0], a, num_examples=10).status_code == 202
    assert live.model("toy")["current_version"] == 1  # buffer not full yet
    assert live.upload(toks[1], t[1], b, num_examples=10).status_code == 202
    assert live.model("toy")["current_version"] == 2
    v2 = live.params("toy", 2)
    np.testing.assert_allclose(v2 - base, (a + b) / 2, rtol=1e-5)
    # staleness 1 (computed on v1, model at v2): weight x 1/sqrt(2); a fresh v2 update has weight 1
    fresh_task = live.task(toks[4]).json()
    assert fresh_task["version"] == 2 and fresh_task["round_id"] == rid
    c, f = np.full(N, 2.0, np.float32), np.full(N, 4.0, np.float32)
    assert live.upload(toks[2], t[2], c, num_examples=10).status_code == 202
    assert live.upload(toks[4], fresh_task, f, num_examples=10).status_code == 202
    v3 = live.params("toy", 3)
    w = 1 / math.sqrt(2)
    np.testing.assert_allclose(v3 - v2, (w * c + f) / (w + 1), rtol=1e-5)
    meta = live.model("toy")["versions"][2]
    assert meta["parent"] == 2 and meta["metrics"]["mean_staleness"] == 0.5
    # t[3] was computed on v1; the model is at v3: staleness 2 > max_staleness 1
    r = live.upload(toks[3], t[3], c)
    assert r.status_code == 409 and r.json()["error"]["code"] == "stale_version"
    assert "staleness 2" in r.json()["error"]["message"]


def test_epsilon_recorded_per_version_and_budget_stops_training(live):
    live.publish("toy")
    live.train("toy", goal=2, min_clients=2, over_select=1.0, deadline_s=60, clip={"norm": 0.5},
               noise_multiplier=1.0, sampling_rate=0.5, delta=1e-5, epsilon_budget=6.0)
    eps = []
    version = 1
    for rnd in range(10):
        toks = _devices(live, 2, prefix=f"r{rnd}-")
        r = live.task(toks[0])
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "privacy_budget_exhausted"
            assert "budget" in r.json()["error"]["message"]
            break
        tasks = [r.json(), live.task(toks[1]).json()]
        for tok, task in zip(toks, tasks):
            assert live.upload(tok, task, np.full(N, 0.05, np.float32)).status_code == 202
        meta = live.model("toy")["versions"][-1]
        version += 1
        assert meta["version"] == version and meta["delta"] == 1e-5
        eps.append(meta["epsilon"])
    else:
        pytest.fail("the privacy budget never stopped training")
    assert len(eps) >= 2 and all(e is not None for e in eps)
    assert all(b > a for a, b in zip(eps, eps[1:])), eps  # epsilon grows with every release
    assert eps[-1] <= 6.0  # never beyond the budget
    from server.aggregation import PrivacyLedger
    expected = PrivacyLedger().record(1.0, 0.5, len(eps)).epsilon(1e-5)
    assert eps[-1] == pytest.approx(expected, rel=1e-9)
    assert live.model("toy")["stopped"]


def test_crash_during_close_republishes_identical_version(live, monkeypatch):
    """A close that fails before commit leaves the round open; the re-run publishes the same bits."""
    import server.rounds.aggregate as agg_mod

    live.publish("toy")
    live.train("toy", goal=2, min_clients=2, over_select=1.0, deadline_s=60, clip={"norm": 0.5},
               noise_multiplier=0.8)
    toks = _devices(live, 2)
    tasks = [live.task(t).json() for t in toks]
    seen = []
    real = agg_mod.add_round_version

    def crash(conn, blobs, name, base, new_params, **kw):
        seen.append(np.array(new_params, copy=True))
        raise RuntimeError("simulated crash before commit")

    monkeypatch.setattr(agg_mod, "add_round_version", crash)
    for tok, task in zip(toks, tasks):
        assert live.upload(tok, task, np.full(N, 0.3, np.float32)).status_code == 202  # acks do not depend on the close
    assert live.admin("GET", f"/v1/rounds/{tasks[0]['round_id']}").json()["state"] == "open"
    assert len(seen) >= 1 and all(np.array_equal(s, seen[0]) for s in seen)
    monkeypatch.setattr(agg_mod, "add_round_version", real)
    live.tick()
    assert live.model("toy")["current_version"] == 2
    np.testing.assert_array_equal(live.params("toy", 2), seen[0].astype(np.float32))
    clean = np.full(N, 0.3) * (0.5 / (0.3 * math.sqrt(N)))  # mean of two identical updates clipped to C = 0.5
    assert np.abs(seen[0] - live.params("toy", 1) - clean).max() > 1e-3  # noise was really added


def test_rollback_keeps_privacy_ledger_and_restarts_server_optimizer(live, db_url):
    from server.aggregation import PipelineState

    live.publish("toy")
    live.train("toy", goal=1, min_clients=1, over_select=1.0, clip={"norm": 1.0}, noise_multiplier=1.0,
               server_optimizer={"name": "fedadam", "lr": 0.01})

    def one_round(dev):
        tok = live.enroll(dev)
        task = live.task(tok).json()
        assert live.upload(tok, task, np.full(N, 0.1, np.float32)).status_code == 202
        return live.model("toy")["versions"][-1]

    v2, v3 = one_round("a"), one_round("b")
    assert (v2["version"], v3["version"]) == (2, 3) and v3["epsilon"] > v2["epsilon"]
    assert live.admin("POST", "/v1/models/toy/rollback", json={"version": 1}).status_code == 200
    eng = create_engine(db_url)
    try:
        with eng.connect() as c:
            state = PipelineState.from_bytes(c.execute(select(schema.models.c.agg_state)).scalar_one())
    finally:
        eng.dispose()
    assert state.optimizer.step == 0 and not state.optimizer.slots  # Adam moments of the abandoned line dropped
    assert state.aggregator.privacy.rounds == 2  # every release stays on the ledger
    v4 = one_round("c")
    assert v4["version"] == 4 and v4["parent"] == 1 and v4["epsilon"] > v3["epsilon"]


def test_a_waiting_task_request_gets_the_next_rounds_task_without_polling(live):
    """The long-poll: a device that finds the round full waits in one request and gets a task of the next round."""
    import threading
    import time as _time

    live.publish("toy")
    live.train("toy", goal=1, min_clients=1, over_select=1.0, deadline_s=100, clip={"norm": 1.0})
    a, b = live.enroll("wa"), live.enroll("wb")
    ta = live.task(a).json()
    full = live.task(b)
    assert full.status_code == 409 and full.json()["error"]["reason"] == "round_full"
    out: dict = {}

    def wait_for_task() -> None:
        t0 = _time.monotonic()
        out["r"] = live.call("POST", "/v1/tasks", b, json={"model": "toy", "wait": 10})
        out["s"] = _time.monotonic() - t0

    th = threading.Thread(target=wait_for_task)
    th.start()
    _time.sleep(0.5)
    assert "r" not in out, "the request answered before the round ended: it did not wait"
    assert live.upload(a, ta, np.full(N, 0.01, np.float32)).status_code == 202  # completes the round: goal 1
    th.join(15)
    r = out["r"]
    assert r.status_code == 200, r.text
    assert r.json()["round_id"] != ta["round_id"] and r.json()["version"] == ta["version"] + 1
    assert 0.4 < out["s"] < 5.0
    # a bounded wait still ends with no_task and a Retry-After
    t0 = _time.monotonic()
    r2 = live.call("POST", "/v1/tasks", a, json={"model": "toy", "wait": 0}), live.call(
        "POST", "/v1/tasks", live.enroll("wc"), json={"model": "toy", "wait": 1})
    assert r2[1].status_code == 409 and r2[1].json()["error"]["code"] == "no_task" and "Retry-After" in r2[1].headers
    assert 0.9 < _time.monotonic() - t0 < 5.0
    assert live.call("POST", "/v1/tasks", a, json={"model": "toy", "wait": 31}).status_code == 400
