"""SIGKILL the server at random moments of ingestion and of aggregation; restart; nothing is lost or doubled.

One stopped server directory is the common start (model published, training
configured with clipping and seeded DP noise, devices enrolled, tasks issued);
every run starts from a copy of it, so all runs share the round id and noise
secret and must publish the *same bytes*.  The crash-free run gives the
reference ``params.bin``.  Each trial then copies the start, uploads the
updates in the reference order, SIGKILLs the server at a random instant,
restarts it and lets the devices resend with their original idempotency keys
(as the SDK's outbox does).  Required: every update acknowledged before the
crash is answered 200 with its original answer (stored once), every update is
counted exactly once, exactly one version is published, and its parameters
equal the reference bit for bit.  Bounded: 20 trials per test, fixed seeds.
"""
from __future__ import annotations

import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.fleet import Fleet, copy_server_dir, encoded
from server.testing import ServerProcess

TRIALS = 20


@dataclass
class Start:
    """The common starting state and what the devices will send."""

    dir: Path
    tokens: list[str]
    tasks: list[dict[str, Any]]
    bodies: list[bytes]
    keys: list[str]
    reference: bytes = b""
    upload_s: list[float] = field(default_factory=list)


def _prepare(servers: Any, n: int, goal: int) -> Start:
    base = servers.start("base")
    f = servers.fleet(base)
    f.publish_synthetic("m", n, servers.tmp)
    f.train("m", goal=goal, min_clients=goal, over_select=1.0, deadline_s=3600, clip={"norm": 1.0},
            noise_multiplier=1.0)
    devs = f.devices(goal, "m")
    base.stop()
    start = Start(base.data_dir, [d.token for d in devs], [d.task for d in devs],  # type: ignore[misc]
                  encoded(n, range(goal), 0.01), [f"key-{i}" for i in range(goal)])
    ref = servers.start("reference", copy_server_dir(start.dir, servers.tmp / "reference"))
    fr = servers.fleet(ref)
    for i in range(goal):
        t0 = time.perf_counter()
        assert _send(fr, start, i).status_code == 202
        start.upload_s.append(time.perf_counter() - t0)
    m = fr.model("m")
    assert m["current_version"] == 2 and m["versions"][-1]["contributors"] == goal
    start.reference = fr.params_bytes("m", 2)
    ref.stop()
    return start


def _send(f: Fleet, s: Start, i: int) -> requests.Response:
    return f.upload(s.tokens[i], s.tasks[i], s.bodies[i], s.keys[i])


def _finish_and_check(f: Fleet, srv: ServerProcess, s: Start, acked: dict[int, dict[str, Any]]) -> None:
    """Resend everything in order (the devices' outboxes), close the round if needed, compare with the reference."""
    goal = len(s.bodies)
    for i in range(goal):
        r = _send(f, s, i)
        if i in acked:
            assert r.status_code == 200 and r.json() == acked[i], f"acknowledged update {i} answered {r.status_code} {r.text}"
        else:
            assert r.status_code in (200, 202), r.text
    f.tick()  # a crash inside the close leaves the round open with every update stored: the close runs again
    m = f.wait_version("m", 2, timeout=120)
    rnd = f.round(s.tasks[0]["round_id"])
    assert rnd["state"] == "closed" and rnd["accepted"] == goal, rnd
    assert m["current_version"] == 2 and len(m["versions"]) == 2, "exactly one version must be published"
    assert m["versions"][-1]["contributors"] == goal
    assert f.params_bytes("m", 2) == s.reference, "the published parameters differ from the crash-free run"
    assert srv.alive()


def _trial_server(servers: Any, s: Start, k: int) -> ServerProcess:
    return servers.start(f"trial-{k}", copy_server_dir(s.dir, servers.tmp / f"trial-{k}"))


def _drop(servers: Any, srv: ServerProcess) -> None:
    srv.stop()
    servers.started.remove(srv)
    shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.mark.slow
def test_sigkill_during_ingestion_loses_and_doubles_nothing(servers: Any) -> None:
    goal = 12
    s = _prepare(servers, 100_000, goal)
    window = sum(s.upload_s[:-1])  # the time the first goal-1 uploads took: crash somewhere in there
    rng = random.Random(11)
    outcomes = []
    for k in range(TRIALS):
        srv = _trial_server(servers, s, k)
        f = servers.fleet(srv)
        acked: dict[int, dict[str, Any]] = {}

        def uploads() -> None:
            for i in range(goal - 1):
                try:
                    r = _send(f, s, i)
                except requests.RequestException:
                    return  # the server died under this request: not acknowledged
                assert r.status_code == 202, r.text
                acked[i] = r.json()

        th = threading.Thread(target=uploads)
        th.start()
        time.sleep(rng.uniform(0.0, window))
        srv.kill()
        th.join(60)
        outcomes.append(len(acked))
        srv.restart()
        _finish_and_check(f, srv, s, acked)
        _drop(servers, srv)
    assert len(set(outcomes)) >= 4, f"the crashes should land at varied points of the ingestion: {outcomes}"


@pytest.mark.slow
def test_sigkill_during_aggregation_publishes_the_reference_version_once(servers: Any) -> None:
    goal = 8
    s = _prepare(servers, 500_000, goal)
    window = s.upload_s[-1]  # the last upload's request includes the close: fold, noise, new version, commit
    rng = random.Random(12)
    published_before_restart = 0
    for k in range(TRIALS):
        srv = _trial_server(servers, s, k)
        f = servers.fleet(srv)
        acked = {i: _send(f, s, i).json() for i in range(goal - 1)}
        last: list[requests.Response] = []
        def send_last() -> None:
            try:
                last.append(_send(f, s, goal - 1))
            except requests.RequestException:
                pass

        th = threading.Thread(target=send_last)
        th.start()
        time.sleep(rng.uniform(0.0, window * 1.1))
        srv.kill()
        th.join(60)
        if last and last[0].status_code == 202:
            acked[goal - 1] = last[0].json()
        srv.restart()
        published_before_restart += int(f.model("m")["current_version"] == 2)
        _finish_and_check(f, srv, s, acked)
        _drop(servers, srv)
    assert published_before_restart < TRIALS, "no crash landed inside the aggregation"
