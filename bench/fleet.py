"""A simulated device fleet and admin, speaking fedmark's HTTP API with ``requests``.

Why here (and not inside one test file): the ingestion / end-to-end benchmarks
and the reliability suite (tests/reliability) drive the same sequences —
publish a model of N parameters, configure training, enrol devices, take tasks,
post pre-encoded updates — and must do it exactly as a device does, over
loopback HTTP to a real server process.  Nothing here imports the server.
"""
from __future__ import annotations

import secrets
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import requests

from fedmark.contract import (HDR_IDEMPOTENCY, HDR_MODEL_VERSION, HDR_NUM_EXAMPLES, HDR_WITHIN_CLIP,
                              UPDATE_CONTENT_TYPE, encode_update)

TIMEOUT = 60.0


def upload_headers(token: str, version: int, key: str, num_examples: int = 10,
                   within_clip: str | None = "1") -> dict[str, str]:
    """Headers of ``POST /v1/rounds/{id}/updates`` (docs/API.md)."""
    h = {"Authorization": f"Bearer {token}", "Content-Type": UPDATE_CONTENT_TYPE,
         HDR_MODEL_VERSION: str(version), HDR_NUM_EXAMPLES: str(num_examples), HDR_IDEMPOTENCY: key}
    if within_clip is not None:
        h[HDR_WITHIN_CLIP] = within_clip
    return h


def synthetic_update(n: int, seed: int, scale: float = 0.01) -> np.ndarray:
    """A deterministic stand-in for a device's update (a pre-computed delta)."""
    return np.random.default_rng(seed).normal(0.0, scale, n).astype(np.float32)


@dataclass
class Device:
    device_id: str
    token: str
    task: dict[str, Any] | None = None


class Fleet:
    """Admin calls plus device calls against one server (``base_url``)."""

    def __init__(self, base_url: str, admin_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_token = admin_token
        self.http = requests.Session()
        self._app_keys: dict[str, str] = {}  # region -> app key (keys are issued per region)
        self.device_secrets: dict[str, str] = {}  # device id -> its enrolment secret (proof on re-enrolment)

    # ------------------------------------------------------------------ raw calls
    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.base_url + path, headers=headers, timeout=kw.pop("timeout", TIMEOUT), **kw)

    def admin(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.call(method, path, self.admin_token, **kw)

    def ok(self, r: requests.Response, *codes: int) -> Any:
        if r.status_code not in (codes or (200,)):
            raise AssertionError(f"{r.request.method} {r.url} -> {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    # ------------------------------------------------------------------ models and training
    def publish_dir(self, directory: str | Path, name: str) -> dict[str, Any]:
        from server.registry.artifacts import write_archive  # packs an artifact dir as the API wants (no server state)

        r = self.admin("POST", f"/v1/models/{name}/versions", data=write_archive(str(directory)),
                       headers={"Content-Type": "application/gzip"})
        return self.ok(r, 200, 201)

    def publish_synthetic(self, name: str, n_params: int, workdir: str | Path, seed: int = 0) -> dict[str, Any]:
        """Publish a valid artifact whose parameters are one vector of ``n_params`` float32."""
        from server.testing import make_artifact

        d = make_artifact(Path(workdir) / f"art-{name}-{n_params}-{seed}", name, ((n_params,),), seed)
        return self.publish_dir(d, name)

    def train(self, name: str, **cfg: Any) -> dict[str, Any]:
        return self.ok(self.admin("PUT", f"/v1/models/{name}/training", json=cfg))

    def model(self, name: str) -> dict[str, Any]:
        return self.ok(self.admin("GET", f"/v1/models/{name}"))

    def round(self, round_id: str) -> dict[str, Any]:
        return self.ok(self.admin("GET", f"/v1/rounds/{round_id}"))

    def params_bytes(self, name: str, version: int) -> bytes:
        r = self.admin("GET", f"/v1/models/{name}/versions/{version}/files/params.bin")
        if r.status_code != 200:
            raise AssertionError(f"params.bin of {name} v{version}: {r.status_code} {r.text[:300]}")
        return r.content

    def tick(self) -> list[str]:
        return self.ok(self.admin("POST", "/v1/admin/tick"))["checked"]

    def wait_version(self, name: str, version: int, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until ``name`` has a current version >= ``version`` (a closed round published it)."""
        end = time.monotonic() + timeout
        while True:
            m = self.model(name)
            if (m["current_version"] or 0) >= version:
                return m
            if time.monotonic() > end:
                raise AssertionError(f"{name} did not reach version {version} within {timeout} s: {m}")
            time.sleep(0.05)

    # ------------------------------------------------------------------ devices
    def app_key(self, region: str = "eu") -> str:
        """The app key of partner bench's build for ``region`` (the key decides the device's region)."""
        if region not in self._app_keys:
            self._app_keys[region] = self.ok(self.admin("POST", "/v1/admin/app-keys",
                                                        json={"partner": "bench", "region": region}), 201)["app_key"]
        return self._app_keys[region]

    def enroll(self, device_id: str, region: str = "eu") -> str:
        secret = self.device_secrets.setdefault(device_id, secrets.token_urlsafe(32))
        r = self.call("POST", "/v1/devices/enroll", json={"app_key": self.app_key(region), "device_id": device_id,
                                                          "region": region, "device_secret": secret})
        return self.ok(r, 201)["device_token"]

    def task(self, token: str, model: str) -> requests.Response:
        return self.call("POST", "/v1/tasks", token, json={"model": model})

    def upload(self, token: str, task: dict[str, Any], body: bytes, key: str | None = None, *,
               num_examples: int = 10, version: int | None = None, within_clip: str | None = "1",
               extra_headers: dict[str, str] | None = None, url: str | None = None) -> requests.Response:
        h = upload_headers(token, task["version"] if version is None else version, key or uuid.uuid4().hex,
                           num_examples, within_clip)
        h.update(extra_headers or {})
        return self.http.post(self.base_url + (url or task["upload_url"]), data=body, headers=h, timeout=TIMEOUT)

    def devices(self, n: int, model: str | None = None, prefix: str = "dev", threads: int = 8,
                region: str = "eu") -> list[Device]:
        """Enrol ``n`` devices (in parallel) and, if ``model`` is given, take a task for each."""
        def one(i: int) -> Device:
            f = Fleet(self.base_url, self.admin_token)
            f._app_keys, f.device_secrets = self._app_keys, self.device_secrets
            dev = Device(f"{prefix}-{i}", f.enroll(f"{prefix}-{i}", region))
            if model is not None:
                dev.task = f.ok(f.task(dev.token, model))
            return dev

        self.app_key(region)
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, range(n)))


def encoded(n: int, seeds: Sequence[int], scale: float = 0.01) -> list[bytes]:
    return [encode_update(synthetic_update(n, s, scale)) for s in seeds]


def copy_server_dir(src: str | Path, dst: str | Path) -> Path:
    """Copy a *stopped* server's data directory (SQLite file, WAL, blobs), so a second server starts in the same state."""
    dst = Path(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("server-*.log"))
    return dst
