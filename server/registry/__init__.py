"""Model registry: artifact archives (artifacts.py), immutable, content-addressed versions with lineage
(service.py) and regional model lines (lines.py).  Publish and rollback, which also end rounds, are
use cases of :mod:`server.lifecycle.versions`."""
