"""fedmark edge SDK: train marketing models on the device, upload only clipped updates.

Public API (everything an app needs is re-exported here explicitly)::

    from edge_sdk import Client, DeviceConditions
    client = Client("https://fl.example.com", app_key="ak_…", device_id="d-42",
                    region="eu", storage_dir="/data/app/fedmark")
    report = client.train("propensity", records,
                          conditions=DeviceConditions(charging=True, unmetered=True, idle=True, battery=0.9))

Importing this package loads numpy and the standard library only; onnxruntime
is imported on first training/scoring (see :mod:`edge_sdk.runtime`).
"""
from __future__ import annotations

from edge_sdk.client import Client
from edge_sdk.reports import EvalReport, FlushReport, TrainReport, UploadOutcome
from edge_sdk.config import ClientConfig, RetryPolicy
from edge_sdk.consent import CONSENT_FIELD, has_consent, parse_purposes
from edge_sdk.data import DataReport, load_records
from edge_sdk.eligibility import DeviceConditions
from edge_sdk.errors import (ArtifactIntegrityError, AuthenticationError, ConfigurationError, ConsentError,
                             EdgeError, ModelError, NoTaskError, NotEligibleError, RejectedUpdateError,
                             SchemaError, ServerError, TransportError)
from edge_sdk.sync import SyncResult
from edge_sdk.task import Task
from edge_sdk.update import PreparedUpdate

__all__ = [
    "Client", "ClientConfig", "RetryPolicy", "DeviceConditions", "Task",
    "TrainReport", "FlushReport", "UploadOutcome", "EvalReport", "DataReport", "SyncResult", "PreparedUpdate",
    "CONSENT_FIELD", "has_consent", "parse_purposes", "load_records",
    "EdgeError", "ConfigurationError", "SchemaError", "ConsentError", "NotEligibleError",
    "ArtifactIntegrityError", "ModelError", "TransportError", "ServerError", "AuthenticationError",
    "NoTaskError", "RejectedUpdateError",
]
