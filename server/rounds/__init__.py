"""Rounds: training configuration (config.py), round strategies (strategy.py: SyncStrategy, FedBuffStrategy),
opening rounds and task assignment (service.py), update ingestion (ingest.py), round states and abandoning
(state.py), the one fold loop and the exactly-once close (aggregate.py) with the per-cell storage of governed
models (hierarchical.py).  See the module docstrings; nothing is imported here so that importing one module
does not pull in the others."""
