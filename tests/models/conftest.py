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



@pytest.fixture(scope="session")
def customer_tables():
    """The two Online Retail customer tables (models.tables): regression and multiclass."""
    from models import tables

    return tables.build_customer_tables()


def _split(rows, seed=0, test_fraction=0.25):
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(rows))
    cut = int(len(rows) * (1 - test_fraction))
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


@pytest.fixture(scope="session")
def value_split(customer_tables):
    return _split(customer_tables["customer_value"])


@pytest.fixture(scope="session")
def offer_split(customer_tables):
    return _split(customer_tables["next_offer"])


@pytest.fixture(scope="session")
def regression_artifact(tmp_path_factory, value_split):
    from models.export import export

    out = tmp_path_factory.mktemp("regression")
    export("tabular", out, rows=value_split[0], label="next_3m_spend", task="regression", drop=["customer_id"],
           hidden=16, model="customer-value", seed=0)
    return out


@pytest.fixture(scope="session")
def multiclass_artifact(tmp_path_factory, offer_split):
    from models.export import export

    out = tmp_path_factory.mktemp("multiclass")
    export("tabular", out, rows=offer_split[0], label="next_offer", task="multiclass", drop=["customer_id"],
           hidden=16, model="next-offer", seed=0)
    return out


@pytest.fixture(scope="session")
def embedding_artifact(tmp_path_factory, value_split):
    """Customer value (regression) with the country fed to a 4-wide Embedding (an "index" column)."""
    from models.export import export

    out = tmp_path_factory.mktemp("embedding")
    export("tabular", out, rows=value_split[0], label="next_3m_spend", task="regression", drop=["customer_id"],
           embed={"country": 4}, hidden=16, model="customer-value-embed", seed=0)
    return out
