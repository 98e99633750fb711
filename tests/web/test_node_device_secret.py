"""The JavaScript SDK's device secret against a real server (Node): tests/web/js/device_secret.test.mjs.

The Python SDK's twin is tests/edge_sdk/test_device_secret.py.
"""
from __future__ import annotations

import json


def test_node_client_keeps_and_sends_its_device_secret(tmp_path, live_model, run_node, js_tests, node_modules):
    spec = {"server": live_model.base_url, "app_key": live_model.app_key}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_node([js_tests / "device_secret.test.mjs"], {"FEDMARK_SECRET": str(tmp_path / "spec.json")})
