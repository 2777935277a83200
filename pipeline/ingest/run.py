"""Ingest: list log objects, skip what the ledger holds, normalise and write in parallel, commit.

Pipeline shape: the listing is consumed lazily; one worker process per core reads (local files)
or is handed (S3: a thread pool here fetches, so request latency overlaps) each object,
normalises it and appends its rows to that worker's own open Parquet files (rows never cross
processes). Every ``commit_bytes`` of input,
and at the end, the workers close and stage their files (``_staging/``, invisible to readers),
the main process commits the ledger for exactly the objects whose rows are now durable, and
only then moves the files into place. The whole run holds the lake's writer lease. Memory is bounded by the objects in
flight plus the writers' buffer budget, whatever the archive size.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import layout
from pipeline.ingest.workers import MAX_REJECTS_LISTED, InlinePool, ObjectResult, ProcessPool, ingested_entry
from pipeline.lake.file_stats import FileStats
from pipeline.lake.lease import writer_lease
from pipeline.lake.ledger import INGESTED, QUARANTINED, Ledger, ObjectEntry
from pipeline.lake.staging import publish_committed, settle, staged
from pipeline.lake.writer import PARQUET_OPTIONS
from pipeline.normalize import DEFAULT_MAX_OBJECT_BYTES, TABLES
from pipeline.sources.base import Filters, Lister, walk
from pipeline.tuning import tune_malloc

DEFAULT_BUFFER_BYTES = 256 * 1024 * 1024
DEFAULT_COMMIT_BYTES = 512 * 1024 * 1024  # compressed input (~4 GB of JSON): large files; a crash redoes at most this


@dataclass
class IngestOptions:
    filters: Filters = field(default_factory=Filters)
    workers: int = 0  # 0 = one per core; 1 = normalise in this process
    fetch_threads: int = 0  # 0 = 16 for S3 (hides request latency), 4 for local files (cheap reads)
    buffer_bytes: int = DEFAULT_BUFFER_BYTES  # rows held in memory (all workers) before row groups are written
    commit_bytes: int = DEFAULT_COMMIT_BYTES  # input read between two flush + ledger commits
    retry_quarantined: bool = False
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES  # decompressed bytes of one object; over it: quarantined
    wait: float = 0.0  # seconds to wait for another writer's lease (0 = refuse at once)


#: Rejected records listed in all in a run's report (all are counted).
MAX_REJECTS_REPORTED = 1000


@dataclass
class IngestReport:
    run_id: str
    source: str
    lake: str
    listed: collections.Counter = field(default_factory=collections.Counter)
    skipped: int = 0
    to_ingest: collections.Counter = field(default_factory=collections.Counter)  # new / changed / retry
    ingested_objects: int = 0
    events: collections.Counter = field(default_factory=collections.Counter)
    bytes_read: int = 0
    files_written: int = 0
    parquet_bytes: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unrecognised: list[tuple[str, str]] = field(default_factory=list)
    rejected_records: int = 0  # records left out of ingested objects (dead-lettered), all counted
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # (object, index, reason), the first ones
    orphans_removed: int = 0
    still_quarantined: int = 0  # in the ledger from earlier runs, not retried this run
    elapsed: float = 0.0

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @property
    def ok(self) -> bool:
        return not self.quarantined and not self.failed and not self.rejected_records

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "lake": self.lake,
            "listed": dict(self.listed),
            "skipped_already_ingested": self.skipped,
            "to_ingest": dict(self.to_ingest),
            "ingested_objects": self.ingested_objects,
            "events": dict(self.events),
            "bytes_read": self.bytes_read,
            "files_written": self.files_written,
            "parquet_bytes": self.parquet_bytes,
            "quarantined": [{"object": u, "reason": r} for u, r in self.quarantined],
            "failed": [{"object": u, "reason": r} for u, r in self.failed],
            "unrecognised": [{"key": k, "reason": r} for k, r in self.unrecognised],
            "rejected_records": self.rejected_records,
            "rejected": [{"object": u, "index": i, "reason": r} for u, i, r in self.rejected],
            "orphans_removed": self.orphans_removed,
            "still_quarantined": self.still_quarantined,
            "elapsed_s": round(self.elapsed, 3),
            "events_per_s": round(self.total_events / self.elapsed) if self.elapsed else 0,
            "ok": self.ok,
        }


Progress = Callable[[IngestReport, int], None]  # (report so far, objects finished)


def recover(store, ledger: Ledger) -> int:
    """Finish an interrupted run's commit, remove what it left uncommitted; call under the lease."""
    return settle(store, ledger, sweep=True)


def retract(store, ledger: Ledger, uris: set[str], run_id: str) -> tuple[list[str], list[str], dict[str, str]]:
    """Rewrite the live files holding rows of ``uris`` without those rows (changed objects).

    Returns (files added, files removed, old→new); nothing is live until the caller commits.
    """
    old = [ledger.entry(u) for u in uris]
    affected = sorted({f for e in old if e is not None for f in e.files if f in ledger.files})
    sources = sorted(set(uris) | {e.uri for e in old if e is not None})  # rows name the URI they came from
    added, removed, replaced = [], [], {}
    for n, rel in enumerate(affected):
        table = pq.read_table(pa.BufferReader(store.get(rel)))
        keep = table.filter(pc.invert(pc.is_in(table.column("source_object"), pa.array(sources))))
        removed.append(rel)
        if keep.num_rows:
            new = rel.rsplit("/", 1)[0] + f"/part-{run_id}-r{n:04d}.parquet"
            stats = FileStats(rel.split("/", 1)[0])
            stats.add(keep)  # the footer's stats are the kept rows' (the old file's came back with its schema)
            keep = keep.replace_schema_metadata({**(keep.schema.metadata or {}), **stats.metadata()})
            with store.writing(staged(new)) as tmp:
                pq.write_table(keep, tmp, **PARQUET_OPTIONS)
            added.append(new)
            replaced[rel] = new
    return added, removed, replaced


class _Run:
    """One ingest run's bookkeeping: results in, commits out."""

    def __init__(self, store, ledger: Ledger, report: IngestReport, pool, progress: Progress | None, lease=None):
        self.store, self.ledger, self.report, self.pool, self.progress = store, ledger, report, pool, progress
        self.lease = lease
        self.done: list[ObjectEntry] = []  # finished, rows not yet durable
        self.changed: set[str] = set()
        self.finished = 0
        self.bytes_since_commit = 0

    def take(self, results: list[ObjectResult]) -> None:
        r = self.report
        for res in results:
            self.finished += 1
            o = res.obj
            if res.failed is not None:
                r.failed.append((res.uri, res.failed))
            elif res.error is not None:
                r.quarantined.append((res.uri, res.error))
                self.done.append(ObjectEntry(res.uri, res.object_etag, o.size, o.kind, QUARANTINED, reason=res.error,
                                             stat=o.stat))
            else:
                r.ingested_objects += 1
                r.bytes_read += res.size
                r.events[TABLES[o.kind]] += res.rows
                self.bytes_since_commit += res.size
                if res.rejected:
                    r.rejected_records += len(res.rejected)
                    room = MAX_REJECTS_REPORTED - len(r.rejected)
                    r.rejected += [(res.uri, x.index, x.reason) for x in res.rejected[:max(room, 0)]]
                self.done.append(ingested_entry(res))
            if self.progress:
                self.progress(r, self.finished)

    def commit(self) -> None:
        """Flush every worker (files staged), record exactly what is now durable, then publish it."""
        files, late = self.pool.flush()
        self.take(late)
        added, removed, replaced = [f.path for f in files], [], {}
        retracting = {e.uri for e in self.done if e.uri in self.changed}
        if retracting:
            r_added, removed, replaced = retract(self.store, self.ledger, retracting, self.ledger.run_id)
            added += r_added
            self.changed -= retracting
        self.report.files_written += len(files)
        self.report.parquet_bytes += sum(f.bytes for f in files)
        assign_files(self.done, files)
        if self.lease is not None:
            self.lease.check()  # a run that lost the lease commits nothing: its files stay staged
        self.ledger.commit(self.done, added, removed, replaced)
        publish_committed(self.store, added, removed)  # a crash in here is finished by the next writer
        self.done = []
        self.bytes_since_commit = 0


def ingest(source: Lister, store, options: IngestOptions | None = None, progress: Progress | None = None) -> IngestReport:
    """Ingest what the lake does not hold yet, holding the lake's writer lease for the whole run."""
    opts = options or IngestOptions()
    t0 = time.perf_counter()
    with writer_lease(store, "ingest", wait=opts.wait) as lease:
        return _ingest(source, store, opts, progress, lease, t0)


def _ingest(source: Lister, store, opts: IngestOptions, progress: Progress | None, lease, t0: float) -> IngestReport:
    ledger = Ledger.load(store)
    report = IngestReport(ledger.run_id, source.uri, store.uri)
    report.orphans_removed = lease.settled + recover(store, ledger)
    lease.settled = 0
    if hasattr(source, "remember"):
        # Local files unchanged since the ledger saw them are not hashed again; new ones are hashed by their reader.
        source.remember(ledger.known, ledger.holds)
    ingested_at = dt.datetime.now(dt.UTC)
    tune_malloc()  # before the workers fork, so they inherit it
    workers = opts.workers or os.cpu_count() or 1
    # Local files: the worker that normalises an object reads it (no bytes cross a pipe, the main
    # process stays nearly idle). S3: fetch threads here hide the request latency.
    in_workers = getattr(source, "read_in_workers", False)
    if workers == 1:
        pool = InlinePool(store, ledger.run_id, opts.buffer_bytes, opts.max_object_bytes, source=source)
    else:
        pool = ProcessPool(workers, store.uri, ledger.run_id, opts.buffer_bytes, max_object_bytes=opts.max_object_bytes,
                           source=source if in_workers else None)
    run = _Run(store, ledger, report, pool, progress, lease)
    fetch_threads = opts.fetch_threads or (16 if source.uri.startswith("s3://") else 4)
    io = ThreadPoolExecutor(fetch_threads, thread_name_prefix="fetch")
    fetching: collections.deque = collections.deque()

    def hand_over(obj, uri, data=None) -> None:
        pool.submit(obj, uri, ingested_at, data)
        run.take(pool.results())
        if run.bytes_since_commit >= opts.commit_bytes:
            run.commit()

    def hand_over_fetched() -> None:
        obj, uri, fut = fetching.popleft()
        try:
            data = fut.result()
        except Exception as e:  # could not read: not the object's fault, retried by the next run
            report.failed.append((uri, f"could not read: {e}"))
            return
        hand_over(obj, uri, data)

    try:
        for obj in _wanted(source, ledger, opts, report, run.changed):
            uri = source.object_uri(obj.key)
            if obj.size > opts.max_object_bytes * 17 // 16:  # gzip output is never much smaller: do not even read it
                run.take([ObjectResult(obj, uri, 0, error=f"object is {obj.size:,} bytes compressed, over the per-object "
                                       f"cap of {opts.max_object_bytes:,} decompressed bytes; raise it with --max-object-mb")])
                continue
            if in_workers:
                hand_over(obj, uri)
                continue
            if len(fetching) >= fetch_threads * 2:
                hand_over_fetched()
            fetching.append((obj, uri, io.submit(source.read, obj.key)))
        while fetching:
            hand_over_fetched()
        while pool.outstanding:
            run.take(pool.results(block=True))
        run.commit()
        ledger.compact()
        report.still_quarantined = len(ledger.quarantined()) - len(report.quarantined)
    finally:
        io.shutdown(wait=True, cancel_futures=True)
        pool.close()
    report.elapsed = time.perf_counter() - t0
    return report


def _wanted(source: Lister, ledger: Ledger, opts: IngestOptions, report: IngestReport, changed: set[str]) -> Iterable[layout.LogObject]:
    """Objects of event kinds the ledger does not hold yet (lazily, as the listing goes)."""
    for item in walk(source, opts.filters):
        if isinstance(item, layout.Unrecognised):
            report.listed["unrecognised"] += 1
            report.unrecognised.append((source.object_uri(item.key), item.reason))
            continue
        report.listed[item.kind] += 1
        if item.kind not in layout.INGESTED_KINDS:
            continue  # insights: recognised and counted, not ingested yet
        uri = source.object_uri(item.key)
        why = ledger.status(uri, item.etag, opts.retry_quarantined)
        if why is None:
            report.skipped += 1
            continue
        if why == "changed" and ledger.entry(uri).status == INGESTED:
            changed.add(uri)
        report.to_ingest[why] += 1
        yield item


def assign_files(entries: list[ObjectEntry], files) -> None:
    """Turn each entry's partition folders into the files written there in this flush."""
    by_dir = collections.defaultdict(list)
    for f in files:
        by_dir[f.path.rsplit("/", 1)[0]].append(f.path)
    for e in entries:
        if e.status == INGESTED:
            e.files = [p for d in e.files for p in by_dir.get(d, ())]


__all__ = ["MAX_REJECTS_LISTED", "IngestOptions", "IngestReport", "assign_files", "ingest", "recover", "retract"]
