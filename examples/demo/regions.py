"""``fedmark demo --regions``: one server per region (eu, us, apac) under a global coordinator, on loopback.

What it shows (docs/GOVERNANCE.md, "Federation"): each region's devices
enrol, train and are aggregated by *their own region's server and database*;
only the noised regional aggregate, its contributor count, clip-bit sum and
epsilon go up to the coordinator, which publishes the global version that
every region then serves.  The second round kills one region's server
mid-round (SIGKILL): the coordinator publishes from the other two at the
deadline, and the killed region, restarted, resyncs to the new version.

:class:`Topology` is the one home of starting this topology; the proof test
(tests/server/federation/test_regions.py) and ``bench/regions.py`` use it
too.  SQLite by default; pass database URLs (PostgreSQL in the tests) to put
each server on its own database.  The devices are synthetic-update devices of
``bench.fleet`` (real enrolment, tasks and binary uploads over HTTP): the
topology, not the model, is what this demo is about.
"""
from __future__ import annotations

import json
import time
import zlib
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.fleet import Fleet, encoded
from server.testing import ServerProcess, make_artifact, start_server

__all__ = ["REGIONS", "Topology", "run_region_round", "main"]

REGIONS = ("eu", "us", "apac")
MODEL = "propensity-fed"


@dataclass
class Topology:
    """A coordinator plus one regional server per region, each on its own database; ended by :meth:`close`."""

    workdir: Path
    regions: Sequence[str] = REGIONS
    database_urls: dict[str, str] | None = None  # "global" and each region -> URL; None: SQLite in each data dir
    num_params: int = 64
    goal: int = 4
    noise_multiplier: float = 0.5
    deadline_s: float = 8.0
    min_regions: int = 2
    sync_s: float = 0.2
    #: A real trainer artifact (its manifest names the model) and a training configuration for the regions;
    #: None: a synthetic MODEL of ``num_params`` and the DP config above.  ``server_optimizer``: the coordinator's.
    artifact: Path | None = None
    training: dict[str, Any] | None = None
    server_optimizer: dict[str, Any] | None = None
    model: str = MODEL
    coordinator: ServerProcess | None = None
    servers: dict[str, ServerProcess] = field(default_factory=dict)
    fleets: dict[str, Fleet] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)
    _stack: ExitStack = field(default_factory=ExitStack)

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> ServerProcess:
        env = {"FEDMARK_FEDERATION_SYNC_S": str(self.sync_s), "FEDMARK_TICK_SECONDS": "0.5", **env}
        srv = start_server(self.workdir / name, database_url=(self.database_urls or {}).get(name),
                           extra_args=["--workers", "1", "--threads", "8", *args], extra_env=env)
        self._stack.callback(srv.stop)
        return srv

    def start(self) -> "Topology":
        self.workdir.mkdir(parents=True, exist_ok=True)
        art = self.artifact or make_artifact(self.workdir / "artifact", MODEL, ((self.num_params,),), seed=7)
        self.coordinator = self._start("global", ["--role", "global"], {})
        coord = Fleet(self.coordinator.base_url, self.coordinator.admin_token)
        coord.publish_dir(art, self.model)
        fed: dict[str, Any] = {"deadline_s": self.deadline_s, "min_regions": self.min_regions}
        if self.server_optimizer is not None:
            fed["server_optimizer"] = self.server_optimizer
        coord.ok(coord.admin("PUT", f"/v1/federation/models/{self.model}", json=fed))
        for region in self.regions:
            self.credentials[region] = coord.ok(coord.admin("POST", "/v1/federation/regions",
                                                            json={"region": region}), 201)["credential"]
            srv = self._start(region, ["--role", "region", "--region", region, "--upstream",
                                       self.coordinator.base_url], {"FEDMARK_UPSTREAM_TOKEN": self.credentials[region]})
            self.servers[region] = srv
            f = Fleet(srv.base_url, srv.admin_token)
            f.publish_dir(art, self.model)
            f.train(self.model, **(self.training or dict(
                goal=self.goal, min_clients=max(1, self.goal - 1), deadline_s=60.0,
                noise_multiplier=self.noise_multiplier, clip={"norm": 1.0, "adaptive": False})))
            self.fleets[region] = f
        for region in self.regions:
            self.wait_linked(region, 1)
        return self

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> "Topology":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ looking at it
    @property
    def coord(self) -> Fleet:
        assert self.coordinator is not None
        return Fleet(self.coordinator.base_url, self.coordinator.admin_token)

    def status(self, region: str | None = None) -> dict[str, Any]:
        f = self.coord if region is None else self.fleets[region]
        return f.ok(f.admin("GET", "/v1/federation/status"))

    def linked(self, region: str) -> int | None:
        """The global version the region's current local version holds (None before its first pull)."""
        f = self.fleets[region]
        cur = f.model(self.model)["current_version"]
        for link in self.status(region)["links"]:
            if link["model"] == self.model and link["local_version"] == cur:
                return int(link["global_version"])
        return None

    def wait_linked(self, region: str, global_version: int, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while self.linked(region) != global_version:
            if time.monotonic() > end:
                raise AssertionError(f"region {region} did not install global v{global_version}: "
                                     f"{json.dumps(self.status(region))[:800]}")
            time.sleep(0.1)

    def wait_global(self, version: int, timeout: float = 60.0) -> dict[str, Any]:
        return self.coord.wait_version(self.model, version, timeout)


def run_region_round(topo: Topology, region: str, n: int, round_no: int, upload: int | None = None,
                     scale: float = 0.05) -> list[np.ndarray]:
    """``n`` devices of ``region`` take a task and ``upload`` of them (default all) send a synthetic update.

    Device ids are ``<region>-dev-<i>``: the test looks for them on the coordinator.  Returns the update
    vectors sent (the test checks none of them reaches the coordinator)."""
    f = topo.fleets[region]
    devs = f.devices(n, MODEL, prefix=f"{region}-dev", region=region)
    seeds = [zlib.crc32(f"{region}|{round_no}|{i}".encode()) for i in range(n)]
    bodies = encoded(topo.num_params, seeds, scale)
    sent = []
    for dev, body, seed in list(zip(devs, bodies, seeds))[: n if upload is None else upload]:
        assert dev.task is not None
        f.ok(f.upload(dev.token, dev.task, body), 200, 201, 202)
        sent.append(np.random.default_rng(seed).normal(0.0, scale, topo.num_params).astype(np.float32))
    return sent


def main(out: str, fast: bool = False) -> int:
    """The demo: two global rounds over three regions, the second with a region killed mid-round."""
    workdir = Path(out) / "regions"
    n = 4 if fast else 20
    with Topology(workdir, goal=n, deadline_s=10.0 if fast else 20.0) as topo:
        print(f"coordinator {topo.coordinator.base_url if topo.coordinator else ''}; regions: " +
              ", ".join(f"{r} {s.base_url}" for r, s in topo.servers.items()))
        for r in topo.regions:
            run_region_round(topo, r, n, 1)
        v2 = topo.wait_global(2)
        print(f"global round 1 -> v{v2['current_version']}: " + json.dumps(
            topo.coord.model(MODEL)["versions"][-1]["metrics"]["regions"]))
        for r in topo.regions:
            topo.wait_linked(r, 2)
        victim = topo.regions[-1]
        for r in topo.regions[:-1]:
            run_region_round(topo, r, n, 2)
        run_region_round(topo, victim, n, 2, upload=n // 2)
        topo.servers[victim].kill()
        print(f"region {victim} killed (SIGKILL) mid-round")
        last = topo.wait_global(3, timeout=topo.deadline_s + 30)["versions"][-1]
        print(f"global round 2 -> v{last['version']}: regions {sorted(last['metrics']['regions'])}, left out "
              f"{last['metrics']['left_out']}, epsilon {last['epsilon']}")
        topo.servers[victim].restart()
        topo.wait_linked(victim, 3)
        print(f"region {victim} restarted and resynced to global v3")
        summary = {"global": topo.status(), **{r: topo.status(r) for r in topo.regions}}
        (workdir / "federation.json").write_text(json.dumps(summary, indent=2, default=str))
        print(f"federation status written to {workdir / 'federation.json'}")
    return 0
