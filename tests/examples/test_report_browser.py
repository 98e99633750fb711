"""The demo report in headless Chromium at 1400 and 360 px: readable on a laptop and on a phone.

The same checklist as the dashboard's: nothing wider than the viewport (tables scroll inside their
own box), every plot loads and fits, the screenshot is exactly the viewport wide, the verdict comes first.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from examples.demo.report import write_report

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SCRIPT = Path(__file__).parent / "js" / "page_widths.mjs"
RESULTS = json.loads((ROOT / "examples" / "demo" / "published_results.json").read_text())


def png_size(path: str) -> tuple[int, int]:
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.mark.browser
def test_the_report_fits_1400_and_360_px(tmp_path):
    node = shutil.which("node")
    assert node and Path("/usr/bin/chromium").exists(), "node and Chromium are needed: scripts/install_browser_deps.sh"
    page = write_report(RESULTS, tmp_path / "report")
    ARTIFACTS.mkdir(exist_ok=True)
    spec = {"url": page.as_uri(), "widths": [1400, 360], "scroll": "table", "out": str(tmp_path / "out.json"),
            "screenshot": str(ARTIFACTS / "report.png")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([node, str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FEDMARK_PAGE": str(tmp_path / "spec.json")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["errors"] == []
    for width, view in out["views"].items():
        width = int(width)
        assert view["first_heading"] == "Verdict"
        assert view["inner_width"] == width and view["scroll_width"] <= width, (width, view["overflowing"][:10])
        assert view["overflowing"] == [], (width, view["overflowing"][:10])
        assert len(view["images"]) == 3 and all(i["ok"] and i["right"] <= width + 1 for i in view["images"]), view["images"]
        shot_w, shot_h = png_size(view["screenshot"])
        assert shot_w == width and shot_h > 900, (width, shot_w, shot_h)
