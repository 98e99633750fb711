"""The end-to-end demo behind ``make demo`` (``fedmark demo``): an example of driving
models, server and edge_sdk together.  It sits above every package and ships in
no install; ``fedmark demo`` offers it only from a source checkout."""
