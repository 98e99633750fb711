"""A real browser completes a training round: Debian's headless Chromium, onnxruntime-web, the real server.

playwright-core (no downloaded browser) drives /usr/bin/chromium to a page
served on loopback that imports the SDK's ES modules and onnxruntime-web's
WebAssembly build; the page enrols, fetches a task, syncs and verifies the
artifact into IndexedDB, trains on real Bank Marketing records (with consent),
clips and uploads.  The server must count the update, and the update must
equal the Python SDK's on the same data and order, within the float32 bound of tests/web/parity.py
(the WebAssembly kernels round differently from the native ones: tests/web/test_wasm_kernels.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.web.parity import assert_wasm_close

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.mark.browser
def test_browser_round_against_real_server(tmp_path, live_model, page_server, bank_records, reference, run_node,
                                           js_tests):
    records = bank_records(800)
    used = sum("propensity_scoring" in r["consent"] for r in records)
    rng = np.random.default_rng(11)
    orders = [rng.permutation(used).tolist() for _ in range(2)]  # the task says epochs=2
    spec = {"origin": page_server.origin, "out": str(tmp_path / "out.json"),
            "screenshot": str(ARTIFACTS / "browser_round.png"),
            "page": {"appKey": live_model.app_key, "deviceId": "browser-1", "model": live_model.model,
                     "records": records, "orders": orders,
                     "conditions": {"charging": True, "unmetered": True, "idle": True, "battery": 1.0}}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    output = run_node([js_tests / "browser_round.test.mjs"], {"FEDMARK_BROWSER": str(tmp_path / "spec.json")},
                      timeout=110.0)
    out = json.loads((tmp_path / "out.json").read_text())
    print(f"browser: {out['user_agent']}; onnxruntime-web {out['ort_version']}; round trip {out['ms']:.0f} ms")

    assert "HeadlessChrome" in out["user_agent"] or "Chrome" in out["user_agent"], output
    rnd = live_model.round(out["round_id"])
    assert rnd["accepted"] == 1, rnd  # the fresh server's round went from 0 to 1 accepted update
    assert out["pending"] == 0 and out["update_id"]
    assert out["num_examples"] == used and out["excluded"] == len(records) - used
    assert out["resync_not_modified"] is True and out["resync_downloaded"] == 0
    assert out["stored_keys"] >= 5  # manifest, etag, params and graphs in IndexedDB
    assert (ARTIFACTS / "browser_round.png").stat().st_size > 5000

    ref = reference(live_model.artifact, records, orders, out["lr"], out["clip_norm"])
    js = np.frombuffer(bytes.fromhex(out["delta"]), "<f4")
    diff = float(np.max(np.abs(js - ref.vector)))
    s = assert_wasm_close(js, ref.vector, "browser round update")
    print(f"browser (onnxruntime-web wasm) vs Python SDK (onnxruntime CPU): max |delta| difference {diff:.3g} "
          f"({s:.1f} float32 spacings), norm {out['norm']:.6f} vs {ref.norm:.6f}")
    assert out["within"] == ref.within_clip
