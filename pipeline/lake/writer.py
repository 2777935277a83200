"""Buffer normalised tables and write them as few, large, hive-partitioned zstd Parquet files.

Rows from many objects are buffered per table and written together, one file per partition
per flush (never one file per object). Within a file rows are sorted by ``event_time``, so
row-group statistics let DuckDB, Athena and Spark skip most of a file for a time window.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import schema

ROW_GROUP_ROWS = 128 * 1024
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, use_dictionary=True, write_statistics=True)


@dataclass
class WrittenFile:
    table: str
    path: str
    rows: int
    bytes: int


def partition_path(table: str, event_date, account_id: str, region: str) -> str:
    return f"{table}/event_date={event_date}/account_id={account_id}/region={region}"


class PartitionedWriter:
    def __init__(self, store, run_id: str, threads: int = 2):
        self.store = store
        self.run_id = run_id
        self.threads = threads
        self._buffers: dict[str, list[pa.Table]] = {}
        self.buffered_bytes = 0
        self.buffered_rows = 0
        self._seq = 0

    def add(self, table_name: str, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._buffers.setdefault(table_name, []).append(table)
        self.buffered_bytes += table.nbytes
        self.buffered_rows += table.num_rows

    def flush(self) -> list[WrittenFile]:
        """Write everything buffered; returns the files, all durable when this returns."""
        jobs = []
        for name, tables in self._buffers.items():
            combined = pa.concat_tables(tables)
            jobs.extend(self._split(name, combined))
        self._buffers.clear()
        self.buffered_bytes = self.buffered_rows = 0
        if not jobs:
            return []
        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(lambda job: self._write(*job), jobs))

    def _split(self, name: str, table: pa.Table):
        parts = schema.load(name).partition_by
        table = table.sort_by([(p, "ascending") for p in parts] + [("event_time", "ascending")])
        keys = pc.binary_join_element_wise(*(table.column(p).cast(pa.string()) for p in parts), "\x1f")
        keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
        n = len(keys)
        change = pc.not_equal(keys.slice(1), keys.slice(0, n - 1))
        starts = [0] + [i + 1 for i in pc.indices_nonzero(change).to_pylist()]
        bounds = starts + [n]
        for a, b in zip(bounds, bounds[1:]):
            part = table.slice(a, b - a)
            vals = [part.column(p)[0].as_py() for p in parts]
            self._seq += 1
            rel = f"{partition_path(name, *vals)}/part-{self.run_id}-{self._seq:05d}.parquet"
            yield name, rel, part.drop_columns(parts)

    def _write(self, name: str, rel: str, table: pa.Table) -> WrittenFile:
        with self.store.writing(rel) as tmp:
            pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, **PARQUET_OPTIONS)
            size = os.path.getsize(tmp)
        return WrittenFile(name, rel, table.num_rows, size)
