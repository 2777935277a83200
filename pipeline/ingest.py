"""Ingest: list log objects, skip what the ledger holds, normalise in parallel, write, commit.

Pipeline shape: the listing is consumed lazily; a thread pool fetches objects (S3 latency
overlaps), a process pool normalises them (all cores), the main process buffers the Arrow
tables and flushes them as partitioned Parquet when the buffer reaches its budget, then commits
the ledger for exactly the objects whose rows are now durable. Memory is bounded by the number
of objects in flight plus the buffer budget, whatever the archive size.
"""

from __future__ import annotations

import collections
import datetime as dt
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import layout
from pipeline.errors import ObjectError
from pipeline.lake.ledger import INGESTED, QUARANTINED, Ledger, ObjectEntry
from pipeline.lake.store import TMP_SUFFIX
from pipeline.lake.writer import PARQUET_OPTIONS, PartitionedWriter, partition_path
from pipeline.normalize import TABLES, normalize
from pipeline.sources.base import Filters, Lister, walk

DEFAULT_BUFFER_BYTES = 256 * 1024 * 1024


@dataclass
class IngestOptions:
    filters: Filters = field(default_factory=Filters)
    workers: int = 0  # 0 = one per core; 1 = normalise in this process
    fetch_threads: int = 16
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    retry_quarantined: bool = False


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
    orphans_removed: int = 0
    still_quarantined: int = 0  # in the ledger from earlier runs, not retried this run
    elapsed: float = 0.0

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @property
    def ok(self) -> bool:
        return not self.quarantined and not self.failed

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
            "orphans_removed": self.orphans_removed,
            "still_quarantined": self.still_quarantined,
            "elapsed_s": round(self.elapsed, 3),
            "events_per_s": round(self.total_events / self.elapsed) if self.elapsed else 0,
            "ok": self.ok,
        }


Progress = Callable[[IngestReport, int], None]  # (report so far, objects finished)


def _task(data: bytes, obj: layout.LogObject, uri: str, ingested_at: dt.datetime):
    """Runs in a worker process: normalise one object, never raise (bad input is a result)."""
    try:
        return normalize(data, obj, uri, ingested_at), None
    except ObjectError as e:
        return None, str(e)
    except Exception as e:  # a bug must not stop the run: quarantine, name it, keep going
        return None, f"{type(e).__name__}: {e} (unexpected: please report this object to soclake)"


class _InProcess:
    """Executor stand-in for workers=1: simpler tracebacks, no process start-up."""

    def submit(self, fn, *args) -> Future:
        f: Future = Future()
        f.set_result(fn(*args))
        return f

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def _process_pool(workers: int):
    if workers == 1:
        return _InProcess()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pipeline.normalize"])
    return ProcessPoolExecutor(workers, mp_context=ctx)


def recover(store, ledger: Ledger) -> int:
    """Remove data files no commit names (left by an interrupted run) and stale temp files."""
    removed = 0
    for table in set(TABLES.values()):
        for rel in store.list(table + "/"):
            if rel.endswith(TMP_SUFFIX) or (rel.endswith(".parquet") and rel not in ledger.files):
                store.delete(rel)
                removed += 1
    return removed


def _read_parquet(store, rel: str) -> pa.Table:
    return pq.read_table(pa.BufferReader(store.get(rel)))


def retract(store, ledger: Ledger, uris: set[str], run_id: str) -> tuple[list[str], list[str], dict[str, str]]:
    """Rewrite the live files holding rows of ``uris`` without those rows (changed objects).

    Returns (files added, files removed, old→new); nothing is live until the caller commits.
    """
    affected = sorted({f for u in uris for f in ledger.objects[u].files if f in ledger.files})
    added, removed, replaced = [], [], {}
    for n, rel in enumerate(affected):
        table = _read_parquet(store, rel)
        keep = table.filter(pa.compute.invert(pa.compute.is_in(table.column("source_object"), pa.array(sorted(uris)))))
        removed.append(rel)
        if keep.num_rows:
            new = rel.rsplit("/", 1)[0] + f"/part-{run_id}-r{n:04d}.parquet"
            with store.writing(new) as tmp:
                pq.write_table(keep, tmp, **PARQUET_OPTIONS)
            added.append(new)
            replaced[rel] = new
    return added, removed, replaced


def ingest(source: Lister, store, options: IngestOptions | None = None, progress: Progress | None = None) -> IngestReport:
    opts = options or IngestOptions()
    t0 = time.perf_counter()
    ledger = Ledger.load(store)
    report = IngestReport(ledger.run_id, source.uri, store.uri)
    report.orphans_removed = recover(store, ledger)
    ingested_at = dt.datetime.now(dt.UTC)
    writer = PartitionedWriter(store, ledger.run_id)
    done: list[ObjectEntry] = []  # rows buffered, not yet durable
    changed: set[str] = set()
    finished = 0

    def commit() -> None:
        files = writer.flush()
        added, removed, replaced = [f.path for f in files], [], {}
        retracting = {e.uri for e in done if e.uri in changed}
        if retracting:
            r_added, removed, replaced = retract(store, ledger, retracting, ledger.run_id)
            added += r_added
            changed.difference_update(retracting)
        for f in files:
            report.files_written += 1
            report.parquet_bytes += f.bytes
        _assign_files(done, files)
        ledger.commit(done, added, removed, replaced)
        for rel in removed:  # no longer live; a crash before this is cleaned up by recover()
            store.delete(rel)
        done.clear()

    def finish(obj: layout.LogObject, uri: str, result, err: str | None, size: int) -> None:
        nonlocal finished
        finished += 1
        if err is not None:
            report.quarantined.append((uri, err))
            done.append(ObjectEntry(uri, obj.etag, obj.size, obj.kind, QUARANTINED, reason=err))
        else:
            table = result
            report.ingested_objects += 1
            report.bytes_read += size
            report.events[TABLES[obj.kind]] += table.num_rows
            writer.add(TABLES[obj.kind], table)
            entry = ObjectEntry(uri, obj.etag, obj.size, obj.kind, INGESTED, rows=table.num_rows)
            entry.files = _partition_dirs(TABLES[obj.kind], table)  # becomes file paths at commit
            done.append(entry)
        if progress:
            progress(report, finished)
        if writer.buffered_bytes >= opts.buffer_bytes:
            commit()

    workers = opts.workers or os.cpu_count() or 1
    cpu = _process_pool(workers)
    io = ThreadPoolExecutor(opts.fetch_threads, thread_name_prefix="fetch")
    inflight: collections.deque = collections.deque()
    max_inflight = workers * 4 + opts.fetch_threads

    def fetch(obj: layout.LogObject, uri: str):
        data = source.read(obj.key)
        return cpu.submit(_task, data, obj, uri, ingested_at), len(data)

    def drain_one() -> None:
        obj, uri, fut = inflight.popleft()
        try:
            cpu_fut, size = fut.result()
        except Exception as e:  # could not read: not the object's fault, retried by the next run
            report.failed.append((uri, f"could not read: {e}"))
            return
        result, err = cpu_fut.result()
        finish(obj, uri, result, err, size)

    try:
        for obj in _wanted(source, ledger, opts, report, changed):
            uri = source.object_uri(obj.key)
            while len(inflight) >= max_inflight:
                drain_one()
            inflight.append((obj, uri, io.submit(fetch, obj, uri)))
        while inflight:
            drain_one()
        commit()
        ledger.compact()
        report.still_quarantined = len(ledger.quarantined()) - len(report.quarantined)
    finally:
        io.shutdown(wait=True, cancel_futures=True)
        cpu.shutdown(wait=True, cancel_futures=True)
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
        if item.kind not in layout.EVENT_KINDS:
            continue  # digests and insights: recognised and counted, not events
        uri = source.object_uri(item.key)
        why = ledger.status(uri, item.etag, opts.retry_quarantined)
        if why is None:
            report.skipped += 1
            continue
        if why == "changed" and ledger.objects[uri].status == INGESTED:
            changed.add(uri)
        report.to_ingest[why] += 1
        yield item


def _partition_dirs(table_name: str, table: pa.Table) -> list[str]:
    """The partition folders an object's rows go to (usually one; two around midnight)."""
    if table.num_rows == 0:
        return []
    combos = table.select(["event_date", "account_id", "region"]).group_by(["event_date", "account_id", "region"]).aggregate([])
    return [partition_path(table_name, *row.values()) for row in combos.to_pylist()]


def _assign_files(entries: list[ObjectEntry], files) -> None:
    """Turn each entry's partition folders into the files written there in this flush."""
    by_dir = collections.defaultdict(list)
    for f in files:
        by_dir[f.path.rsplit("/", 1)[0]].append(f.path)
    for e in entries:
        if e.status == INGESTED:
            e.files = [p for d in e.files for p in by_dir.get(d, ())]


__all__ = ["IngestOptions", "IngestReport", "ingest", "recover", "retract"]
