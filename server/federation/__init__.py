"""Federation: one server per region, a global coordinator above them (``fedmark server --role``).

Why: residency by rows in one database answers "where is an EU customer's
update processed?" with "wherever the one server runs".  With federation each
region runs its own server and database; devices enrol, upload and are
aggregated there, under that region's clipping, DP noise and privacy ledger.
Only the *noised regional aggregate* (plus its contributor count, at least
``k``, its noised clip-bit sum and its epsilon) crosses to the coordinator,
which combines the regional aggregates with the server optimizer and
publishes the global version; regions pull it and serve it (models down,
aggregates up).  This is the aggregator / master-aggregator split of Google's
production FL system (Bonawitz et al., MLSys 2019) and the relay hierarchy of
NVIDIA FLARE.

Modules (one concept each):

* :mod:`~server.federation.roles` - the three roles and which routes each serves;
* :mod:`~server.federation.credentials` - region credentials and the coordinator's proof;
* :mod:`~server.federation.coordinator` - global rounds: open, accept pushes, combine, publish;
* :mod:`~server.federation.upstream` - the region's HTTP client to its coordinator;
* :mod:`~server.federation.region` - the region's agent: pull versions, push aggregates, resync.

Privacy accounting across regions is documented in
:mod:`server.federation.coordinator` and docs/GOVERNANCE.md.
"""
from __future__ import annotations

from server.federation.roles import GLOBAL, REGION, SINGLE, role_of

__all__ = ["GLOBAL", "REGION", "SINGLE", "role_of"]
