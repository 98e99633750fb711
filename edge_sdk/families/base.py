"""What a training-protocol plug-in is, and the registry devices dispatch on.

Why plug-ins: an artifact's manifest names the *protocol* it is trained with
(``supervised-tabular/1``, ``mf-reconstruction/1``): which graphs it ships,
what a device feeds them and what stays on the device.  The Trainer and the
Client ask the artifact's plug-in instead of branching on a family name, so a
new kind of model is one new module here (and its JS twin in
``edge_sdk/web/src/families/``), not edits spread over the SDK.  An artifact
whose protocol this SDK does not know is refused when it is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from fedmark.contract import ContractError, Manifest, ManifestError

__all__ = ["TrainerError", "TrainResult", "TrainingProtocol", "register", "protocol_for", "known_protocols"]


class TrainerError(ContractError):
    """Training input does not fit the artifact (shape, dtype, values)."""


@dataclass
class TrainResult:
    """Outcome of local training."""

    params: list[np.ndarray]
    local: dict[str, np.ndarray]
    loss: float
    num_examples: int


class TrainingProtocol:
    """One training protocol, bound to one loaded artifact (``trainer``).

    Trainer side (numpy + onnxruntime only): ``train``, ``predict`` and any
    public helper (the Trainer forwards unknown attributes here, e.g.
    ``trainer.batches`` or ``trainer.recommender_plan``).  Device side (used by
    :class:`edge_sdk.Client`): ``training_input``, ``needs_personal_state``,
    ``after_training``, ``evaluate`` and the verbs it supports.
    """

    name: str = ""
    #: graph roles the artifact must ship
    graphs: tuple[str, ...] = ()
    #: Client verbs this protocol supports ("score", "recommend")
    verbs: frozenset[str] = frozenset()

    def __init__(self, manifest: Manifest, trainer: Any = None) -> None:
        self.manifest = manifest
        self.trainer = trainer  # None for device-side helpers that need only the manifest
        missing = [g for g in self.graphs if g not in self.manifest.graphs]
        if missing:
            raise ManifestError(f"artifact lacks graph(s) {missing} that protocol {self.name} needs; re-export it "
                                "with `fedmark export`")

    # ---------------------------------------------------------------- trainer side
    def train(self, params: list[np.ndarray], data: Any, *, local: Mapping[str, np.ndarray] | None, epochs: int,
              lr: float, seed: int, shuffle: bool) -> TrainResult:
        raise NotImplementedError

    def predict(self, params: list[np.ndarray], data: Any, *, local: Mapping[str, np.ndarray] | None) -> np.ndarray:
        raise NotImplementedError

    # ---------------------------------------------------------------- device side
    def training_input(self, rows: Sequence[Any], *, purposes: Sequence[str] | None, strict: bool,
                       consent_field: str) -> tuple[Any, Any]:
        raise NotImplementedError

    needs_personal_state: bool = False

    def after_training(self, store: Any, model: str, train_data: Any, result: TrainResult,
                       history: list[str]) -> None:
        """Keep what stays on the device after a local run (nothing by default)."""

    def evaluate(self, store: Any, model: str, rows: Sequence[Any], *, k: int, consent_field: str,
                 purposes: Sequence[str] | None) -> Any:
        raise NotImplementedError

    def prepare_update(self, data: Any, *, seed: int) -> Any:
        """The upload this protocol builds itself (an ``edge_sdk.update.PreparedUpdate``), or None for the usual
        clipped parameter delta that :func:`edge_sdk.update.build_update` makes (every gradient protocol)."""
        return None


_REGISTRY: dict[str, type[TrainingProtocol]] = {}


def register(cls: type[TrainingProtocol]) -> type[TrainingProtocol]:
    """Class decorator: make a protocol known to every Trainer of this process."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no protocol name")
    _REGISTRY[cls.name] = cls
    return cls


def known_protocols() -> list[str]:
    return sorted(_REGISTRY)


def protocol_for(manifest: Manifest, trainer: Any = None) -> TrainingProtocol:
    """The plug-in for an artifact; a ManifestError for a protocol this SDK does not know."""
    cls = _REGISTRY.get(manifest.protocol)
    if cls is None:
        raise ManifestError(f"artifact {manifest.model!r} is trained with protocol {manifest.protocol!r}, which this "
                            f"SDK does not know (it knows {', '.join(known_protocols())}); update the SDK")
    return cls(manifest, trainer)
