"""The dashboard shows a coordinator's regions and what each contributed, in real headless Chromium."""
from __future__ import annotations

import json
import os
import subprocess
from contextlib import ExitStack
from pathlib import Path

import pytest

from server.federation.upstream import Upstream
from server.testing import REPO_ROOT
from tests.server.federation.test_protocol import _coordinator, _credential, _federate, _push
from tests.server.governance.test_dashboard_browser import ARTIFACTS, SCRIPT, _prerequisites


@pytest.mark.browser
def test_dashboard_lists_regions_their_contributions_and_who_was_left_out(tmp_path: Path):
    node = _prerequisites()
    with ExitStack() as stack:
        coord = _coordinator(stack, tmp_path)
        eu = Upstream(coord.base_url, _credential(coord, "eu"), "eu")
        _credential(coord, "us")
        _federate(coord, min_regions=1)
        coord.admin("POST", "/v1/federation/tick")
        _push(eu, 1, "eu:r1", contributors=7)
        coord.clock.advance(11)  # us misses the deadline
        coord.admin("POST", "/v1/federation/tick")
        assert coord.model("toy")["current_version"] == 2
        spec = {"url": f"{coord.base_url}/dashboard?token={coord.admin_token}&model=toy",
                "out": str(tmp_path / "out.json"), "screenshot": str(ARTIFACTS / "dashboard-regions.png"),
                "widths": [1400, 360]}
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        proc = subprocess.run([node, str(SCRIPT)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=110,
                              env={**os.environ, "FEDMARK_DASHBOARD": str(tmp_path / "spec.json")})
        assert proc.returncode == 0, proc.stdout + proc.stderr
    for width, out in json.loads((tmp_path / "out.json").read_text())["views"].items():
        # the only console lines: the evaluation summary's 404 of a model never evaluated (the dashboard's own
        # handling of GET /v1/models/toy/evaluations, which Chromium logs as a failed resource load)
        assert out["errors"] == [] and all("404" in c for c in out["console"]), (width, out["errors"], out["console"])
        assert out["federation_shown"] is True
        assert len(out["federation_rows"]) == 2, out["federation_rows"]
        eu_row = next(r for r in out["federation_rows"] if r.startswith("eu"))
        us_row = next(r for r in out["federation_rows"] if r.startswith("us"))
        assert "7 devices" in eu_row and "1.5" in eu_row and "left out" in us_row, out["federation_rows"]
        assert any("eu 7" in r and "v2" in r for r in out["federation_log"]), out["federation_log"]
        assert out["overflowing"] == [], (width, out["overflowing"][:10])
