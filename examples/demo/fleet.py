"""A simulated device fleet and the admin side of a demo run, over real HTTP.

Every device is a real ``edge_sdk.Client`` with its own storage directory,
talking to a real ``fedmark server`` on loopback: the demo exercises exactly
the code an app team ships.  What is simulated is only the population —
which records sit on which device, which customers consented, which devices
drop out mid-round.  The model owner's calls go through ``bench.fleet.Fleet``,
the admin HTTP client the benchmarks and the reliability suite use.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.fleet import Fleet
from edge_sdk import Client, DeviceConditions, NoTaskError, RejectedUpdateError
from fedmark.contract import unflatten, Manifest

READY = DeviceConditions(charging=True, unmetered=True, idle=True, battery=0.9)


def app_key(admin: Fleet, partner: str, region: str) -> str:
    """A new app key of ``partner``'s build for ``region`` (the key decides the region of devices enrolling with it)."""
    return admin.ok(admin.admin("POST", "/v1/admin/app-keys", json={"partner": partner, "region": region}),
                    201)["app_key"]


class AppKeys(dict):  # type: ignore[type-arg]
    """App keys by (partner, region), issued on first use: one key per partner and region, as apps ship them."""

    def __init__(self, admin: Fleet) -> None:
        super().__init__()
        self.admin = admin
        self._lock = threading.Lock()

    def __missing__(self, key: tuple[str, str]) -> str:
        with self._lock:  # devices connect from worker threads: one key per (partner, region)
            if key not in self:
                partner, region = key
                dict.__setitem__(self, key, app_key(self.admin, partner, region))
            return dict.__getitem__(self, key)

    def of(self, dev: "SimDevice") -> str:
        """The key a simulated device's app carries (its partner's build for its region)."""
        return self[dev.partner, dev.region]


def published_params(admin: Fleet, model: str, version: int, manifest: Manifest) -> list[np.ndarray]:
    """A published version's global parameters (the marketer's view of the model)."""
    raw = admin.params_bytes(model, version)
    return unflatten(np.frombuffer(raw, dtype="<f4").astype(np.float32), manifest.params)


@dataclass
class SimDevice:
    """One device of the fleet: its records never leave this object except as clipped updates."""

    device_id: str
    region: str
    partner: str
    records: Sequence[dict[str, Any]]
    storage: Path
    client: Client | None = None
    contributed: int = 0
    rounds: list[str] = field(default_factory=list)  # the rounds its accepted updates landed in

    @property
    def raw_bytes(self) -> int:
        """What centralising this device's records would move (their JSON size): the KPI's yardstick."""
        return len(json.dumps(list(self.records), default=str).encode())

    def release_models(self) -> None:
        """Drop this device's cached model files after its turn (its credentials, personal state and
        outbox stay).  Why: a recommender version is a full item table (~0.5 MB for Online Retail) and
        a device is picked again only every few rounds, when the version has changed anyway; keeping
        one copy per device made out/demo grow to about a gigabyte.  The next sync downloads the
        version it needs, verified as always."""
        shutil.rmtree(self.storage / "models", ignore_errors=True)

    def connect(self, base_url: str, app_key: str) -> Client:
        if self.client is None:
            self.client = Client(base_url, app_key=app_key, device_id=self.device_id, region=self.region,
                                 storage_dir=self.storage, allow_insecure_http=True, timeout=60.0)
        return self.client


@dataclass
class RoundOutcome:
    round_id: str | None
    state: str
    accepted: int
    dropped: int
    excluded_records: int
    upload_bytes: int
    version: int | None
    losses: list[float] = field(default_factory=list)
    late: int = 0


def run_sync_round(admin: Fleet, model: str, devices: Sequence[SimDevice], app_keys: AppKeys,
                   rng: np.random.Generator, *, dropout: float = 0.0, goal: int, workers: int = 8,
                   max_wait_s: float = 60.0) -> RoundOutcome:
    """Drive one synchronous round: devices, in random order and ``workers`` at a time, ask
    for a task, train and upload — a fleet acts in parallel, and so does this simulation.

    A device that 'drops out' fetches its task and then vanishes (no upload), as
    a phone that loses its network does; over-selection and the deadline are
    what let the round finish anyway.  A device that uploads after the round
    closed at its goal is refused as late (``round_closed``), as the server must.
    Randomness (order, dropouts, seeds) is drawn up front from ``rng``, so a run
    is reproducible up to the order in which concurrent uploads are folded.
    """
    before = admin.model(model)["current_version"]
    order = rng.permutation(len(devices))
    drops = rng.random(len(devices)) < dropout
    seeds = rng.integers(2**31, size=len(devices))
    lock = threading.Lock()
    st = {"round_id": None, "accepted": 0, "dropped": 0, "late": 0, "excluded": 0, "bytes": 0, "stop": False}
    losses: list[float] = []

    def one(i: int) -> None:
        with lock:
            if st["stop"] or st["accepted"] >= goal:
                return
        dev = devices[i]
        client = dev.connect(admin.base_url, app_keys.of(dev))
        try:
            _turn(dev, client, i)
        finally:
            dev.release_models()

    def _turn(dev: SimDevice, client: Client, i: int) -> None:
        try:
            if drops[i]:
                task = client.get_task(model)
                with lock:
                    st["round_id"] = st["round_id"] or task.round_id
                    st["dropped"] += 1
                return
            report = client.train(model, dev.records, conditions=READY, seed=int(seeds[i]))
        except NoTaskError as exc:
            # "no task" can be per device (reason already_contributed: an update of this device
            # landed in the open round from the previous call). Stop only when the round itself
            # has handed out every task.
            if exc.reason == "round_full":
                with lock:
                    st["stop"] = True
            return
        except RejectedUpdateError as exc:
            if exc.code != "round_closed":
                raise
            with lock:
                st["late"] += 1
            return
        with lock:
            st["round_id"] = st["round_id"] or report.round_id
            moved_on = report.round_id != st["round_id"]  # the round closed; this one opened the next
            if report.status in ("accepted", "duplicate"):
                st["accepted"] += not moved_on
                dev.contributed += 1
                dev.rounds.append(report.round_id)
                st["bytes"] += report.upload_bytes
                st["excluded"] += report.data.excluded_no_consent
                losses.append(report.loss)
            st["stop"] = st["stop"] or moved_on

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for fut in [pool.submit(one, int(i)) for i in order]:
            fut.result()
    state = "unknown"
    if st["round_id"] is not None:
        deadline = time.monotonic() + max_wait_s
        while True:
            state = admin.round(st["round_id"])["state"]
            if state != "open" or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # a round short of its goal closes at its deadline (tick)
            admin.tick()
    after = admin.model(model)["current_version"]
    return RoundOutcome(st["round_id"], state, st["accepted"], st["dropped"], st["excluded"], st["bytes"],
                        after if after != before else None, losses, st["late"])
