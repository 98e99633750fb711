"""docs/TUTORIAL.md runs: its code blocks are executed in order, against a real server.

Every ```python block and every ```bash block is put, in document order, into
one script that runs in a fresh directory (Python blocks share one namespace,
bash blocks run through bash with the checkout's .venv/bin first on PATH).
The one block marked ```bash {server} (start a server in the background) is the
only one not executed as written: the test starts the same server itself with
``server.testing.start_server`` on a free loopback port, so it can end it by
pid, and passes its URL and admin token in FEDMARK_SERVER / FEDMARK_ADMIN_TOKEN
as that block's ``export`` line does.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "TUTORIAL.md"
FENCE = re.compile(r"^```(python|bash)( \{server\})?\n(.*?)^```$", re.S | re.M)


def blocks() -> list[tuple[str, bool, str]]:
    return [(m.group(1), bool(m.group(2)), m.group(3)) for m in FENCE.finditer(TUTORIAL.read_text())]


def script(parts: list[tuple[str, bool, str]]) -> str:
    out = ["import subprocess as _subprocess", "def _sh(cmd):",
           "    print('$', cmd.strip().splitlines()[0], flush=True)",
           "    _subprocess.run(['bash', '-e', '-o', 'pipefail', '-c', cmd], check=True)"]
    for lang, is_server, code in parts:
        if is_server:
            continue
        out.append(code if lang == "python" else f"_sh({code!r})")
    return "\n".join(out) + "\n"


def test_tutorial_blocks_run_in_order(tmp_path):
    from server.testing import running_server

    parts = blocks()
    langs = [lang for lang, _, _ in parts]
    assert langs.count("python") >= 6 and langs.count("bash") >= 3
    assert sum(s for _, s, _ in parts) == 1, "exactly one block starts the server"
    server_block = next(code for _, s, code in parts if s)
    assert "fedmark server" in server_block and "FEDMARK_ADMIN_TOKEN=tutorial-secret" in server_block
    (tmp_path / "tutorial.py").write_text(script(parts))
    with running_server(tmp_path / "var" / "tutorial", admin_token="tutorial-secret") as srv:
        env = {"PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
               "FEDMARK_SERVER": srv.base_url, "FEDMARK_ADMIN_TOKEN": srv.admin_token,
               "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run([sys.executable, "tutorial.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-5000:]
    assert re.search(r"^\d+ customers; columns: customer_id, country", out, re.M)
    assert "country" in out and "'tail_buckets': 8" in out  # the inferred schema was printed for review
    assert "row 0, column 'invoices': not a number: 'many'" in out
    assert "row 1, column 'next_offer': label 'garden' is not one of the classes" in out
    for i in range(3):
        assert re.search(rf"^device {i}: accepted, \d+ records", out, re.M), out
    assert "now at version 2" in out
    assert (tmp_path / "out" / "next-offer" / "manifest.json").is_file()
    assert not os.path.exists(tmp_path / "out" / "next-offer" / "schema.inferred.json")  # re-exported with --schema
