"""Monitor: the dashboard page loads in real headless Chromium against a server with real rounds and draws charts."""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from server.testing import REPO_ROOT, running_server

ARTIFACTS = REPO_ROOT / "test-artifacts"
SCRIPT = Path(__file__).resolve().parent / "js" / "dashboard_browser.mjs"


def _prerequisites() -> str:
    node = shutil.which("node")
    assert node, "node (>= 20) is not on PATH; install Node.js 20 to run the browser tests"
    assert Path("/usr/bin/chromium").exists(), "Chromium is missing; run scripts/install_browser_deps.sh"
    assert (REPO_ROOT / "edge_sdk" / "web" / "node_modules" / "playwright-core").is_dir(), (
        "playwright-core is missing; run scripts/install_browser_deps.sh")
    return node


@pytest.mark.browser
def test_dashboard_renders_charts_in_chromium(tmp_path, fleet_for, populate):
    node = _prerequisites()
    with running_server(tmp_path / "srv") as srv:
        fl = fleet_for(srv.base_url, srv.admin_token)
        fl.tmp = tmp_path
        populate(fl, tmp_path, record_bytes=300)
        fl.train(goal=7, min_clients=1, clip={"norm": 2.0, "adaptive": False}, noise_multiplier=0.5)
        for _ in range(2):  # two gated DP rounds, each evaluated by the acme devices
            for d in fl.devices:
                d.train_round()
            for d in fl.devices:
                if d.partner == "acme":
                    d.evaluate()
        for d in fl.devices[:4]:
            d.call("POST", "/v1/segments/reports", json={"model": "toy", "version": fl.model()["current_version"],
                                                         "purpose": "propensity_scoring", "counts": {"high": 5}})
        _statistics_release(fl)
        mt = fl.marketer("ana")
        fl.call("POST", "/v1/activation/segments", mt, json={"model": "toy", "purpose": "propensity_scoring"})
        fl.call("POST", "/v1/activation/segments", mt, json={"model": "toy", "purpose": "ads"})
        versions = fl.model()["versions"]
        spec = {"url": f"{srv.base_url}/dashboard?token={mt}&model=toy", "out": str(tmp_path / "out.json"),
                "screenshot": str(ARTIFACTS / "dashboard.png"), "widths": [1400, 360]}
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        proc = subprocess.run([node, str(SCRIPT)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=110,
                              env={**os.environ, "FEDMARK_DASHBOARD": str(tmp_path / "spec.json")})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rounds = fl.call("GET", "/v1/models/toy/rounds", mt).json()["rounds"]
    views = json.loads((tmp_path / "out.json").read_text())["views"]
    for width, out in views.items():
        check_view(int(width), out, mt, versions, rounds)


def _statistics_release(fl) -> None:
    """A federated statistics release of the toy model's feature (issue #15): the readiness panel's data."""
    from fedmark.contract.statistics import StatisticsPlan, local_statistics

    decl = {"label": "y", "positive": "1", "columns": {"x0": {"kind": "numeric", "range": [-10, 10]}}}
    task = fl.ok("POST", "/v1/models/toy/statistics", 201,
                 json={"declaration": decl, "config": {"noise_multiplier": 0, "k": 2, "clip": 1e9}})
    plan = StatisticsPlan.from_declaration(decl)
    for d in fl.devices:
        rows = [{"x0": float(v[0]), "y": str(int(t))} for v, t in zip(d.x, d.y)]
        body = dict(local_statistics(rows, plan), violations={}, excluded={"consent": 0, "rules": 0})
        r = d.call("POST", task["report_url"], json=body, headers={"Idempotency-Key": f"s-{d.device_id}"})
        assert r.status_code == 202, r.text
    fl.ok("POST", f"/v1/models/toy/statistics/{task['task_id']}/release", 200)


def png_size(path: str) -> tuple[int, int]:
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def check_view(width: int, out: dict, mt: str, versions: list, rounds: list) -> None:
    assert "Chrome" in out["user_agent"]
    # the token given in the address left it at once: not in the final URL nor in the page's own location
    for url in (out["page_url"], out["href"]):
        assert "token" not in url and mt not in url and url.endswith("/dashboard?model=toy"), url
    assert out["errors"] == [] and out["console"] == [], out
    assert out["status"].startswith("Loaded toy"), out["status"]
    # drawn by the bundled Chart.js (no CDN: the page's CSP allows only this origin)
    assert out["chart_library"] and out["chart_library"].startswith("4."), out["chart_library"]
    assert out["canvases"] == 4, out["canvases"]
    eps = [v["epsilon"] for v in versions if v["epsilon"] is not None and v["status"] != "variant"]
    assert len(eps) >= 2 and np.allclose(out["epsilon_points"], eps) and out["epsilon_series"] == 1
    assert len(out["round_bars"]) == 2 and all(b == 7 for b in out["round_bars"])
    assert len(out["region_bars"]) >= 4 and all(b > 0 for b in out["region_bars"])  # loss of eu/us for 2 versions
    assert out["region_axis_min"] > 0, "the region axis spans the data instead of starting at 0"
    assert len(out["partner_bars"]) == 2
    assert out["version_rows"] == len(versions) and out["round_rows"] == len(rounds) == 2
    # the readiness panel: eu and us of acme judged, the one-device cells suppressed (k = 2)
    assert sorted(out["readiness_rows"]) == ["ready", "ready", "suppressed", "suppressed", "suppressed"], out
    assert out["readiness_summary"][0] == "All 2 region/partner cells are ready to train.", out["readiness_summary"]
    assert out["kpis"]["kpi-gtc"] == "100.0%" and out["kpis"]["kpi-car"] == "50.0%"
    assert out["kpis"]["kpi-rdmr"].startswith("0 of ") and out["kpis"]["kpi-pl"].endswith("×")
    # nothing wider than the viewport (tables scroll inside their boxes), and the screenshot says the same
    assert out["inner_width"] == width and out["scroll_width"] <= width, (width, out["scroll_width"], out["overflowing"][:10])
    assert out["overflowing"] == [], (width, out["overflowing"][:10])
    shot_w, shot_h = png_size(out["screenshot"])
    assert shot_w == width and shot_h >= 900 and Path(out["screenshot"]).stat().st_size > 20_000, (shot_w, shot_h)


@pytest.mark.browser
def test_sixty_rounds_keep_readable_axis_labels(tmp_path, fleet_for):
    """At 60 rounds the participation chart shows a readable subset of round labels at 360 and 1400 px."""
    from tests.server.governance.conftest import synthetic  # the toy model's records
    node = _prerequisites()
    with running_server(tmp_path / "srv") as srv:
        fl = fleet_for(srv.base_url, srv.admin_token)
        fl.publish(tmp=tmp_path, seed=1)
        fl.train(goal=1, min_clients=1, clip={"norm": 5.0, "adaptive": False})
        rng = np.random.default_rng(0)
        devs = [fl.enroll(f"d{i}", "eu") for i in range(12)]  # spread the requests under the per-device limit
        for d in devs:
            d.x, d.y = synthetic(rng, 50)
        for r in range(60):
            devs[r % len(devs)].train_round()
        mt = fl.marketer("ana")
        spec = {"url": f"{srv.base_url}/dashboard?token={mt}&model=toy", "out": str(tmp_path / "out.json"),
                "screenshot": str(ARTIFACTS / "dashboard-60-rounds.png"), "widths": [1400, 360]}
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        proc = subprocess.run([node, str(SCRIPT)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=110,
                              env={**os.environ, "FEDMARK_DASHBOARD": str(tmp_path / "spec.json")})
        assert proc.returncode == 0, proc.stdout + proc.stderr
    for width, out in json.loads((tmp_path / "out.json").read_text())["views"].items():
        assert out["errors"] == [] and len(out["round_bars"]) == 60, (width, out["errors"], len(out["round_bars"]))
        ticks = out["round_ticks"]
        assert 2 <= len(ticks) < 60 and all(re.fullmatch(r"#\d+", t) for t in ticks), (width, ticks)
        assert out["overflowing"] == [] and out["scroll_width"] <= int(width), (width, out["overflowing"][:5])
