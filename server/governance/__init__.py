"""Governance: the decisions, and the records they are made from.  Nothing here changes a version or a round
(those use cases are :mod:`server.lifecycle`).

decisions.py - eligible? exported? suppressed? (the one home of every such rule); policy.py - policies, validated
and versioned; residency.py - region partitions and their readers, regional line names; gate.py - the publish
gate's decision; evaluation.py - federated evaluation reports and their metrics; activation.py - activation
checks, records and segments; partners.py - partners and model sharing; audit.py - the hash-chained audit trail;
kpis.py - KPIs; monitor.py - Prometheus metrics.  Nothing is imported here, so importing one module does not
pull in the others."""
