"""Attaching federation to the app: the role's background work and the device-route refusal.

``init_app`` reads the role (:mod:`server.federation.roles`) and, for a
regional server, checks that it knows its region, its coordinator and its
credential *before* serving anything (a region that cannot push would train
and hold forever); for the coordinator it starts the global-round timer.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask, current_app, request

from server.federation import coordinator
from server.federation.region import RegionAgent
from server.federation.roles import GLOBAL, REGION, check_region_config, holds_folds, refuse_device_route, role_of
from server.federation.upstream import Upstream
from server.rounds.service import RoundService
from server.storage import BlobStore, Store

__all__ = ["FederationService", "get_federation"]

log = logging.getLogger("fedmark.server.federation")


class FederationService:
    def __init__(self) -> None:
        self.role = "single"
        self.agent: RegionAgent | None = None
        self.store: Store | None = None
        self.blobs: BlobStore | None = None
        self.clock: Any = None
        self._stop = threading.Event()

    def init_app(self, app: Flask, store: Store, blobs: BlobStore, rounds: RoundService) -> None:
        cfg = app.config
        self.role, self.store, self.blobs, self.clock = role_of(cfg), store, blobs, cfg["CLOCK"]
        rounds.hold_folds = holds_folds(cfg)
        period = float(cfg.get("FEDERATION_SYNC_S") or 0)
        if self.role == REGION:
            check_region_config(cfg)
            up = Upstream(str(cfg["UPSTREAM_URL"]), str(cfg["UPSTREAM_TOKEN"]), str(cfg["REGION"]))
            self.agent = RegionAgent(store, blobs, self.clock, up, int(cfg.get("FEDERATION_K_MIN") or 2), period)
            self.agent.start()
        elif self.role == GLOBAL and period > 0:
            threading.Thread(target=self._run_coordinator, args=(period,), name="fedmark-coordinator",
                             daemon=True).start()
        app.before_request(lambda: refuse_device_route(current_app.config, request.path))
        app.extensions["fedmark_federation"] = self

    def _run_coordinator(self, period: float) -> None:
        while not self._stop.wait(period):
            try:
                self.tick()
            except Exception:
                log.exception("coordinator timer")

    def tick(self) -> dict[str, Any]:
        """One pass of the role's background work (``POST /v1/federation/tick``)."""
        if self.agent is not None:
            return {"role": self.role, "models": self.agent.step()}
        if self.role == GLOBAL:
            assert self.store is not None and self.blobs is not None
            return {"role": self.role, "closed": coordinator.tick(self.store, self.blobs, self.clock.now())}
        return {"role": self.role}

    def status(self) -> dict[str, Any]:
        if self.agent is not None:
            return self.agent.status()
        if self.role == GLOBAL:
            assert self.store is not None
            return coordinator.status(self.store)
        return {"role": self.role}

    def stop(self) -> None:
        self._stop.set()
        if self.agent is not None:
            self.agent.stop()


def get_federation() -> FederationService:
    return current_app.extensions["fedmark_federation"]
