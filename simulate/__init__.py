"""``fedmark simulate``: the production training path (artifact, aggregation, training config) over a
simulated fleet, without HTTP.  See docs/SIMULATE.md.

Floor: above ``edge_sdk``, ``server`` and ``models`` (it drives all three), below ``fedmark_cli``.
Nothing is imported here: ``simulate.cli`` must stay light for ``fedmark --help``.
"""
__all__: list[str] = []
