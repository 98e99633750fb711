"""Every code block the docs mark runnable is executed as written.

Why: a quickstart that is only read drifts (a renamed flag, a missing step) and the first thing a
new team runs fails.  Marking is explicit, so prose may still show fragments:

    <!-- runnable: NAME -->            (optionally: <!-- runnable: NAME cwd=edge_sdk/web -->)
    ```sh | bash | python | js
    ...
    ```

Blocks with the same NAME in one file are joined, in order, into one script (a doc can split a
walk-through with prose).  Files searched: README.md, docs/**/*.md, edge_sdk/README.md,
edge_sdk/web/README.md.  Each script runs in a sandbox that looks like a fresh clone after
``make venv`` and ``scripts/install_browser_deps.sh``: a copy of the checkout without caches or
build output, with ``.venv``, ``edge_sdk/web/node_modules`` and the data sets linked from this
checkout.  The environment is clean: ``python3`` is a second CPython (3.12, from pyenv: the
device side must not depend on the server's 3.11), ``FEDMARK_PORT`` a free port, ``HOME`` the
sandbox (npm keeps its usual cache), and no other ``FEDMARK_*`` variable.  Shell blocks run under ``bash -euo pipefail``,
Python blocks with ``.venv/bin/python``, JavaScript blocks with ``node`` as ES modules.  The whole
process group is ended afterwards, whatever the script left running.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
SECOND_PYTHON = Path("/root/.pyenv/versions/3.12.1/bin")
DOC_GLOBS = ("README.md", "docs/**/*.md", "edge_sdk/README.md", "edge_sdk/web/README.md")
MARK = re.compile(r"<!--\s*runnable:\s*(?P<name>[\w.-]+)(?P<opts>(?:\s+\w+=\S+)*)\s*-->\s*\n"
                  r"```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)\n```", re.S)
RUNNERS = {"sh": "bash", "bash": "bash", "shell": "bash", "python": "python", "py": "python",
           "js": "node", "javascript": "node", "mjs": "node"}
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv*", "node_modules", "__pycache__", "*.egg-info", "build", "dist",
                                     "out", "var", "test-artifacts", ".pytest_cache", ".hypothesis", ".schemathesis",
                                     ".fedmark-device", "*.csv.gz", "fedmark.env")


@dataclass
class Script:
    doc: str
    name: str
    lang: str
    cwd: str = "."
    parts: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.name}"


def collect() -> list[Script]:
    """The marked blocks of every doc, joined per (file, name)."""
    scripts: dict[tuple[str, str], Script] = {}
    for pattern in DOC_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            doc = str(path.relative_to(ROOT))
            for m in MARK.finditer(path.read_text(encoding="utf-8")):
                lang = RUNNERS.get(m["lang"].lower())
                assert lang, f"{doc}: runnable block {m['name']!r} has fence language {m['lang']!r}; use one of {sorted(RUNNERS)}"
                opts = dict(o.split("=", 1) for o in m["opts"].split())
                s = scripts.setdefault((doc, m["name"]), Script(doc, m["name"], lang, opts.get("cwd", ".")))
                assert s.lang == lang, f"{doc}: blocks of {m['name']!r} mix {s.lang} and {lang}"
                s.parts.append(m["body"])
    return list(scripts.values())


SCRIPTS = collect()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sandbox(tmp: Path) -> Path:
    """A copy of the checkout that looks like a fresh clone after `make venv` and the browser deps."""
    clone = tmp / "clone"
    shutil.copytree(ROOT, clone, ignore=COPY_IGNORE)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    for data in (ROOT / "examples" / "data").glob("*.csv.gz"):
        (clone / "examples" / "data" / data.name).symlink_to(data)
    modules = ROOT / "edge_sdk" / "web" / "node_modules"
    if modules.is_dir():
        (clone / "edge_sdk" / "web" / "node_modules").symlink_to(modules)
    return clone


def run_script(script: Script, clone: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    ext = {"bash": ".sh", "python": ".py", "node": ".mjs"}[script.lang]
    path = clone / f".doc-{script.name}{ext}"
    path.write_text("\n".join(script.parts) + "\n", encoding="utf-8")
    cmd = {"bash": ["bash", "-euo", "pipefail", str(path)], "python": [str(clone / ".venv" / "bin" / "python"), str(path)],
           "node": ["node", str(path)]}[script.lang]
    env = {"PATH": f"{SECOND_PYTHON}:/usr/local/bin:/usr/bin:/bin", "HOME": str(clone), "LANG": "C.UTF-8",
           "FEDMARK_PORT": str(_free_port()), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           # npm's cache as scripts/install_browser_deps.sh left it (packages already fetched stay local)
           "npm_config_cache": os.environ.get("npm_config_cache", str(Path.home() / ".npm")),
           "npm_config_prefer_offline": "true", "npm_config_audit": "false", "npm_config_fund": "false"}
    proc = subprocess.Popen(cmd, cwd=clone / script.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = "", f"timed out after {timeout:g} s"
    finally:
        try:  # the script's whole process group (a server it started in the background included)
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_the_docs_mark_a_quickstart():
    """The README's quickstart is among the runnable blocks (a rename would silently drop the check)."""
    assert "README.md:quickstart" in [s.id for s in SCRIPTS], [s.id for s in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.id for s in SCRIPTS])
def test_runnable_block(script: Script, tmp_path: Path):
    assert (SECOND_PYTHON / "python3").exists(), f"the second CPython is missing: {SECOND_PYTHON} (pyenv install 3.12.1)"
    clone = sandbox(tmp_path)
    res = run_script(script, clone, timeout=900)
    log = clone / "server.log"
    assert res.returncode == 0, (f"{script.id} failed ({res.returncode})\n--- stdout\n{res.stdout[-4000:]}\n"
                                 f"--- stderr\n{res.stderr[-6000:]}\n--- server.log\n"
                                 f"{log.read_text()[-3000:] if log.exists() else ''}")
    if script.id == "README.md:quickstart":
        check_quickstart(clone, res)
    if script.id == "edge_sdk/web/README.md:node-install":
        # the npm-installed SDK, imported as an ES module by a Node app, trained a round that made v2
        line = next(l for l in res.stdout.splitlines() if l.startswith('{"status"'))
        assert json.loads(line) == {"status": "accepted", "trainedOn": json.loads(line)["trainedOn"], "round": "closed",
                                    "made": 2} and json.loads(line)["trainedOn"] > 100, line
        assert re.search(r"^\* v2\s+round\b", res.stdout, re.M), res.stdout[-2000:]
        installed = clone / "my-app" / "node_modules" / "@fedmark" / "edge-sdk-web"
        assert installed.is_dir() and not installed.is_symlink() and (installed / "src" / "node.js").exists()
        assert not (installed / "node_modules").exists() and not list(installed.glob("*.tgz"))


def check_quickstart(clone: Path, res: subprocess.CompletedProcess[str]) -> None:
    """What the quickstart promises: a version made by devices, trained on the edge-only install, scored with it."""
    env = dict(line.split("=", 1) for line in (clone / "fedmark.env").read_text().splitlines()
               if line and not line.startswith("#"))
    assert (clone / "fedmark.env").stat().st_mode & 0o077 == 0, "fedmark.env holds the admin token: mode 0600"
    device_py = clone / ".venv-device" / "bin" / "python"
    probe = subprocess.run([str(device_py), "-c", "import sys, json, importlib.util as u; print(json.dumps("
                            "{'v': sys.version_info[:2], 'tf': u.find_spec('tensorflow') is not None, "
                            "'flask': u.find_spec('flask') is not None, 'ort': u.find_spec('onnxruntime') is not None}))"],
                           capture_output=True, text=True, timeout=60)
    info = json.loads(probe.stdout)
    assert info["v"] == [3, 12] and info["ort"] and not info["tf"] and not info["flask"], info
    # The versions table printed by the script: v2, made by a round, is current.
    assert re.search(r"^\* v2\s+round\b", res.stdout, re.M), res.stdout[-3000:]
    assert "made version v2" in res.stderr, res.stderr[-3000:]
    assert re.search(r"^1\s+r_\w+\s+closed\s+v1\s+2/2\s+v2\b", res.stdout, re.M), res.stdout[-3000:]
    scores = json.loads((clone / "scores.json").read_text())
    assert scores["version"] == 2 and len(scores["scores"]) > 100, {k: scores[k] for k in ("model", "version")}
    # d2 trained on v1 and has v1 cached.  With the server gone, scoring still works on the cached version and
    # says which (d1 above moved to v2 because the server was there to say v2 is current).
    device = [str(clone / ".venv-device" / "bin" / "fedmark"), "device", "score", "--server", env["FEDMARK_SERVER"],
              "--device-id", "d2", "--region", "eu", "--data", "device2.csv", "--model", "propensity",
              "--app-key", "ak_not_needed_with_a_stored_token", "--timeout", "2"]
    renv = {"PATH": "/usr/bin:/bin", "HOME": str(clone)}
    for extra in (["--no-refresh"], []):
        out = subprocess.run(device + extra, cwd=clone, env=renv, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "scored with propensity v1" in out.stderr, (extra, out.stderr[-2000:])
        assert json.loads(out.stdout)["version"] == 1
    marketer = json.loads(res.stdout.strip().splitlines()[-1])
    assert marketer["role"] == "marketer" and marketer["token"].startswith("mt_"), marketer
    # Nothing is left listening on the quickstart's port.
    with pytest.raises(requests.ConnectionError):
        requests.get(env["FEDMARK_SERVER"] + "/v1/health", timeout=2)
