"""Helpers for the governance tests: a fleet of simulated devices speaking the HTTP API with ``requests``.

Devices here train a real logistic regression in numpy (the toy artifact's
parameters are its weights) on synthetic data, upload the clipped update,
and evaluate versions on their own holdout into ``fedmark.metrics.ScoreHistogram``
aggregates, exactly the reports an SDK would send.  Nothing is mocked on the
server side: every call goes over loopback HTTP to a real app.
"""
from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import requests

from fedmark.contract import UPDATE_CONTENT_TYPE, encode_update
from fedmark.metrics import ScoreHistogram

DIM = 6  # features; the artifact has params w (DIM,) and b (1,)
TRUE_W = np.array([1.5, -2.0, 1.0, 0.5, -1.0, 2.0], np.float32)


def synthetic(rng: np.random.Generator, n: int, *, flip: bool = False, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Records whose labels follow TRUE_W (or the opposite with ``flip``: a partner with bad labels)."""
    x = rng.normal(shift, 1.0, (n, DIM)).astype(np.float32)
    p = 1 / (1 + np.exp(-(x @ TRUE_W)))
    y = (rng.random(n) < p).astype(np.float32)
    return x, (1 - y) if flip else y


def predict(params: np.ndarray, x: np.ndarray) -> np.ndarray:
    w, b = params[:DIM], params[DIM]
    return 1 / (1 + np.exp(-(x @ w + b)))


def local_train(params: np.ndarray, x: np.ndarray, y: np.ndarray, lr: float = 0.5, epochs: int = 20) -> np.ndarray:
    p = params.astype(np.float64).copy()
    for _ in range(epochs):
        err = predict(p, x) - y
        p[:DIM] -= lr * x.T @ err / len(y)
        p[DIM] -= lr * err.mean()
    return p.astype(np.float32)


def clip(vec: np.ndarray, c: float | None) -> np.ndarray:
    n = float(np.linalg.norm(vec))
    return vec if c is None or n <= c else (vec * (c / n)).astype(np.float32)


@dataclass
class Device:
    fleet: "Fleet"
    device_id: str
    region: str
    partner: str
    token: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    hx: np.ndarray | None = None
    hy: np.ndarray | None = None

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.fleet.call(method, path, self.token, **kw)

    def task(self, model: str = "toy") -> requests.Response:
        return self.call("POST", "/v1/tasks", json={"model": model})

    def upload(self, task: dict[str, Any], vec: np.ndarray, num_examples: int = 10) -> requests.Response:
        body = encode_update(np.asarray(vec, np.float32), "f32")
        headers = {"Content-Type": UPDATE_CONTENT_TYPE, "X-Fedmark-Model-Version": str(task["version"]),
                   "X-Fedmark-Num-Examples": str(num_examples), "Idempotency-Key": uuid.uuid4().hex}
        return self.call("POST", task["upload_url"], data=body, headers=headers)

    def params(self, model: str, version: int) -> np.ndarray:
        r = self.call("GET", f"/v1/models/{model}/versions/{version}/files/params.bin")
        assert r.status_code == 200, r.text
        return np.frombuffer(r.content, "<f4").copy()

    def train_round(self, model: str = "toy", sign: float = 1.0) -> dict[str, Any]:
        """Ask for a task, train locally on this device's records, clip, upload; returns the task.

        ``sign=-1`` uploads the opposite of the trained step (a harmful update)."""
        r = self.task(model)
        assert r.status_code == 200, r.text
        task = r.json()
        old = self.params(task["model"], task["version"])
        assert self.x is not None and self.y is not None
        delta = clip(sign * (local_train(old, self.x, self.y) - old), task["clip_norm"])
        up = self.upload(task, delta, num_examples=len(self.y))
        assert up.status_code == 202, up.text
        return task

    def evaluate(self, model: str = "toy", segments: bool = False) -> dict[str, Any]:
        """Evaluate every version the server lists on the local holdout; report the aggregates."""
        r = self.call("POST", "/v1/evaluations/tasks", json={"model": model})
        assert r.status_code == 200, r.text
        task = r.json()
        assert self.hx is not None and self.hy is not None
        reports = []
        for v in task["versions"]:
            s = predict(self.params(task["model"], v["version"]).astype(np.float64), self.hx)
            eps = 1e-7
            loss = float(-np.sum(self.hy * np.log(s + eps) + (1 - self.hy) * np.log(1 - s + eps)))
            reports.append({"version": v["version"], "segment": "all", "kind": "binary", "count": int(len(self.hy)),
                            "loss_sum": loss, "histogram": ScoreHistogram.of(self.hy, s).to_json()})
            if segments:
                m = self.hx[:, 0] > 0
                for name, mask in (("x0_pos", m), ("x0_neg", ~m)):
                    if mask.any():
                        reports.append({"version": v["version"], "segment": name, "kind": "binary",
                                        "count": int(mask.sum()), "loss_sum": 0.0,
                                        "histogram": ScoreHistogram.of(self.hy[mask], s[mask]).to_json()})
        rep = self.call("POST", task["report_url"], json={"reports": reports})
        assert rep.status_code == 202, rep.text
        return rep.json()


@dataclass
class Fleet:
    base_url: str
    admin_token: str
    http: requests.Session = field(default_factory=requests.Session)
    app_keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (partner, region) -> app key
    device_secrets: dict[str, str] = field(default_factory=dict)  # device id -> its enrolment secret
    devices: list[Device] = field(default_factory=list)
    metrics_token: str | None = None

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.base_url + path, headers=headers, timeout=60, **kw)

    def admin(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.call(method, path, self.admin_token, **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.admin(method, path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def publish(self, name: str = "toy", seed: int = 0, tmp: Any = None) -> int:
        from server.registry.artifacts import write_archive
        from server.testing import make_artifact

        d = make_artifact(tmp / f"art-{name}-{uuid.uuid4().hex[:6]}", name, ((DIM,), (1,)), seed)
        r = self.admin("POST", f"/v1/models/{name}/versions", data=write_archive(str(d)),
                       headers={"Content-Type": "application/gzip"})
        assert r.status_code in (200, 201), r.text
        return int(r.json()["version"])

    def policy(self, name: str = "toy", **body: Any) -> dict[str, Any]:
        return self.ok("PUT", f"/v1/models/{name}/policy", json=body)

    def train(self, name: str = "toy", **cfg: Any) -> dict[str, Any]:
        return self.ok("PUT", f"/v1/models/{name}/training", json=cfg)

    def marketer(self, name: str = "ana", partner: str | None = None) -> str:
        body: dict[str, Any] = {"role": "marketer", "name": name}
        if partner:
            body["partner"] = partner
        return self.ok("POST", "/v1/admin/tokens", 201, json=body)["token"]

    def app_key(self, partner: str, region: str) -> str:
        """The app key of ``partner``'s build for ``region`` (keys are issued per region; issued on first use)."""
        if (partner, region) not in self.app_keys:
            self.app_keys[(partner, region)] = self.ok("POST", "/v1/admin/app-keys", 201,
                                                       json={"partner": partner, "region": region})["app_key"]
        return self.app_keys[(partner, region)]

    def enroll(self, device_id: str, region: str, partner: str = "acme") -> Device:
        secret = self.device_secrets.setdefault(device_id, secrets.token_urlsafe(32))
        r = self.call("POST", "/v1/devices/enroll", json={"app_key": self.app_key(partner, region),
                                                          "device_id": device_id, "region": region,
                                                          "device_secret": secret})
        assert r.status_code == 201, r.text
        dev = Device(self, device_id, region, partner, r.json()["device_token"])
        self.devices.append(dev)
        return dev

    def model(self, name: str = "toy") -> dict[str, Any]:
        return self.ok("GET", f"/v1/models/{name}")

    def params(self, model: str, version: int) -> np.ndarray:
        """A version's parameters as the admin reads them (devices download only what they train or evaluate)."""
        r = self.admin("GET", f"/v1/models/{model}/versions/{version}/files/params.bin")
        assert r.status_code == 200, r.text
        return np.frombuffer(r.content, "<f4").copy()

    def audit(self, **q: Any) -> list[dict[str, Any]]:
        out, after = [], 0
        while True:
            page = self.ok("GET", "/v1/audit", params={"after": after, "limit": 1000, **q})["entries"]
            out += page
            if len(page) < 1000:
                return out
            after = page[-1]["seq"]

    def tick(self) -> None:
        self.ok("POST", "/v1/admin/tick")


@pytest.fixture
def fleet(live: Any) -> Fleet:
    return Fleet(live.base_url, live.admin_token, metrics_token=live.metrics_token)


@pytest.fixture
def fleet_for() -> Any:
    """``fleet_for(base_url, admin_token)``: a Fleet against any server (e.g. a real process from server.testing)."""
    return lambda base_url, token, metrics_token=None: Fleet(base_url, token, metrics_token=metrics_token)


GATED_POLICY = {"purpose": "propensity_scoring", "allowed_regions": ["eu", "us", "apac"], "k_min": 2,
                "gate": {"metric": "loss", "max_regression": 0.0, "min_contributors": 3, "min_evaluators": 5},
                "partner_contribution": True}


def populate_two_partners(fleet: Fleet, tmp_path: Any, **policy_overrides: Any) -> Fleet:
    """Partner acme (clean labels) in eu, us and apac; partner globex (flipped labels) in eu and us.

    us records are shifted (a different population), so regions score differently.
    Devices hold 200 training records and a 200-record holdout each.
    """
    fleet.publish(tmp=tmp_path, seed=3)
    fleet.policy(**dict(GATED_POLICY, **policy_overrides))
    fleet.train(goal=7, min_clients=1, clip={"norm": 5.0, "adaptive": False})
    rng = np.random.default_rng(7)
    plan = [("eu", "acme"), ("eu", "acme"), ("us", "acme"), ("us", "acme"), ("apac", "acme"),
            ("eu", "globex"), ("us", "globex")]
    for i, (region, partner) in enumerate(plan):
        dev = fleet.enroll(f"{partner}-{region}-{i}", region, partner)
        shift = 0.5 if region == "us" else 0.0
        dev.x, dev.y = synthetic(rng, 200, flip=partner == "globex", shift=shift)
        dev.hx, dev.hy = synthetic(rng, 200, shift=shift)
    return fleet


@pytest.fixture
def two_partners(fleet: Fleet, tmp_path: Any) -> Fleet:
    return populate_two_partners(fleet, tmp_path)


@pytest.fixture
def populate() -> Any:
    """``populate(fleet, tmp_path, **policy_overrides)``: the two-partner fleet on any server."""
    return populate_two_partners
