"""fedmark: governed federated learning for marketing models.

This top-level package holds only what every side shares: the wire contract
(``fedmark.contract``) and the command-line entry point (``fedmark.cli``).
Importing it loads nothing heavy.
"""
__version__ = "0.1.0"
