"""fedmark: governed federated learning for marketing models.

This package is the ground floor every side shares, and holds only two things:
the wire contract (``fedmark.contract``: manifest, features, parameters,
clipping, update format, hashing, artifact I/O) and the metrics
(``fedmark.metrics``).  It imports the standard library and numpy only, never
``edge_sdk``, ``server`` or ``models``.  The ``fedmark`` command lives above the
packages it drives, in ``fedmark_cli``; the demo is an example in
``examples/demo`` (source checkout only).
"""
__version__ = "0.1.0"
