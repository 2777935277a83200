"""Data files are written under ``_staging/`` and moved into the tables only after their commit.

Readers glob ``<table>/**/*.parquet`` (DuckDB reads ``_x`` and ``.x`` names there too) or list
``<table>/`` on S3, so nothing under ``_staging/`` at the lake root is ever visible to them.
A commit goes:

1. every new file is durable at ``_staging/<its final path>``;
2. the ledger commit (one atomic PUT) names the final paths (``files_added``) and the files it
   retires (``files_removed``, after a retraction);
3. retired files are deleted, *then* the staged files are moved into place (local rename; S3
   server-side copy + delete).

A crash before 2 leaves only staging leftovers, which no commit names: the next writer deletes
them. A crash after 2 leaves committed files still staged: the next writer moves them into
place (and deletes retired files first). Readers never see a file twice: between 2 and the end
of 3 they see the old state minus retired files, never an old and a new copy side by side.
"""

from __future__ import annotations

from pipeline import schema
from pipeline.errors import LakeError
from pipeline.lake.store import TMP_SUFFIX

STAGING = "_staging/"


def staged(rel: str) -> str:
    """Where a data file is written before its commit makes it ``rel``."""
    return STAGING + rel


def promote(store, rel: str) -> None:
    """Move a committed file from staging into place (idempotent: done when already there)."""
    try:
        store.move(staged(rel), rel)
    except FileNotFoundError:
        if not store.exists(rel):
            raise LakeError(f"{store.url(rel)} is committed but neither staged nor published; "
                            "it was removed by hand: re-ingest its objects") from None


def publish_committed(store, added, removed) -> None:
    """After the ledger commit: retire ``removed``, then move ``added`` into place."""
    for rel in removed:
        store.delete(rel)
    for rel in added:
        promote(store, rel)


def settle(store, ledger=None, sweep: bool = False) -> int:
    """Finish what an interrupted writer left; returns the number of files removed.

    Staged files the ledger names are moved into place, other staged files are deleted. When
    anything was staged (a run stopped mid-commit), or with ``sweep``, data files in the tables
    the ledger does not name (retired ones, or published by older versions before their commit)
    and stale temp files are deleted first.
    """
    leftovers = store.list(STAGING)
    if not leftovers and not sweep:
        return 0
    if ledger is None:
        from pipeline.lake.ledger import Ledger

        ledger = Ledger.load(store)
    removed = 0
    for table in schema.LOG_TABLES:
        for rel in store.list(table + "/"):
            if rel.endswith(TMP_SUFFIX) or (rel.endswith(".parquet") and rel not in ledger.files):
                store.delete(rel)
                removed += 1
    for name in leftovers:
        rel = name[len(STAGING):]
        if rel.endswith(".parquet") and rel in ledger.files:
            promote(store, rel)
        else:
            store.delete(name)
            removed += 1
    return removed
