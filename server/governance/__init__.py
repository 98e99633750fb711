"""Governance: policies (policy.py), the hash-chained audit trail (audit.py), residency partitions
(residency.py), federated evaluation and publish gates (evaluation.py, gate.py), activation checks
(activation.py), partners and their contribution (partners.py), KPIs (kpis.py), Prometheus metrics
(monitor.py).  Nothing is imported here, so importing one module does not pull in the others."""
