"""A training task as the server hands it out (``POST /v1/tasks``, docs/API.md).

Why parsed into a dataclass: the task decides privacy-relevant settings (clip
norm, local noise, encoding) and the eligibility policy, so a malformed or
missing field must fail loudly here rather than silently fall back to a
default somewhere in the training path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from edge_sdk.errors import ServerError
from fedmark.contract import ENCODINGS


@dataclass(frozen=True)
class Task:
    task_id: str
    round_id: str
    model: str
    version: int
    manifest_url: str
    upload_url: str
    clip_norm: float | None  # None: the training configuration has no clipping
    local_noise: float = 0.0
    encoding: str = "f32"
    deadline: str | None = None
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    eligibility: Mapping[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_json(d: Any) -> "Task":
        def bad(msg: str) -> ServerError:
            return ServerError(200, "bad_task", f"the server's task is malformed: {msg}")

        if not isinstance(d, Mapping):
            raise bad("not a JSON object")
        missing = [k for k in ("round_id", "model", "version", "upload_url") if d.get(k) is None]
        if missing:
            raise bad(f"missing field(s) {missing}")
        try:
            version = int(d["version"])
            clip = None if d.get("clip_norm") is None else float(d["clip_norm"])
            noise = float(d.get("local_noise") or 0.0)
        except (TypeError, ValueError) as exc:
            raise bad(str(exc)) from exc
        if clip is not None and not (math.isfinite(clip) and clip > 0):
            raise bad(f"clip_norm must be a positive number or null, got {d['clip_norm']!r}")
        if not (math.isfinite(noise) and noise >= 0):
            raise bad(f"local_noise must be >= 0, got {d.get('local_noise')!r}")
        if noise > 0 and clip is None:
            raise bad("local_noise is a multiple of the clip norm, but the task has no clip_norm; "
                      "configure clipping or set local_noise to 0")
        encoding = str(d.get("encoding") or "f32")
        if encoding not in ENCODINGS:
            raise bad(f"unknown update encoding {encoding!r}")
        hp = d.get("hyperparams")
        hp = {} if hp is None else hp
        elig = d.get("eligibility")
        elig = {} if elig is None else elig
        if not isinstance(hp, Mapping) or not isinstance(elig, Mapping):
            raise bad("hyperparams and eligibility must be JSON objects")
        model = str(d["model"])
        return Task(
            task_id=str(d.get("task_id") or d["round_id"]), round_id=str(d["round_id"]), model=model,
            version=version,
            manifest_url=str(d.get("manifest_url") or f"/v1/models/{model}/versions/{version}/manifest"),
            upload_url=str(d["upload_url"]), clip_norm=clip, local_noise=noise, encoding=encoding,
            deadline=d.get("deadline"), hyperparams=dict(hp), eligibility=dict(elig))
