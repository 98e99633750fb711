"""The trainer page the fedmark server itself serves (server/api/web.py, GET /train).

A real ``fedmark server`` process serves the page, the SDK's ES modules and
onnxruntime-web from one origin (no forwarder, no CDN); Debian's headless
Chromium opens it, two devices train on the page's records and upload, and
the round's accepted count, read back through the admin API, must rise by
exactly two.  The route tests check the allow-list, MIME types and the clear
JSON errors, including the 503 for a server deployed without node_modules.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def _admin(live_model: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {live_model.admin_token}"}


def _accepted_total(live_model: Any) -> int:
    r = requests.get(f"{live_model.base_url}/v1/models/{live_model.model}/rounds", headers=_admin(live_model),
                     timeout=30)
    assert r.status_code == 200, r.text
    # the listing may hide small counts (k-anonymity); each round's own status has the exact count
    return sum(int(live_model.round(rnd["round_id"])["accepted"]) for rnd in r.json()["rounds"])


@pytest.mark.browser
def test_visitor_trains_on_the_served_page(tmp_path, live_model, node_modules, run_node, js_tests):
    before = _accepted_total(live_model)
    spec = {"origin": live_model.base_url, "appKey": live_model.app_key, "model": live_model.model,
            "devices": ["web-visitor-1", "web-visitor-2"], "records": 300, "out": str(tmp_path / "out.json"),
            "screenshot": str(ARTIFACTS / "served_page.png")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    output = run_node([js_tests / "served_page.test.mjs"], {"FEDMARK_SERVED_PAGE": str(tmp_path / "spec.json")},
                      timeout=110.0)
    out = json.loads((tmp_path / "out.json").read_text())
    assert "Chrome" in out["user_agent"], output
    assert out["errors"] == [], out["logs"]  # no console error, page error, failed or refused request

    runs = out["runs"]
    round_ids = {run["round_id"] for run in runs}
    assert len(round_ids) == 1, round_ids  # goal 10: both updates land in the same open round
    rnd = live_model.round(round_ids.pop())
    assert rnd["accepted"] == before + 2, (before, rnd)
    assert _accepted_total(live_model) == before + 2
    assert runs[1]["round_label"].startswith(f"{rnd['accepted']} of {rnd['goal']} updates accepted")

    epochs = 2  # the training config of the live_model fixture
    for run in runs:
        stats = run["record_stats"]
        assert stats["total"] == 300 and stats["consented"] + stats["excluded"] == 300 and 0 < stats["excluded"] < 300
        assert run["update"]["records used"] == str(stats["consented"])  # consent decided what trained
        assert run["answer"]["status"] == "accepted" and run["answer"]["HTTP"] == "202"
        assert run["update_id"] and run["answer"]["update id"] == run["update_id"]
        assert run["steps"] == ["done"] * 4 and run["epoch_bar"] == "100" and run["epoch_rows"] == epochs
        assert run["seen"]["steps"] == ["task", "sync", "train", "upload"]
        assert [s.split(" · ")[0] for s in run["seen"]["epochs"] if s.startswith("epoch")][-epochs - 1:] == [
            f"epoch {i} of {epochs}" for i in range(epochs + 1)]
        norm, clip = float(run["update"]["L2 norm before clipping"]), float(run["update"]["clip norm (server)"])
        assert clip == rnd["clip_norm"] and norm > 0
        assert run["update"]["clipped"].startswith("no" if norm <= clip else "yes")
        assert not run["app_key_in_html"] and not run["app_key_in_local_storage"]
    assert runs[0]["update_id"] != runs[1]["update_id"]
    assert "app_key" not in runs[1]["search"]  # the key given in the URL was taken out of the address bar
    assert "WebAssembly" in runs[0]["runtime"]
    assert (ARTIFACTS / "served_page.png").stat().st_size > 20_000

    refused = out["refused"]  # a wrong app key stops the run at the first step with the server's reason
    assert refused["state"] == "error" and refused["steps"][0] == "failed", refused
    assert "AuthenticationError" in refused["message"] and "app key" in refused["message"], refused["message"]
    assert _accepted_total(live_model) == before + 2


# --------------------------------------------------------------------------- the routes themselves
def test_page_and_runtime_files_are_served_with_their_types(live_model, node_modules):
    base = live_model.base_url
    page = requests.get(f"{base}/train", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "'wasm-unsafe-eval'" in csp and "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert live_model.admin_token not in page.text and live_model.app_key not in page.text
    expected = {"/train/app.js": "text/javascript", "/train/view.js": "text/javascript",
                "/train/records.js": "text/javascript", "/train/trainer.css": "text/css",
                "/train/sdk/index.js": "text/javascript", "/train/sdk/client.js": "text/javascript",
                "/train/ort/ort.wasm.min.mjs": "text/javascript",
                "/train/ort/ort-wasm-simd-threaded.mjs": "text/javascript",
                "/train/ort/ort-wasm-simd-threaded.wasm": "application/wasm"}
    for path, ctype in expected.items():
        r = requests.get(base + path, timeout=60)
        assert r.status_code == 200, (path, r.text[:200])
        assert r.headers["Content-Type"].split(";")[0] == ctype, path
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    wasm = requests.get(f"{base}/train/ort/ort-wasm-simd-threaded.wasm", timeout=60)
    assert wasm.content[:4] == b"\0asm"
    assert wasm.content == (node_modules / "onnxruntime-web" / "dist" / "ort-wasm-simd-threaded.wasm").read_bytes()
    etag = requests.get(f"{base}/train/sdk/index.js", timeout=30).headers["ETag"]  # revalidated, not refetched
    assert requests.get(f"{base}/train/sdk/index.js", headers={"If-None-Match": etag}, timeout=30).status_code == 304


@pytest.mark.parametrize("path", [
    "/train/sdk/node.js", "/train/sdk/node_storage.js",  # Node-only modules import node: built-ins
    "/train/sdk/README.md", "/train/sdk/Client.js", "/train/sdk/..%2Fpackage.json", "/train/sdk/%2e%2e",
    "/train/ort/ort.min.js", "/train/ort/ort.wasm.min.mjs.map", "/train/ort/..%2F..%2Fpackage.json",
    "/train/index.html", "/train/web.py", "/train/ort", "/train/sdk",
])
def test_files_outside_the_allow_list_are_refused_with_a_json_404(live_model, path):
    r = requests.get(live_model.base_url + path, timeout=30)
    assert r.status_code == 404, (path, r.status_code)
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"]["code"] == "not_found" and r.json()["error"]["message"]


@pytest.fixture
def app_without_node_modules(tmp_path: Path) -> Iterator[Any]:
    """The app deployed from a copy of edge_sdk/web that has src/ but no node_modules (an npm ci never ran)."""
    from server.app import create_app
    from server.config import TestingConfig

    web = tmp_path / "web"
    (web / "src").mkdir(parents=True)
    (web / "src" / "index.js").write_text("export const installed = true;\n")
    app = create_app(TestingConfig(DATA_DIR=str(tmp_path / "data"), ADMIN_TOKEN="adm_" + secrets.token_hex(8)))
    app.config["WEB_SDK_DIR"] = str(web)
    try:
        yield app
    finally:
        app.extensions["fedmark_rounds"].stop()
        app.extensions["fedmark_store"].dispose()


def test_missing_onnxruntime_web_is_a_clear_503(app_without_node_modules):
    client = app_without_node_modules.test_client()
    r = client.get("/train/ort/ort.wasm.min.mjs")
    assert r.status_code == 503 and r.is_json
    err = r.get_json()["error"]
    assert err["code"] == "web_sdk_unavailable" and "install_browser_deps.sh" in err["message"]
    assert client.get("/train/sdk/index.js").data == b"export const installed = true;\n"
    assert client.get("/train").status_code == 200  # the page itself loads and explains the 503 to the visitor
    app_without_node_modules.config["WEB_SDK_DIR"] = str(Path(app_without_node_modules.config["DATA_DIR"]) / "absent")
    r = client.get("/train/sdk/index.js")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "web_sdk_unavailable"
