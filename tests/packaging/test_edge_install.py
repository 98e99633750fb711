"""An edge-only install, as an app team gets it: ``pip install .[edge]`` (not editable) into a clean venv.

The checkout is copied (without venvs, node_modules, caches and the data sets), a
wheel is built from the copy with this environment's setuptools, and the wheel
is installed with its ``edge`` extra into a fresh venv under the test's tmp dir
(``bench.venvs.create``: uv, from its warm cache first, pinned by
requirements.lock).  Then, with nothing of the checkout on ``sys.path``:

* the distribution holds no demo code (no ``examples`` package, no ``demo`` module)
  and only the five installable packages;
* ``import edge_sdk`` takes well under a second and pulls nothing heavy;
* ``fedmark --help`` and ``fedmark device --help`` work (and offer no ``demo``).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import venvs

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"edge_sdk", "fedmark", "fedmark_cli", "models", "server", "simulate"}
HEAVY = ("tensorflow", "tensorflow_federated", "tf2onnx", "onnx", "keras", "jax", "flask", "sqlalchemy",
         "requests", "pandas", "server", "models", "examples")
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def edge_install(tmp_path_factory: pytest.TempPathFactory, built_wheel: dict) -> dict:
    tmp = tmp_path_factory.mktemp("edge-install")
    wheel = built_wheel["wheel"]
    t1 = time.perf_counter()
    py = venvs.create(tmp / "venv", [f"{wheel}[edge]"], constraints=ROOT / "requirements.lock",
                      offline_first=True, compile_bytecode=True, timeout=300)
    t2 = time.perf_counter()
    work = tmp / "cwd"  # a neutral working directory: nothing of the checkout is importable from it
    work.mkdir()
    env = {"PATH": f"{py.parent}:/usr/bin:/bin", "HOME": str(tmp)}
    timing = {"build_wheel_s": built_wheel["build_s"], "install_s": round(t2 - t1, 2)}
    print(f"\nedge install: {timing}")
    return {"py": py, "bin": py.parent, "cwd": work, "env": env, "timing": timing}


def _run(inst: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=inst["cwd"], env=inst["env"], capture_output=True, text=True, timeout=120)


def _json(inst: dict, code: str) -> dict:
    out = _run(inst, str(inst["py"]), "-c", code)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_edge_install_holds_no_demo_code(edge_install):
    res = _json(edge_install, (
        "import json, sysconfig, importlib.metadata as m, importlib.util as u, pathlib; "
        "d = m.distribution('fedmark'); sp = pathlib.Path(sysconfig.get_paths()['purelib']); "
        "print(json.dumps({'files': [str(f) for f in d.files], 'top': d.read_text('top_level.txt').split(), "
        "'examples': u.find_spec('examples') is not None, 'site': sorted(p.name for p in sp.iterdir()), "
        "'direct_url': d.read_text('direct_url.json') or ''}))"))
    assert set(res["top"]) == PACKAGES, res["top"]
    assert not res["examples"], "an `examples` package is importable in the edge install"
    assert "examples" not in res["site"]
    assert not json.loads(res["direct_url"] or "{}").get("dir_info", {}).get("editable"), res["direct_url"]
    assert not [f for f in res["files"] if f.endswith(".pth")], "an editable install, not the wheel's files"
    demo = [f for f in res["files"] if "examples" in Path(f).parts or any("demo" in p for p in Path(f).parts)]
    assert not demo, f"demo code in the installed distribution: {demo}"
    installed = {Path(f).parts[0] for f in res["files"] if not Path(f).parts[0].endswith((".dist-info", ".data"))}
    installed.discard("..")  # console scripts live outside site-packages
    assert installed == PACKAGES, installed


def test_import_edge_sdk_is_well_under_a_second(edge_install):
    code = ("import sys, time, json; t = time.perf_counter(); import edge_sdk; dt = time.perf_counter() - t; "
            f"print(json.dumps({{'dt': dt, 'file': edge_sdk.__file__, "
            f"'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))")
    runs = [_json(edge_install, code) for _ in range(3)]
    best = min(runs, key=lambda r: r["dt"])
    print(f"\nimport edge_sdk in the edge install: best {best['dt']:.3f} s of {[round(r['dt'], 3) for r in runs]}; "
          f"install {edge_install['timing']}")
    assert "site-packages" in best["file"] and not best["file"].startswith(str(ROOT)), best["file"]
    assert best["loaded"] == [], f"import edge_sdk pulled in {best['loaded']}"
    assert best["dt"] < 1.0, f"import edge_sdk took {best['dt']:.3f} s"


def test_the_fedmark_command_works_in_the_edge_install(edge_install):
    fedmark = str(edge_install["bin"] / "fedmark")
    top = _run(edge_install, fedmark, "--help")
    assert top.returncode == 0, top.stderr[-3000:]
    assert "device" in top.stdout and "demo" not in top.stdout
    dev = _run(edge_install, fedmark, "device", "--help")
    assert dev.returncode == 0, dev.stderr[-3000:]
    for action in ("train", "flush", "score"):
        assert action in dev.stdout
    mod = _run(edge_install, str(edge_install["py"]), "-m", "fedmark_cli", "device", "train", "--help")
    assert mod.returncode == 0, mod.stderr[-3000:]
    assert "--server" in mod.stdout
