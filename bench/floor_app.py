"""The floor of ingestion: the least a Flask server behind the same gunicorn must do per update.

A minimal app that takes ``POST /v1/rounds/<id>/updates``, reads the body,
views it as float32 after the 16-byte header and adds it to a numpy running
sum (in memory: no authentication, no validation, no durability).  Run under
the same gunicorn settings as ``fedmark server`` (gthread workers), its CPU
per update is what any Flask server on this machine pays for HTTP, WSGI and
one addition; ``bench/ingest.py`` reports fedmark's cost beside it.
"""
from __future__ import annotations

import threading

import numpy as np
from flask import Flask, request

app = Flask("fedmark-floor")
_sum: dict[int, np.ndarray] = {}
_lock = threading.Lock()


@app.get("/v1/health")
def health():  # type: ignore[no-untyped-def]
    return {"status": "ok"}


@app.post("/v1/rounds/<round_id>/updates")
def upload(round_id: str):  # type: ignore[no-untyped-def]
    body = request.get_data(cache=False)
    vec = np.frombuffer(body, dtype="<f4", offset=16)
    with _lock:
        acc = _sum.get(vec.size)
        if acc is None:
            acc = _sum[vec.size] = np.zeros(vec.size, np.float64)
        acc += vec
    return {"accepted": True}, 202
