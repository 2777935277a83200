"""Merge each partition's small files into few large ones, atomically, under the writer lease.

Continuous ingest (``soclake watch``) commits a file per partition per batch; over a day that is
hundreds of small files per partition, and readers pay per file. Compaction rewrites them the
way ingest's retraction rewrites files: new files are written under ``_staging/``, one ledger
commit adds them and retires the old ones (``files_replaced`` maps each old file to the new file
holding its rows, so every object's entry still names where its rows are), then the old files
are deleted and the new ones moved into place (:mod:`pipeline.lake.staging`). Readers see the old
files or the new ones, never both; a crash before the commit leaves only staging leftovers the next
writer deletes, a crash after it is finished by the next writer.

Rows are copied row group by row group (bounded memory), old files in name order (run ids sort
by time), so the rows, their order and their columns are unchanged. Files are grouped so that
each new file holds whole old files up to ``target_bytes`` of input; each old file maps to
exactly one new file.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.lake.file_stats import FileStats
from pipeline.lake.lease import writer_lease
from pipeline.lake.ledger import Ledger
from pipeline.lake.staging import publish_committed, staged
from pipeline.lake.writer import PARQUET_OPTIONS, ROW_GROUP_ROWS

DEFAULT_TARGET_BYTES = 128 << 20  # the design's 64-256 MB files
DEFAULT_MIN_FILES = 4


@dataclass
class CompactReport:
    lake: str
    partitions_seen: int = 0
    partitions_compacted: int = 0
    files_before: int = 0  # small files merged
    files_after: int = 0  # files written in their place
    bytes_before: int = 0
    bytes_after: int = 0
    rows: int = 0
    by_table: dict = field(default_factory=dict)
    elapsed: float = 0.0

    def to_dict(self) -> dict:
        return {"lake": self.lake, "partitions_seen": self.partitions_seen, "partitions_compacted": self.partitions_compacted,
                "files_merged": self.files_before, "files_written": self.files_after, "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after, "rows": self.rows, "by_table": self.by_table,
                "elapsed_s": round(self.elapsed, 3)}


def _groups(files: list[tuple[str, int]], target: int) -> list[list[tuple[str, int]]]:
    """Consecutive runs of whole files, each up to ``target`` bytes (a file over it stands alone)."""
    out: list[list[tuple[str, int]]] = []
    cur: list[tuple[str, int]] = []
    size = 0
    for f in files:
        if cur and size + f[1] > target:
            out.append(cur)
            cur, size = [], 0
        cur.append(f)
        size += f[1]
    if cur:
        out.append(cur)
    return out


def _merge(store, table: str, olds: list[str], new: str) -> tuple[int, int]:
    """Copy the rows of ``olds`` (in order) into the staged file ``new``; returns (rows, bytes)."""
    target = schema.arrow_schema(table, with_partitions=False)
    rows = 0
    tmp = store.begin(staged(new))
    try:
        stats = FileStats(table)
        with pq.ParquetWriter(tmp, target, **PARQUET_OPTIONS) as w:
            for rel in olds:
                f = pq.ParquetFile(pa.BufferReader(store.get(rel)))
                for batch in f.iter_batches(batch_size=ROW_GROUP_ROWS):
                    t = pa.Table.from_batches([batch])
                    if t.schema != target:  # written before a column was added: same rows, today's columns
                        t = pa.Table.from_arrays([t.column(n) if n in t.schema.names else pa.nulls(len(t), target.field(n).type)
                                                  for n in target.names], schema=target)
                    w.write_table(t, row_group_size=ROW_GROUP_ROWS)
                    stats.add(t)
                    rows += t.num_rows
            w.add_key_value_metadata(stats.metadata())
        size = store.publish(tmp, staged(new))
    finally:
        store.abort(tmp)
    return rows, size


def compact(store, tables: list[str] | None = None, min_files: int = DEFAULT_MIN_FILES,
            target_bytes: int = DEFAULT_TARGET_BYTES, wait: float = 0.0, progress=None) -> CompactReport:
    """Compact every partition holding at least ``min_files`` files under ``target_bytes / 2``."""
    t0 = time.perf_counter()
    report = CompactReport(store.uri)
    with writer_lease(store, "compact", wait=wait) as lease:
        ledger = Ledger.load(store)
        parts: dict[str, list[str]] = defaultdict(list)
        for rel in sorted(ledger.files):
            table = rel.split("/", 1)[0]
            if table in (tables or schema.LOG_TABLES):
                parts[rel.rsplit("/", 1)[0]].append(rel)
        report.partitions_seen = len(parts)
        for n, (folder, files) in enumerate(sorted(parts.items())):
            if progress:  # every partition looked at, compacted or not
                progress(n, len(parts), report)
            table = folder.split("/", 1)[0]
            small = [(f, store.size(f)) for f in files]
            small = [fs for fs in small if fs[1] < target_bytes // 2]
            if len(small) < max(min_files, 2):
                continue
            added, removed, replaced = [], [], {}
            rows = 0
            before, after = sum(s for _, s in small), 0
            for i, group in enumerate(g for g in _groups(small, target_bytes) if len(g) > 1):
                new = f"{folder}/part-{ledger.run_id}-c{i:04d}.parquet"
                r, size = _merge(store, table, [f for f, _ in group], new)
                rows += r
                after += size
                added.append(new)
                for f, _ in group:
                    removed.append(f)
                    replaced[f] = new
            if not added:
                continue
            lease.check()  # a run that lost the lease commits nothing: its files stay staged (and are swept)
            ledger.commit([], added, removed, replaced)
            publish_committed(store, added, removed)
            report.partitions_compacted += 1
            report.files_before += len(removed)
            report.files_after += len(added)
            report.bytes_before += before
            report.bytes_after += after
            report.rows += rows
            t = report.by_table.setdefault(table, {"partitions": 0, "files_merged": 0, "files_written": 0})
            t["partitions"] += 1
            t["files_merged"] += len(removed)
            t["files_written"] += len(added)
        ledger.compact()
    report.elapsed = time.perf_counter() - t0
    return report
