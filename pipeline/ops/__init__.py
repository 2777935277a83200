"""Operating soclake: run summaries in the lake, ``soclake status``, metrics, one config file."""
