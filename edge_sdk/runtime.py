"""The boundary to onnxruntime: load a trainer lazily and convert its errors.

Why a boundary module: ``import edge_sdk`` must stay instant and must not pull
onnxruntime in (an app may only want the queue or the CLI's help), so the
trainer module — which imports onnxruntime — is imported here on first use.
Every failure below this line (onnxruntime's own exception types, numpy shape
errors, a manifest that no longer verifies) becomes an :class:`EdgeError`.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from typing import Any, Iterator

from edge_sdk.errors import ArtifactIntegrityError, EdgeError, ModelError
from fedmark.contract import ManifestError


@contextlib.contextmanager
def converted(action: str) -> Iterator[None]:
    """Re-raise anything that is not already an EdgeError as ModelError, naming ``action``."""
    try:
        yield
    except EdgeError:
        raise
    except ManifestError as exc:
        raise ArtifactIntegrityError(f"{action}: {exc}") from exc
    except MemoryError as exc:
        raise ModelError(f"{action}: out of memory; train on fewer records or a smaller model") from exc
    except Exception as exc:  # onnxruntime raises its own (pybind) exception types
        raise ModelError(f"{action} failed in the ONNX runtime: {type(exc).__name__}: {exc}") from exc


def load_trainer(artifact_dir: str | os.PathLike[str], *, threads: int = 1, verify: bool = True) -> Any:
    """An :class:`edge_sdk.trainer.Trainer` for an artifact directory.

    ``verify=False`` skips re-hashing the files: only for a directory the caller
    has just verified (a :class:`~edge_sdk.sync.ModelCache` sync or load).
    """
    with converted(f"loading the model in {artifact_dir}"):
        trainer_mod = importlib.import_module("edge_sdk.trainer")
        return trainer_mod.Trainer(artifact_dir, verify=verify, threads=threads)
