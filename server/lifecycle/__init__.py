"""Use cases that change versions or end rounds, each in one transaction, each audited.

Why a floor of its own: these are the only operations that cross the
registry (versions), the rounds (open rounds to abandon, the optimizer state
to reset) and governance (the decision they apply).  Kept above all three,
the lower floors never import each other upwards; the API calls these.

* :mod:`~server.lifecycle.versions` - publish an artifact, roll back to a version;
* :mod:`~server.lifecycle.gate` - apply the publish gate's decision on a candidate;
* :mod:`~server.lifecycle.policy` - set a model's governance policy;
* :mod:`~server.lifecycle.training` - set a model's training configuration;
* :mod:`~server.lifecycle.rounds` - abandon the open rounds a change makes stale.

Nothing is imported here, so importing one use case does not pull in the others.
"""
