"""Ingest, the local runner: list, skip what the ledger holds, normalise and write on one worker per
core, commit (``run``); the workers themselves (``workers``), shared with the Beam runner."""

from pipeline.ingest.run import (
    DEFAULT_BUFFER_BYTES,
    MAX_REJECTS_LISTED,
    IngestOptions,
    IngestReport,
    assign_files,
    ingest,
    recover,
    retract,
)

__all__ = ["DEFAULT_BUFFER_BYTES", "MAX_REJECTS_LISTED", "IngestOptions", "IngestReport", "assign_files", "ingest",
           "recover", "retract"]
