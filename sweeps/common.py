"""What every sweep shares: the data files, artifacts exported once, one engine per fleet, result files.

Why sweeps run through ``simulate`` and not the demo: a configuration costs
seconds here (the production artifact and aggregation, no HTTP) instead of
minutes, so a grid of them fits in a session; the demo then applies the
winner.  Every sweep writes ``sweeps/results/<name>.json`` with the grid, each
point's curve and its final figures with their intervals.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "sweeps" / "results"
ARTIFACTS = ROOT / "out" / "sweeps" / "artifacts"


def data_file(name: str) -> str:
    """The bundled copy (examples/data) or, failing that, the shared one."""
    for p in (ROOT / "examples" / "data" / name,
              Path("/work/shared/data") / ("bank-marketing" if name.startswith("bank") else "online-retail") / name):
        if p.exists():
            return str(p)
    raise FileNotFoundError(f"{name}: not in examples/data or /work/shared/data")


BANK = "bank-full.csv.gz"
RETAIL = "online_retail.csv.gz"


def artifact(family: str, tag: str = "default", **opts: Any) -> str:
    """Export a family once per (tag) into out/sweeps/artifacts (TensorFlow, build time only)."""
    out = ARTIFACTS / f"{family}-{tag}"
    if not (out / "manifest.json").exists():
        from models.export import export
        data = data_file(BANK if family == "propensity" else RETAIL)
        export(family, out, data_path=data, seed=0, **opts)
    return str(out)


def save(name: str, doc: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = dict(doc, script=f"sweeps/{name}.py", finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               cpus=os.cpu_count())
    path.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    return path


def log(*parts: Any) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Every combination of the axes, in a stable order."""
    points: list[dict[str, Any]] = [{}]
    for key, values in axes.items():
        points = [dict(p, **{key: v}) for p in points for v in values]
    return points
