"""The JavaScript consent rule (Node: TC strings decoded by @iabtechlabtcf/core) gives the documented decisions.

The vectors are tests/contract/tcf_vectors.json, the same the Python rule is checked against
(tests/contract/test_consent.py), so identical signals give identical decisions in both languages.
"""
from __future__ import annotations

import re


def test_javascript_consent_rule_matches_the_vectors(run_node, js_tests, node_modules):
    assert (node_modules / "@iabtechlabtcf" / "core").is_dir(), "run scripts/install_browser_deps.sh (npm ci)"
    output = run_node([js_tests / "consent_signals.test.mjs"], {})
    passed = re.search(r"# pass (\d+)", output) or re.search(r"ℹ pass (\d+)", output)
    assert passed and int(passed.group(1)) >= 9, output
