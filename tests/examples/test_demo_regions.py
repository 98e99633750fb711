"""``fedmark demo --regions --fast``: the three-region topology on SQLite, one region killed and resynced."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from server.testing import REPO_ROOT


@pytest.mark.slow
def test_demo_regions_runs_and_the_killed_region_resyncs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fedmark_cli", "demo", "--regions", "--fast", "--out", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "left out ['apac']" in proc.stdout and "resynced to global v3" in proc.stdout, proc.stdout
    status = json.loads((tmp_path / "regions" / "federation.json").read_text())
    assert {r["region"] for r in status["global"]["regions"]} == {"eu", "us", "apac"}
    assert max(link["global_version"] for link in status["apac"]["links"]) == 3
