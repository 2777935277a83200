"""What a lake file holds, kept in its own Parquet footer, so planning a detection run reads
footers instead of a column of every row.

Every writer of lake files (ingest's partition writer, compaction, the rewrite of changed objects)
adds one key-value entry, ``soclake.stats``, to the footer: the file's rows, its first and last
``event_time`` and, for CloudTrail, the distinct ``eventName``s. The file's ``event_date`` is its
partition folder. A file without the entry (written by an older version, or by another tool) is
read the slow way; nothing is ever planned from a guess.
"""

from __future__ import annotations

import datetime as dt

import orjson
import pyarrow as pa
import pyarrow.compute as pc

KEY = "soclake.stats"
VERSION = 1
NAMED = {"cloudtrail": "eventName"}  # tables whose per-file names are kept, and the column


class FileStats:
    """Accumulates a file's stats as its rows are written; :meth:`metadata` is the footer entry."""

    def __init__(self, table: str):
        self.column = NAMED.get(table)
        self.rows = 0
        self.lo: dt.datetime | None = None
        self.hi: dt.datetime | None = None
        self.names: set[str | None] = set()

    def add(self, rows: pa.Table) -> None:
        self.rows += rows.num_rows
        if "event_time" in rows.column_names and rows.num_rows:
            lo, hi = pc.min_max(rows.column("event_time")).values()
            lo, hi = lo.as_py(), hi.as_py()
            self.lo = lo if self.lo is None or (lo is not None and lo < self.lo) else self.lo
            self.hi = hi if self.hi is None or (hi is not None and hi > self.hi) else self.hi
        if self.column and self.column in rows.column_names:
            self.names.update(pc.unique(rows.column(self.column)).to_pylist())

    def metadata(self) -> dict[str, bytes]:
        doc = {"v": VERSION, "rows": self.rows,
               "min": self.lo.isoformat() if self.lo else None, "max": self.hi.isoformat() if self.hi else None}
        if self.column:
            doc["names"] = sorted(self.names, key=lambda n: (n is None, n or ""))
        return {KEY: orjson.dumps(doc)}


def parse(value: bytes | None) -> dict | None:
    """A footer entry back as a dict with datetimes (None when absent, of another version, or unreadable)."""
    if not value:
        return None
    try:
        doc = orjson.loads(value)
        if doc.get("v") != VERSION:
            return None
        doc["min"] = dt.datetime.fromisoformat(doc["min"]) if doc.get("min") else None
        doc["max"] = dt.datetime.fromisoformat(doc["max"]) if doc.get("max") else None
        return doc
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return None
