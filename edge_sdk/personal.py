"""Device-only personal state: the recommender's user vector and the items already bought.

Why its own store: in federated reconstruction the user embedding is private by
construction — it is never uploaded (only global item parameters are) and must
survive model updates, since a new global version changes the item table, not
who the user is.  State is kept per *model name* (not per version) in the
storage directory, written atomically, and can be erased with :meth:`forget`
(e.g. when the customer withdraws consent).  Purchased items are kept as item
*codes*, not indices, because a new version may reorder its catalogue.
"""
from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edge_sdk.errors import ConfigurationError
from fedmark.contract import ParamSpec

log = logging.getLogger("edge_sdk.personal")


class PersonalStore:
    """``<storage>/personal/<model>.npz`` holding local parameters and the purchase history."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    def _path(self, model: str) -> Path:
        if not model or "/" in model or "\\" in model or model.startswith("."):
            raise ConfigurationError(f"model name {model!r} is not a plain name")
        return self.dir / f"{model}.npz"

    def load(self, model: str, specs: Sequence[ParamSpec] = ()) -> tuple[dict[str, np.ndarray], list[str]]:
        """Local params (only those whose shape still matches ``specs``, if given) and the item-code history."""
        path = self._path(model)
        if not path.is_file():
            return {}, []
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k[len("local__"):]: z[k].astype(np.float32) for k in z.files if k.startswith("local__")}
                history = json.loads(bytes(z["history"]).decode()) if "history" in z.files else []
        except (OSError, ValueError, KeyError) as exc:
            log.warning("personal state for %s is unreadable (%s); starting afresh", model, exc)
            return {}, []
        if specs:
            wanted = {s.name: s.shape for s in specs}
            for name in list(arrays):
                if wanted.get(name) != arrays[name].shape:
                    log.info("local parameter %s changed shape in the new model version; re-initialising it", name)
                    del arrays[name]
        return arrays, [str(h) for h in history]

    def save(self, model: str, local: Mapping[str, np.ndarray], history: Sequence[str]) -> None:
        """Replace the model's personal state atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        payload = {f"local__{k}": np.asarray(v, dtype=np.float32) for k, v in local.items()}
        payload["history"] = np.frombuffer(json.dumps(sorted(set(history))).encode(), dtype=np.uint8)
        np.savez(buf, **payload)  # type: ignore[arg-type]
        path = self._path(model)
        tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def models(self) -> list[str]:
        """The models this device holds personal state for."""
        return sorted(p.stem for p in self.dir.glob("*.npz")) if self.dir.is_dir() else []

    def forget(self, model: str) -> bool:
        """Erase the model's personal state; True if there was any."""
        path = self._path(model)
        existed = path.is_file()
        path.unlink(missing_ok=True)
        return existed
