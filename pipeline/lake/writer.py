"""Write normalised rows as few, large, hive-partitioned zstd Parquet files, in bounded memory.

Each partition (table, event_date, account_id, region) has at most one open file per writer.
Rows are buffered per partition and appended to that file as a row group once the partition has
``row_group_rows`` rows, or earlier (largest buffers first) when all buffers together pass the
memory budget. :meth:`flush` closes every open file and publishes it atomically under
``_staging/`` (see :mod:`pipeline.lake.staging`): durable, but invisible to readers until the
ledger commit that names it moves it into place.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.lake.file_stats import FileStats
from pipeline.lake.staging import staged

ROW_GROUP_ROWS = 128 * 1024
PUBLISH_THREADS = 8  # files staged at once at a flush (fsyncs or S3 uploads in flight)
#: Min/max statistics only where readers filter (time, actor, API, error, ids): computing them
#: for every column cost a fifth of the write time.
STATISTICS_COLUMNS = [
    "event_time", "eventName", "eventSource", "errorCode", "actor", "sourceIPAddress", "eventID", "source_object",
    "userIdentity.type", "userIdentity.arn", "userIdentity.accessKeyId", "userIdentity.accountId",
    "id", "type", "severity", "access_key_id", "instance_id", "updatedAt",
]
#: Unique per row: dictionary-encoding them only costs time (Parquet falls back to plain anyway).
HIGH_CARDINALITY = {"eventID", "requestID", "sharedEventID", "eventTime", "id", "arn", "createdAt", "updatedAt"}


def _dictionary_columns() -> list[str]:
    """Leaf paths of the string columns worth a dictionary: names, ARNs, regions, user agents…"""
    paths = []

    def walk(prefix: str, typ: pa.DataType, name: str) -> None:
        if pa.types.is_struct(typ):
            for f in typ:
                walk(f"{prefix}{name}.", f.type, f.name)
        elif pa.types.is_list(typ):
            walk(f"{prefix}{name}.list.", typ.value_type, "element")
        elif (pa.types.is_string(typ) or isinstance(typ, pa.JsonType)) and name not in HIGH_CARDINALITY:
            paths.append(prefix + name)

    for table in schema.LOG_TABLES:
        for f in schema.arrow_schema(table, with_partitions=False):
            walk("", f.type, f.name)
    return sorted(set(paths))


PARQUET_OPTIONS = dict(compression="zstd", compression_level=1, use_dictionary=_dictionary_columns(),
                       write_statistics=STATISTICS_COLUMNS)
PARTITION_COLUMNS = ("event_date", "account_id", "region")


@dataclass
class WrittenFile:
    table: str
    path: str
    rows: int
    bytes: int


def partition_path(table: str, event_date, account_id: str, region: str) -> str:
    return f"{table}/event_date={event_date}/account_id={account_id}/region={region}"


def split_partitions(table_name: str, table: pa.Table) -> list[tuple[str, pa.Table]]:
    """(partition folder, rows) pairs; an object's rows are nearly always one partition."""
    if table.num_rows == 0:
        return []
    if all(pc.count_distinct(table.column(c), mode="all").as_py() == 1 for c in PARTITION_COLUMNS):
        return [(partition_path(table_name, *(table.column(c)[0].as_py() for c in PARTITION_COLUMNS)), table)]
    table = table.sort_by([(c, "ascending") for c in PARTITION_COLUMNS])
    keys = pc.binary_join_element_wise(*(table.column(c).cast(pa.string()) for c in PARTITION_COLUMNS), "\x1f")
    keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    n = len(keys)
    change = pc.not_equal(keys.slice(1), keys.slice(0, n - 1))
    bounds = [0] + [i + 1 for i in pc.indices_nonzero(change).to_pylist()] + [n]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        part = table.slice(a, b - a)
        out.append((partition_path(table_name, *(part.column(c)[0].as_py() for c in PARTITION_COLUMNS)), part))
    return out


@dataclass
class _Partition:
    table: str
    rel: str
    pending: list[pa.Table] = field(default_factory=list)
    pending_rows: int = 0
    pending_bytes: int = 0
    tmp: str | None = None
    writer: pq.ParquetWriter | None = None
    final: str = ""
    rows_written: int = 0
    stats: FileStats | None = None  # the footer's soclake.stats (pipeline/lake/file_stats.py)


class StreamingPartitionWriter:
    def __init__(self, store, file_prefix: str, budget_bytes: int = 256 << 20, row_group_rows: int = ROW_GROUP_ROWS):
        self.store = store
        self.file_prefix = file_prefix  # unique per run and writer, e.g. "part-<run>-w0"
        self.budget = budget_bytes
        self.row_group_rows = row_group_rows
        self._parts: dict[str, _Partition] = {}
        self._seq = 0
        self.buffered_bytes = 0

    def add(self, table_name: str, table: pa.Table) -> list[str]:
        """Buffer an object's rows; returns the partition folders they went to."""
        dirs = []
        for rel, rows in split_partitions(table_name, table):
            dirs.append(rel)
            p = self._parts.get(rel)
            if p is None:
                p = self._parts[rel] = _Partition(table_name, rel)
            rows = rows.drop_columns(list(PARTITION_COLUMNS))
            size = rows.get_total_buffer_size()  # 5x cheaper than nbytes; counts a shared buffer per slice
            p.pending.append(rows)
            p.pending_rows += rows.num_rows
            p.pending_bytes += size
            self.buffered_bytes += size
            if p.pending_rows >= self.row_group_rows:
                self._write_pending(p)
        if self.buffered_bytes > self.budget:
            for p in sorted(self._parts.values(), key=lambda p: -p.pending_bytes):
                if self.buffered_bytes <= self.budget // 2:
                    break
                self._write_pending(p)
        return dirs

    def _write_pending(self, p: _Partition) -> None:
        if not p.pending:
            return
        # Rows stay in delivery order, which is nearly time order (objects are listed by key time
        # and records within an object are close in time), so row-group min/max statistics on
        # event_time stay narrow without paying for a sort (a full `take` costs as much as writing).
        rows = pa.concat_tables(p.pending)
        if p.writer is None:
            self._seq += 1
            p.tmp = self.store.begin(staged(f"{p.rel}/{self.file_prefix}-{self._seq:05d}.parquet"))
            p.writer = pq.ParquetWriter(p.tmp, schema.arrow_schema(p.table, with_partitions=False), **PARQUET_OPTIONS)
            p.final = f"{p.rel}/{self.file_prefix}-{self._seq:05d}.parquet"
            p.stats = FileStats(p.table)
        p.writer.write_table(rows, row_group_size=self.row_group_rows)
        p.stats.add(rows)
        p.rows_written += rows.num_rows
        self.buffered_bytes -= p.pending_bytes
        p.pending, p.pending_rows, p.pending_bytes = [], 0, 0

    def flush(self) -> list[WrittenFile]:
        """Write what is buffered, close and stage every open file (paths are the final ones). Durable on return.

        Files are published a few at a time: each waits on the disk (fsync) or on S3 (an upload),
        not on this process, so a worker's dozens of files take the time of a few.
        """
        closed = []
        for p in self._parts.values():
            self._write_pending(p)
            if p.writer is not None:
                p.writer.add_key_value_metadata(p.stats.metadata())
                p.writer.close()
                closed.append(p)
        with ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="publish") as pool:
            sizes = list(pool.map(lambda p: self.store.publish(p.tmp, staged(p.final)), closed))
        self._parts.clear()
        self.buffered_bytes = 0
        return [WrittenFile(p.table, p.final, p.rows_written, size) for p, size in zip(closed, sizes)]

    def abort(self) -> None:
        """Drop open files (nothing of them was published)."""
        for p in self._parts.values():
            if p.writer is not None:
                try:
                    p.writer.close()
                finally:
                    self.store.abort(p.tmp)
        self._parts.clear()
