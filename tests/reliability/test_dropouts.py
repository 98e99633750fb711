"""Devices that vanish mid-round: over-selection and the deadline keep training going; too few abandon cleanly.

The app runs with a ManualClock (deadlines move without sleeping) and is
driven over loopback HTTP; ``POST /v1/admin/tick`` runs the deadline checks.
Each round hands out goal x over_select tasks; a seeded 30 % of the selected
devices never upload.  Rounds must still publish a version — at the goal when
enough remain, else at the deadline with at least ``min_clients`` — whose
``contributors`` equals the uploads.  A round left below ``min_clients`` is
abandoned at its deadline with its updates discarded (the model does not
move), and the next task request opens a fresh round on the same version.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.fleet import synthetic_update
from fedmark.contract import encode_update

N = 50
GOAL, MIN, OVER = 10, 6, 1.5


def _round(f: Any, clock: Any, devs: list[str], rng: np.random.Generator, drop: float,
           version: int) -> dict[str, Any]:
    """Run one round: every device asks for a task, the survivors upload, the clock passes the deadline if needed."""
    tasks = {}
    for d in devs:
        r = f.task(d, "m")
        if r.status_code == 200:
            tasks[d] = r.json()
        else:
            assert r.status_code == 409 and r.json()["error"]["code"] == "no_task", r.text
    assert len(tasks) == math.ceil(GOAL * OVER), "over-selection hands out goal x over_select tasks"
    rid = {t["round_id"] for t in tasks.values()}
    assert len(rid) == 1 and all(t["version"] == version for t in tasks.values())
    selected = sorted(tasks)
    vanish = set(rng.choice(selected, size=round(drop * len(selected)), replace=False).tolist())
    sent = 0
    for i, d in enumerate(selected):
        if d in vanish:
            continue
        r = f.upload(d, tasks[d], encode_update(synthetic_update(N, int(rng.integers(1 << 30)), 0.01)))
        if sent < GOAL:
            assert r.status_code == 202, r.text
            sent += 1
        else:  # the round closed at its goal: late devices are told so
            assert r.status_code == 409 and r.json()["error"]["code"] == "round_closed", r.text
    info = f.round(rid.pop())
    if info["state"] == "open":
        clock.advance(10_000)  # past the deadline, without sleeping
        f.tick()
        info = f.round(info["round_id"])
    return dict(info, sent=sent, selected=len(selected), vanished=len(vanish))


def test_rounds_complete_with_30_percent_dropouts_and_abandon_below_minimum(clocked: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    with clocked() as (f, clock):
        f.publish_synthetic("m", N, tmp_path)
        f.train("m", goal=GOAL, min_clients=MIN, over_select=OVER, deadline_s=600, clip={"norm": 1.0})
        devs = [f.enroll(f"d{i}") for i in range(40)]
        version = 1
        for k in range(4):  # 30 % of 15 selected vanish: 10 or more remain -> closes at the goal
            info = _round(f, clock, devs, rng, 0.3, version)
            assert info["state"] == "closed" and info["accepted"] == min(info["sent"], GOAL), info
            version += 1
            m = f.model("m")
            assert m["current_version"] == version and m["versions"][-1]["contributors"] == info["accepted"]
        # 50 % vanish: 7 or 8 remain, below the goal but above the minimum -> closes at the deadline
        info = _round(f, clock, devs, rng, 0.5, version)
        assert info["state"] == "closed" and MIN <= info["accepted"] == info["sent"] < GOAL, info
        version += 1
        assert f.model("m")["versions"][-1]["contributors"] == info["sent"]
        # 70 % vanish: 4 or 5 remain, below the minimum -> abandoned, nothing published, reopened on the same version
        before = f.params_bytes("m", version)
        info = _round(f, clock, devs, rng, 0.7, version)
        assert info["state"] == "abandoned" and info["accepted"] == info["sent"] < MIN, info
        assert info["result_version"] is None and "deadline" in info["reason"]
        m = f.model("m")
        assert m["current_version"] == version and f.params_bytes("m", version) == before
        again = _round(f, clock, devs, rng, 0.0, version)  # a fresh round on the same version completes
        assert again["round_id"] != info["round_id"] and again["state"] == "closed" and again["accepted"] == GOAL
        assert f.model("m")["current_version"] == version + 1
