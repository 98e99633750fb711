"""Examples of using fedmark, run from a source checkout (not installed by setup.py).

``examples.demo`` is the end-to-end demo behind ``make demo``; ``examples/data/``
holds the public data sets it and the tests use.
"""
