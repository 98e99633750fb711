"""Shared fixtures: each artifact is exported once per session (exports cost TF time)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def bank_split():
    from models import data

    return data.stratified_split(data.load_bank(), seed=0)


@pytest.fixture(scope="session")
def retail():
    from models import data

    return data.load_retail()


@pytest.fixture(scope="session")
def propensity_artifact(tmp_path_factory, bank_split):
    from models.export import export

    out = tmp_path_factory.mktemp("propensity")
    export("propensity", out, train_records=bank_split[0], seed=0)
    return out


@pytest.fixture(scope="session")
def recommender_artifact(tmp_path_factory, retail):
    from models.export import export

    out = tmp_path_factory.mktemp("recommender")
    export("recommender", out, items=retail.items, seed=0)
    return out


@pytest.fixture(scope="session")
def bank_xy(propensity_artifact, bank_split):
    """(x_train, y_train, x_test, y_test) encoded with the artifact's own schema."""
    from fedmark.contract import load_artifact_manifest

    schema = load_artifact_manifest(propensity_artifact).schema()
    x, y, _ = schema.encode(bank_split[0])
    xt, yt, _ = schema.encode(bank_split[1])
    return x, y, xt, yt

