"""How close the browser's (onnxruntime-web, WebAssembly) updates are to the Python SDK's: the one tolerance.

Python's onnxruntime and onnxruntime-node run the same native kernels: their updates must be equal byte for
byte.  Chromium's WebAssembly kernels round differently (no fused multiply-add, other exp/log
approximations, another summation order: tests/web/test_wasm_kernels.py), so its update may differ in the
last bits of each component.  The bound is stated in float32 spacings at the update's largest component
(``np.spacing(max |reference|)``), so it scales with the update instead of being an absolute number.
"""
from __future__ import annotations

import numpy as np

__all__ = ["WASM_SPACINGS", "ulps", "spacings", "assert_native_identical", "assert_wasm_close"]

#: Chromium's update may differ from Python's by at most this many float32 spacings at the update's largest
#: component.  An empirical bound, not an analytic one (the differences pass through every step of local
#: training): measured 4.0 (test_consent_parity, propensity, 2 passes over 45 records), 2.0 (test_browser_round),
#: 1.2 and 2.0 (test_js_sdk_parity: recommender update and user vector), so 16 leaves a 4x margin.  The
#: absolute 1e-5 these tests used before was about 1300 spacings.
WASM_SPACINGS = 16


def _ordered(x: np.ndarray) -> np.ndarray:
    i = np.ascontiguousarray(x, np.float32).view(np.int32).astype(np.int64)
    return np.where(i < 0, -(i & 0x7FFFFFFF), i)


def ulps(a: np.ndarray, b: np.ndarray) -> int:
    """The largest distance between two float32 arrays in units in the last place, element by element."""
    a, b = np.ravel(a), np.ravel(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.max(np.abs(_ordered(a) - _ordered(b)))) if a.size else 0


def spacings(js: np.ndarray, ref: np.ndarray) -> float:
    """max |js - ref| in float32 spacings at max |ref|."""
    js, ref = np.ravel(js).astype(np.float32), np.ravel(ref).astype(np.float32)
    assert js.shape == ref.shape, (js.shape, ref.shape)
    unit = float(np.spacing(np.float32(np.max(np.abs(ref))))) if ref.size else 1.0
    return float(np.max(np.abs(js.astype(np.float64) - ref.astype(np.float64)))) / unit


def assert_native_identical(js: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Node (onnxruntime-node) against Python (onnxruntime): the same kernels, so the same bytes."""
    assert np.ascontiguousarray(js, "<f4").tobytes() == np.ascontiguousarray(ref, "<f4").tobytes(), (
        f"{what}: Node's bytes differ from Python's (max |diff| {float(np.max(np.abs(js - ref))):.3g})")


def assert_wasm_close(js: np.ndarray, ref: np.ndarray, what: str) -> float:
    """Chromium against Python: within WASM_SPACINGS float32 spacings at the largest component; returns the figure."""
    s = spacings(js, ref)
    assert s <= WASM_SPACINGS, f"{what}: {s:.1f} float32 spacings from Python (bound {WASM_SPACINGS})"
    return s
