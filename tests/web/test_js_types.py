"""The JS package's type declarations name every export, and npm would ship them.

``types/index.d.ts`` declares the browser entry (src/index.js) and ``types/node.d.ts`` the Node entry's
additions (src/node.js); each is compared with what Node actually exports from the module, so a new
export without a declaration (or a declaration of something removed) fails here.  ``npm pack
--dry-run`` must list the sources, the declarations and the README, and nothing else.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "edge_sdk" / "web"
DECL = re.compile(r"^export (?:declare )?(?:class|function|const|type|interface) (\w+)", re.M)


def exports_of(module: str) -> set[str]:
    node = shutil.which("node")
    assert node, "node (>= 20) is needed: scripts/install_browser_deps.sh"
    out = subprocess.run([node, "--input-type=module", "-e",
                          f"const m = await import({json.dumps(str(WEB / 'src' / module))}); "
                          "console.log(JSON.stringify(Object.keys(m)))"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


def test_every_export_is_declared():
    browser = exports_of("index.js")
    declared = set(DECL.findall((WEB / "types" / "index.d.ts").read_text()))
    types_only = {"Purposes", "DeviceRecord", "DeviceConditions", "Storage", "ClientOptions", "ProgressEvent",
                  "DataReport", "TrainReport", "RoundStatus", "UploadOutcome", "FlushReport", "ConsentSignals", "TcfSignal",
                  "ConsentRequirement", "ConsentDecision", "ScoreHistogramJSON", "StatisticsReport"}
    assert declared - types_only == browser, {"undeclared": sorted(browser - declared),
                                              "stale": sorted(declared - types_only - browser)}
    node_extra = exports_of("node.js") - browser
    assert set(DECL.findall((WEB / "types" / "node.d.ts").read_text())) == node_extra


def test_the_package_ships_sources_types_and_readme_only():
    pkg = json.loads((WEB / "package.json").read_text())
    assert "private" not in pkg and pkg["exports"]["."]["types"] == "./types/index.d.ts"
    assert pkg["exports"]["."]["node"] == {"types": "./types/node.d.ts", "default": "./src/node.js"}
    out = subprocess.run(["npm", "pack", "--dry-run", "--json", "--ignore-scripts"], cwd=WEB, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    files = {f["path"] for f in json.loads(out.stdout)[0]["files"]}
    assert {"package.json", "README.md", "src/index.js", "src/node.js", "types/index.d.ts", "types/node.d.ts"} <= files
    assert all(f in ("package.json", "README.md") or f.startswith(("src/", "types/")) for f in files), sorted(files)
    shipped = {f for f in files if f.startswith("src/")}
    src = WEB / "src"  # the family plug-ins live in src/families/
    assert shipped == {"src/" + p.relative_to(src).as_posix() for p in src.rglob("*.js")}
