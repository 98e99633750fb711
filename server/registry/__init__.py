"""Model registry: artifact archives (artifacts.py) and immutable, content-addressed versions with lineage (service.py)."""
