"""The statistics layout and its fit (fedmark.contract.statistics) against models.tabular's central fit,
and the release maths (server.aggregation.statistics): clipping bounds, noise scale, deterministic seeds."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fedmark.contract.statistics import (StatisticsError, StatisticsPlan, fit_from_totals, local_statistics,
                                         parse_contribution)
from server.aggregation.statistics import DeviceContribution, StatisticsConfig, coordinates, release

DECL = {"label": "y", "positive": "yes", "columns": {
    "spend": {"kind": "numeric", "range": [-10, 1000], "transform": "log1p", "missing": "indicator"},
    "age": {"kind": "numeric", "range": [0, 120]},
    "member": {"kind": "boolean"},
    "city": {"kind": "categorical", "max_vocab": 2, "tail_buckets": 4},
    "sku": {"kind": "hash", "buckets": 8}}}


def _rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"spend": None if i % 7 == 0 else float(rng.gamma(2, 50)), "age": float(rng.integers(18, 90)),
             "member": "yes" if i % 3 else "no", "city": ("a", "b", "b", "c", "c", "c")[i % 6],
             "sku": f"s{i % 5}", "y": "yes" if rng.random() < 0.3 else "no"} for i in range(n)]


def _sum(bodies: list[dict]) -> dict:
    out: dict = {}
    for b in bodies:
        for name, s in b["columns"].items():
            t = out.setdefault(name, {"values": {}} if "values" in s else {"count": 0, "sum": 0.0, "sumsq": 0.0})
            if "values" in s:
                for v, n in s["values"].items():
                    t["values"][v] = t["values"].get(v, 0) + n
            else:
                for k in ("count", "sum", "sumsq"):
                    t[k] += s[k]
    return out


def test_summed_local_statistics_fit_the_central_schema():
    from models import tabular

    rows = _rows(600)
    plan = StatisticsPlan.from_declaration(DECL)
    bodies = [local_statistics(rows[i:i + 50], plan) for i in range(0, 600, 50)]
    fed = fit_from_totals(plan, _sum(bodies)).to_json()
    central = tabular.fit_schema(rows, DECL).to_json()
    for f, c in zip(fed["columns"], central["columns"]):
        assert f.keys() == c.keys()
        for k in f:
            if isinstance(f[k], float):
                assert f[k] == pytest.approx(c[k], rel=1e-9), (f["name"], k)
            else:
                assert f[k] == c[k], (f["name"], k)
    assert fed["width"] == central["width"] and fed["positive"] == central["positive"]


def test_parse_refuses_what_the_declared_range_makes_impossible():
    plan = StatisticsPlan.from_declaration(DECL)
    body = dict(local_statistics(_rows(10), plan), violations={}, excluded={})
    assert parse_contribution(body, plan, 100)["records"] == 10
    bad = dict(body, columns=dict(body["columns"], age={"count": 2, "sum": 500.0, "sumsq": 10.0, "missing": 0}))
    with pytest.raises(StatisticsError) as e:
        parse_contribution(bad, plan, 100)
    assert e.value.code == "out_of_range"
    with pytest.raises(StatisticsError):
        parse_contribution(dict(body, records=101), plan, 100)


def test_a_clipped_device_moves_each_cell_by_at_most_clip():
    plan = StatisticsPlan.from_declaration(DECL)
    big = dict(local_statistics(_rows(500, 1), plan), violations={}, excluded={})
    coords = coordinates(plan, big)
    assert math.sqrt(sum(v * v for v in coords.values())) > 10
    cfg = StatisticsConfig(noise_multiplier=0.0, clip=10.0, k=1)
    out = release(plan, [DeviceContribution("d", "eu|p", big)], cfg, np.random.default_rng(0))
    assert out["clipped_devices"] == 1
    t = out["totals"]
    # proportions survive the clip: the mean of age is unchanged
    assert t["columns"]["age"]["sum"] / t["columns"]["age"]["count"] == pytest.approx(
        big["columns"]["age"]["sum"] / big["columns"]["age"]["count"])


def test_noise_has_the_configured_scale_and_is_seeded():
    plan = StatisticsPlan.from_declaration({"columns": {"x": {"kind": "numeric", "range": [0, 1]}}})
    body = {"records": 0, "columns": {"x": {"count": 0, "sum": 0.0, "sumsq": 0.0, "missing": 0}},
            "violations": {}, "excluded": {}}
    cfg = StatisticsConfig(noise_multiplier=2.0, clip=3.0, k=1)
    draws = [release(plan, [DeviceContribution("d", f"c{i}|p", body) for i in range(400)], cfg,
                     np.random.default_rng(7))["cells"] for _ in range(2)]
    assert draws[0] == draws[1]  # same seed, same release
    counts = np.array([c["columns"]["x"]["sum"] for c in draws[0].values()])
    # sigma = z * clip on the normalised sum; the sum of offsets is in units of the half-range (0.5)
    assert counts.std() == pytest.approx(3.0, rel=0.15)
