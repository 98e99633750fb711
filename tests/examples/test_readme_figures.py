"""The README's demo figures are generated from results.json, and the README holds exactly them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "readme_figures.py"
FAST = json.loads((Path(__file__).parent / "fixtures" / "results_fast.json").read_text())


def _load():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_figures", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_readme_block_is_what_the_published_results_render_to():
    out = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_render_quotes_the_json_and_rewriting_is_idempotent(tmp_path):
    mod = _load()
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{mod.BEGIN}\nold, typed figures 3.70\n{mod.END}\n\nrest\n")
    assert mod.rewrite(readme, FAST) is True
    text = readme.read_text()
    assert "typed figures" not in text and text.startswith("intro") and text.endswith("rest\n")
    fed = FAST["propensity"]["runs"]["federated"]
    lo, hi = fed["auc_ci"]
    assert f"| federated | {fed['auc']:.3f} | {lo:.3f} – {hi:.3f} | {fed['lift_top_decile']:.2f} |" in text
    dp = FAST["propensity"]["runs"]["federated + DP"]
    assert f"{dp['epsilon']:.2f} |" in text
    n = FAST["kpis"]["Raw Data Movement Reduction"]["records_on_devices"]
    assert f"0 of {n:,} (100 % avoided)" in text
    assert mod.rewrite(readme, FAST) is False  # a second run changes nothing
