"""Fixtures for the simulator's tests: one real exported propensity artifact and a small fleet of bank records."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Bank:
    artifact: str
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]


@pytest.fixture(scope="session")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    """The propensity artifact (TensorFlow -> ONNX via models.export) and the bank data's stratified split."""
    from models.data import load_bank, stratified_split
    from models.export import export

    root = tmp_path_factory.mktemp("sim-artifacts")
    train, test = stratified_split(load_bank(), seed=0)
    export("propensity", root / "propensity", seed=0, train_records=train)
    return Bank(str(root / "propensity"), train, test)
