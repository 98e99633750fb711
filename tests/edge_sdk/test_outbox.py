"""The offline queue: durable entries, survival across instances/processes, corruption handling, bound."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_sdk.outbox import Outbox, QueuedUpload

ROOT = Path(__file__).resolve().parents[2]


def _item(key: str, body: bytes = b"FMU1payload") -> QueuedUpload:
    return QueuedUpload(key, f"/v1/rounds/r-{key}/updates", f"r-{key}", "propensity", 3,
                        {"Idempotency-Key": key, "X-Fedmark-Num-Examples": "12"}, body, time.time())


def test_put_read_remove_in_order(tmp_path):
    box = Outbox(tmp_path)
    box.put(_item("a1"))
    box.put(_item("b2", b"\x00\xff" * 100))
    again = Outbox(tmp_path).entries()
    assert [e.key for e in again] == ["a1", "b2"]
    assert again[1].body == b"\x00\xff" * 100 and again[1].headers["Idempotency-Key"] == "b2"
    assert again[0].version == 3 and again[0].upload_path == "/v1/rounds/r-a1/updates"
    assert box.remove("a1") and not box.remove("a1")
    assert [e.key for e in box.entries()] == ["b2"] and len(box) == 1
    assert not list(tmp_path.glob(".tmp-*")), "temporary files must not be left behind"


def test_the_same_key_is_queued_once(tmp_path):
    box = Outbox(tmp_path)
    box.put(_item("k"))
    box.put(_item("k"))
    assert len(box) == 1


def test_entries_survive_a_killed_writer_process(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal, time
        from edge_sdk.outbox import Outbox, QueuedUpload
        Outbox({str(tmp_path)!r}).put(QueuedUpload("k9", "/u", "r", "m", 1, {{}}, b"body", time.time()))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == -9
    [entry] = Outbox(tmp_path).entries()
    assert entry.key == "k9" and entry.body == b"body"


def test_a_corrupted_entry_is_dropped_not_sent(tmp_path):
    box = Outbox(tmp_path)
    path = box.put(_item("c"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    box.put(_item("d"))
    assert [e.key for e in box.entries()] == ["d"]
    assert not path.exists()


def test_the_queue_is_bounded_dropping_the_oldest(tmp_path):
    box = Outbox(tmp_path, max_entries=3)
    for k in ("k1", "k2", "k3", "k4"):
        box.put(_item(k))
    assert [e.key for e in box.entries()] == ["k2", "k3", "k4"]


def test_bad_keys_are_refused(tmp_path):
    with pytest.raises(ValueError):
        Outbox(tmp_path).put(_item("../evil"))
