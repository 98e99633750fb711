"""A simulated device fleet and the admin side of a demo run, over real HTTP.

Every device is a real ``edge_sdk.Client`` with its own storage directory,
talking to a real ``fedmark server`` on loopback: the demo exercises exactly
the code an app team ships.  What is simulated is only the population —
which records sit on which device, which customers consented, which devices
drop out mid-round.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import requests

from edge_sdk import Client, DeviceConditions, NoTaskError
from fedmark.contract import unflatten, Manifest

READY = DeviceConditions(charging=True, unmetered=True, idle=True, battery=0.9)


class Admin:
    """The model owner's calls: app keys, training configuration, publishing, reading versions."""

    def __init__(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, self.base + path, timeout=self.timeout, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    def app_key(self, partner: str) -> str:
        return self.call("POST", "/v1/admin/app-keys", json={"partner": partner})["app_key"]

    def publish(self, artifact_dir: str | Path, model: str) -> int:
        from server.registry.artifacts import write_archive

        out = self.call("POST", f"/v1/models/{model}/versions", data=write_archive(str(artifact_dir)),
                        headers={"Content-Type": "application/gzip"})
        return int(out["version"])

    def configure(self, model: str, config: dict[str, Any]) -> None:
        self.call("PUT", f"/v1/models/{model}/training", data=json.dumps(config),
                  headers={"Content-Type": "application/json"})

    def model(self, model: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/models/{model}")

    def round(self, round_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/rounds/{round_id}")

    def tick(self) -> None:
        self.call("POST", "/v1/admin/tick")

    def params(self, model: str, version: int, manifest: Manifest) -> list[np.ndarray]:
        """A published version's global parameters (the marketer's view of the model)."""
        r = self.http.get(f"{self.base}/v1/models/{model}/versions/{version}/files/params.bin", timeout=self.timeout)
        r.raise_for_status()
        return unflatten(np.frombuffer(r.content, dtype="<f4").astype(np.float32), manifest.params)


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

    @property
    def raw_bytes(self) -> int:
        """What centralising this device's records would move (their JSON size): the KPI's yardstick."""
        return len(json.dumps(list(self.records), default=str).encode())

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


def run_sync_round(admin: Admin, model: str, devices: Sequence[SimDevice], app_keys: dict[str, str],
                   rng: np.random.Generator, *, dropout: float = 0.0, goal: int,
                   on_device: Callable[[], None] | None = None, max_wait_s: float = 30.0) -> RoundOutcome:
    """Drive one synchronous round: devices in random order ask for a task, train and upload.

    A device that 'drops out' fetches its task and then vanishes (no upload), as
    a phone that loses its network does; over-selection and the deadline are
    what let the round finish anyway.
    """
    before = admin.model(model)["current_version"]
    round_id: str | None = None
    accepted = dropped = excluded = upload_bytes = 0
    losses: list[float] = []
    for i in rng.permutation(len(devices)):
        if accepted >= goal:
            break
        dev = devices[int(i)]
        client = dev.connect(admin.base, app_keys[dev.partner])
        try:
            if rng.random() < dropout:
                task = client.get_task(model)
                round_id = round_id or task.round_id
                dropped += 1
                continue
            report = client.train(model, dev.records, conditions=READY, seed=int(rng.integers(2**31)))
        except NoTaskError:
            break  # every task of this round is handed out
        finally:
            if on_device:
                on_device()
        moved_on = round_id is not None and report.round_id != round_id
        round_id = round_id or report.round_id
        if report.status in ("accepted", "duplicate"):
            accepted += not moved_on
            dev.contributed += 1
            upload_bytes += report.upload_bytes
            excluded += report.data.excluded_no_consent
            losses.append(report.loss)
        if moved_on:
            break  # this round closed at its deadline while devices trained; that update opened the next one
    state = "unknown"
    if round_id is not None:
        deadline = time.monotonic() + max_wait_s
        while True:
            info = admin.round(round_id)
            state = info["state"]
            if state != "open" or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # short-deadline rounds close at their deadline (tick)
            admin.tick()
    after = admin.model(model)["current_version"]
    return RoundOutcome(round_id, state, accepted, dropped, excluded, upload_bytes,
                        after if after != before else None, losses)
