"""Bad updates are refused with their documented code and leave no trace in the aggregate.

Two servers start from one copied state (same round id, tasks, tokens and noise
secret, so the same DP noise seed).  Server A receives every good update with
bad ones interleaved — NaN / Inf, wrong length, dtype or encoding, truncated,
oversized, stale version, unknown or closed round, replays, forged, marketer's
or another device's token.  Server B receives only the good ones, in the same
order.  Each refusal must carry its code from docs/API.md, and the two
published ``params.bin`` must be byte-identical (and really noised).
"""
from __future__ import annotations

import struct
import zlib
import secrets
from typing import Any, Callable

import numpy as np
import requests

from bench.fleet import synthetic_update
from fedmark.contract import encode_update

N = 300
GOOD = 6


def _raw_f32(values: np.ndarray) -> bytes:
    """A well-formed f32 body (valid header and checksum) carrying arbitrary values, NaN included."""
    payload = np.asarray(values, "<f4").tobytes()
    return struct.pack("<4sBBHII", b"FMU1", 0, 0, 0, values.size, zlib.crc32(payload)) + payload


def _code(r: requests.Response) -> tuple[int, str | None]:
    if r.status_code in (200, 202):
        return r.status_code, None
    return r.status_code, r.json()["error"]["code"]


def test_bad_updates_are_refused_and_do_not_change_the_aggregate(servers: Any) -> None:
    a_srv = servers.start("a")
    fa = servers.fleet(a_srv)
    fa.publish_synthetic("m", N, servers.tmp)
    fa.train("m", goal=GOOD, min_clients=GOOD, over_select=1.0, deadline_s=3600, clip={"norm": 1.0},
             noise_multiplier=0.5, encoding="f32")
    devs = fa.devices(GOOD, "m")
    outsider = fa.enroll("outsider")  # enrolled, but holds no task in the round
    marketer = fa.ok(fa.admin("POST", "/v1/admin/tokens", json={"role": "marketer", "name": "m"}), 201)["token"]
    b_srv = servers.clone(a_srv, "b")
    fb = servers.fleet(b_srv)
    p0 = np.frombuffer(fa.params_bytes("m", 1), "<f4").copy()
    round_id = devs[0].task["round_id"]
    goods = [encode_update(synthetic_update(N, i, 0.05)) for i in range(GOOD)]
    keys = [f"good-{i}" for i in range(GOOD)]

    refused: list[tuple[str, tuple[int, str | None], tuple[int, str]]] = []

    def expect(name: str, r: requests.Response, status: int, code: str) -> None:
        refused.append((name, _code(r), (status, code)))

    for i, d in enumerate(devs):
        t, tok = d.task, d.token
        assert t is not None
        v = synthetic_update(N, 100 + i, 0.05)
        bad: dict[str, tuple[Callable[[], requests.Response], int, str]] = {
            "NaN": (lambda: fa.upload(tok, t, _raw_f32(np.where(np.arange(N) == i, np.nan, v))), 400, "non_finite"),
            "Inf": (lambda: fa.upload(tok, t, _raw_f32(np.where(np.arange(N) == 0, np.inf, v))), 400, "non_finite"),
            "wrong length (N-1)": (lambda: fa.upload(tok, t, encode_update(v[:-1])), 400, "bad_update"),
            "wrong shape (N+1)": (lambda: fa.upload(tok, t, encode_update(np.append(v, 0.0))), 413, "body_too_large"),
            "float64 payload": (lambda: fa.upload(tok, t, _raw_f32(v)[:16] + v.astype("<f8").tobytes()[:4 * N]),
                                400, "bad_update"),
            "f16 when the task says f32": (lambda: fa.upload(tok, t, encode_update(v, "f16")), 400, "bad_encoding"),
            "raw numpy, no header": (lambda: fa.upload(tok, t, v.tobytes()), 400, "bad_update"),
            "truncated": (lambda: fa.upload(tok, t, encode_update(v)[:-8]), 400, "bad_update"),
            "oversized": (lambda: fa.upload(tok, t, encode_update(v) + b"\0" * 4096), 413, "body_too_large"),
            "stale version": (lambda: fa.upload(tok, t, encode_update(v), version=2), 409, "stale_version"),
            "unknown round": (lambda: fa.upload(tok, t, encode_update(v), url="/v1/rounds/r_0000/updates"),
                              404, "unknown_round"),
            "forged token": (lambda: fa.upload("dt_" + "f" * 40, t, encode_update(v)), 401, "bad_token"),
            "other device's token": (lambda: fa.upload(outsider, t, encode_update(v)), 403, "forbidden"),
            "marketer token": (lambda: fa.upload(marketer, t, encode_update(v)), 403, "forbidden"),
            "JSON content type": (lambda: fa.upload(tok, t, encode_update(v), extra_headers={
                "Content-Type": "application/json"}), 415, "bad_content_type"),
            "no idempotency key": (lambda: fa.upload(tok, t, encode_update(v), extra_headers={"Idempotency-Key": ""}),
                                   400, "bad_header"),
            "zero examples": (lambda: fa.upload(tok, t, encode_update(v), num_examples=0), 400, "bad_header"),
        }
        for name, (send, status, code) in bad.items():
            expect(name, send(), status, code)
        wrong = [(n, got, want) for n, got, want in refused if got != want]
        assert not wrong, "refused with the wrong code: " + "; ".join(f"{n}: got {g}, want {w}" for n, g, w in wrong)
        first = fa.upload(tok, t, goods[i], keys[i])
        assert first.status_code == 202, first.text
        if i < GOOD - 1:  # after the last one the round is closed and folded
            again = fa.upload(tok, t, goods[i], keys[i])
            assert again.status_code == 200 and again.json() == first.json(), "a replay must get the original answer"
            expect("same key, other body", fa.upload(tok, t, encode_update(v), keys[i]), 409, "idempotency_conflict")
            expect("second update for one task", fa.upload(tok, t, encode_update(v)), 409, "duplicate_update")
            assert fa.round(round_id)["accepted"] == i + 1
    # after the close: the round refuses everything new, but a replay still gets its original answer
    expect("closed round", fa.upload(devs[0].token, devs[0].task, encode_update(v), secrets.token_hex(8)), 409, "round_closed")  # type: ignore[arg-type]
    replay = fa.upload(devs[0].token, devs[0].task, goods[0], keys[0])  # type: ignore[arg-type]
    assert replay.status_code == 200

    wrong = [(n, got, want) for n, got, want in refused if got != want]
    assert not wrong, "refused with the wrong code: " + "; ".join(f"{n}: got {g}, want {w}" for n, g, w in wrong)

    for i, d in enumerate(devs):  # server B: the clean run
        assert fb.upload(d.token, d.task, goods[i], keys[i]).status_code == 202  # type: ignore[arg-type]

    for f in (fa, fb):
        m = f.model("m")
        assert m["current_version"] == 2 and m["versions"][-1]["contributors"] == GOOD
        assert f.round(round_id)["accepted"] == GOOD
    pa, pb = fa.params_bytes("m", 2), fb.params_bytes("m", 2)
    assert pa == pb, "the aggregate with bad updates interleaved differs from the clean run"
    clean_mean = p0 + np.mean([synthetic_update(N, i, 0.05) for i in range(GOOD)], axis=0)
    noise = np.frombuffer(pa, "<f4") - clean_mean
    assert float(np.std(noise)) > 0.01, "expected seeded DP noise in the published version"
