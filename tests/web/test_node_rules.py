"""The JavaScript quality rules (edge_sdk/web/src/statistics.js) decide exactly as fedmark.contract.statistics.

make_vectors.py records, from the Python implementation, which records pass each rule set, the violation
counts per rule, the rules each record broke, the refusal messages of unreadable declarations, and what
``edge_sdk.data.prepare_tabular`` keeps and reports for a manifest carrying ``features.rules``; node
(tests/web/js/rules.test.mjs) demands the same from the JS SDK.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_javascript_rules_decide_like_python(tmp_path, run_node, js_tests):
    out = tmp_path / "vectors.json"
    subprocess.run([sys.executable, str(HERE / "make_vectors.py"), str(out)], check=True, timeout=60)
    v = json.loads(out.read_text())["rules"]
    assert any(not all(p["passed"]) and any(p["passed"]) for p in v["plans"])
    assert sum(1 for p in v["prepare"] if "message" in p) == 2
    output = run_node([js_tests / "rules.test.mjs"], {"FEDMARK_VECTORS": str(out)})
    passed = re.search(r"# pass (\d+)", output) or re.search(r"ℹ pass (\d+)", output)
    assert passed and int(passed.group(1)) == 3, output
