"""The JavaScript contract port (edge_sdk/web/src/contract.js) equals fedmark.contract.

make_vectors.py records what the Python module produces (update bodies, feature
rows, clip results, manifest refusals, task documents, upload headers, outcome
codes, the params-file and consent rules); the node test demands byte-identical
bodies and rows and the same parses, codes and error messages.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_vectors_cover_the_contract(tmp_path):
    out = tmp_path / "vectors.json"
    subprocess.run([sys.executable, str(HERE / "make_vectors.py"), str(out)], check=True, timeout=60)
    v = json.loads(out.read_text())
    assert {b["encoding"] for b in v["updates"]["bodies"]} == {"f32", "f16", "q8"}
    assert sum("message" in m for m in v["manifests"]) >= 20
    assert any(e[1] == "*" for e in v["features"]["cases"][0]["errors"])
    assert sum("message" in t for t in v["tasks"]) >= 20 and sum("parsed" in t for t in v["tasks"]) >= 8
    assert {"bad_header"} == {h["code"] for h in v["upload_headers"]["parsed"] if "message" in h}
    assert any("X-Fedmark-Within-Clip" not in b["headers"] for b in v["upload_headers"]["built"])
    assert v["codes"]["constants"]["REASON_ROUND_FULL"] == "round_full" and v["codes"]["sets"]["NO_TASK_REASONS"]
    assert any("message" in p for p in v["params_file"]) and any(p.get("file") == "weights.bin" for p in v["params_file"])
    assert any(not all(x["covered"]) and any(x["covered"]) for x in v["consent"])


def test_javascript_contract_matches_python(tmp_path, run_node, js_tests):
    out = tmp_path / "vectors.json"
    subprocess.run([sys.executable, str(HERE / "make_vectors.py"), str(out)], check=True, timeout=60)
    output = run_node([js_tests / "contract.test.mjs"], {"FEDMARK_VECTORS": str(out)})
    passed = re.search(r"# pass (\d+)", output) or re.search(r"ℹ pass (\d+)", output)
    assert passed and int(passed.group(1)) >= 12, output
