"""Rounds: training configuration, round strategies (SyncStrategy, FedBuffStrategy), task assignment,
update ingestion and the exactly-once round close.  See the module docstrings; nothing is imported here
so that importing one module does not pull in the others."""
