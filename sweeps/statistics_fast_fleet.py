"""The fast demo's statistics settings (examples.demo.statistics.FAST_STATISTICS), chosen on its fleet.

``fedmark demo --fast`` keeps 6,000 bank rows: 151 consenting devices of about 30 records.  This grid
releases their statistics offline (the device code ``edge_sdk.statistics.measure`` and the server's
``server.aggregation.statistics.release``, no HTTP) and records, per setting, epsilon, the category values
withheld and the fitted vocabulary sizes.  The fast setting is the one that keeps nearly every value at
the lowest noise tried that still keeps epsilon below the demo's DP training (z = 0.7, epsilon about 15).

    .venv/bin/python sweeps/statistics_fast_fleet.py   # writes sweeps/results/statistics_fast_fleet.json
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

RESULT = ROOT / "sweeps" / "results" / "statistics_fast_fleet.json"
GRID = [(1.0, 50.0, 2.0), (0.5, 20.0, 2.0), (0.5, 10.0, 1.0), (0.3, 20.0, 2.0), (0.3, 20.0, 1.0)]


def main() -> int:
    from examples.demo import propensity as demo_prop
    from examples.demo import statistics as demo_stats
    from fedmark.contract.statistics import StatisticsPlan, fit_from_totals
    from models import data as data_mod
    from server.aggregation import PrivacyLedger
    from server.aggregation.statistics import StatisticsConfig, release
    from server.rounds.statistics import STD_FLOOR
    from sweeps.statistics_fit import contributions_of

    cfg = demo_prop.PropensityConfig(rows=6000)  # the fast variant's subset, drawn as propensity.run draws it
    rng = np.random.default_rng(cfg.seed)
    train, _ = data_mod.stratified_split(data_mod.load_bank(), seed=cfg.seed)
    train = [train[i] for i in sorted(rng.choice(len(train), int(cfg.rows * 0.75), replace=False))]
    plan = StatisticsPlan.from_declaration(demo_stats.BANK_DECLARATION)
    with tempfile.TemporaryDirectory() as tmp:
        contributions = contributions_of(demo_prop.make_devices(train, cfg, "propensity_scoring", Path(tmp),
                                                                np.random.default_rng(cfg.seed)))
    rows = []
    for z, clip, sd in GRID:
        out = release(plan, contributions, StatisticsConfig(noise_multiplier=z, clip=clip, k=cfg.k_min,
                                                            selection_sd=sd), np.random.default_rng(0))
        schema = fit_from_totals(plan, out["totals"], std_floor=STD_FLOOR)
        rows.append({"noise_multiplier": z, "clip": clip, "selection_sd": sd,
                     "epsilon": PrivacyLedger().record(z, 1.0).epsilon(1e-5),
                     "withheld_values": sum(out["suppressed_values"].values()), "width": schema.width,
                     "vocabulary": {c.name: len(c.vocabulary) for c in schema.columns if c.kind == "onehot"}})
        print(json.dumps(rows[-1]))
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({"devices": len(contributions), "grid": rows}, indent=2) + "\n")
    print(f"wrote {RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
