"""The end-to-end demo behind ``make demo``: glue over models, server and edge_sdk."""
