"""Normalise-and-write workers: one per core, each with its own partition writer.

Rows never travel between processes: a worker reads a local object itself (only its key crosses
the pipe; S3 objects arrive as the bytes the main process fetched), computes the MD5 ETag the
listing left to it (new local files: hashed from the bytes it read anyway), normalises the
object and appends its rows to its own open Parquet files; the main process only hears "object X: N rows into partitions P" (or
why it was quarantined) and, when it asks for a flush, the list of files that are now durable.
``workers=1`` runs the very same :class:`ObjectProcessor` in-process.

Workers die with the process that started them: the kernel kills them when it exits (Linux
``PR_SET_PDEATHSIG``), and a worker that finds itself re-parented exits on its own, so a killed
ingest never leaves normalisers blocked on their pipes.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import gc
import hashlib
import multiprocessing
import os
import queue
import signal
import sys
import traceback
from dataclasses import dataclass, field

from pipeline import layout
from pipeline.errors import LakeError, ObjectError
from pipeline.lake.ledger import INGESTED, ObjectEntry
from pipeline.lake.writer import StreamingPartitionWriter, WrittenFile, split_partitions
from pipeline.normalize import (
    DEFAULT_MAX_OBJECT_BYTES,
    TABLES,
    Decoded,
    Rejected,
    build_decoded,
    decode_object,
    finish_decoded,
)


@dataclass
class ObjectResult:
    obj: layout.LogObject
    uri: str
    size: int  # bytes read (as stored, compressed)
    rows: int = 0
    partitions: tuple[str, ...] = ()
    error: str | None = None
    rejected: list[Rejected] = field(default_factory=list)  # records left out, with reasons
    sha256: str | None = None  # of the uncompressed content (CloudTrail log and digest files)
    etag: str = ""  # MD5 of the bytes read, when the listing left the ETag to the reader (new local files)
    failed: str | None = None  # could not be read: not the object's fault, no ledger entry, retried next run

    @property
    def object_etag(self) -> str:
        """The ETag the ledger records: the listing's, else the one computed from the bytes read."""
        return self.obj.etag or self.etag


#: Rejected records listed per object in the ledger (all are counted).
MAX_REJECTS_LISTED = 100


def ingested_entry(res: ObjectResult) -> ObjectEntry:
    """The ledger entry of an ingested object; ``files`` holds its partition folders until a flush names the files."""
    o = res.obj
    entry = ObjectEntry(res.uri, res.object_etag, o.size, o.kind, INGESTED, rows=res.rows, files=list(res.partitions),
                        stat=o.stat, sha256=res.sha256)
    entry.reject_records(res.rejected, MAX_REJECTS_LISTED)
    return entry


#: CloudTrail events whose rows are built and written together: the column build's and the
#: writer's fixed costs (a few hundred Arrow calls) are paid once per batch, not once per object.
#: Larger batches save a few more instructions but no time: their records and text no longer
#: fit in a core's cache (docs/performance.md).
BATCH_ROWS = 1024
_UNEXPECTED = "{}: {} (unexpected: please report this object to soclake)"


class ObjectProcessor:
    """Normalise objects and append their rows to this worker's partition files.

    CloudTrail objects are decoded one by one and their rows built in batches of about
    ``batch_rows`` events, so :meth:`process` returns the objects it finished: none, this one,
    or a whole batch. :meth:`finish` builds what is pending; call it before :meth:`flush`.
    """

    def __init__(self, store, file_prefix: str, budget_bytes: int, max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
                 batch_rows: int = BATCH_ROWS):
        self.writer = StreamingPartitionWriter(store, file_prefix, budget_bytes)
        self.max_object_bytes = max_object_bytes
        self.batch_rows = batch_rows
        self._batch: list[tuple[ObjectResult, Decoded]] = []
        self._batch_rows = 0
        self._batch_at: dt.datetime | None = None

    @property
    def pending(self) -> int:
        """Objects decoded whose rows are not built yet."""
        return len(self._batch)

    def read_and_process(self, source, obj: layout.LogObject, uri: str, ingested_at: dt.datetime) -> list[ObjectResult]:
        """Read the object from ``source`` here (no bytes travel between processes), then :meth:`process` it."""
        try:
            data = source.read(obj.key)
        except Exception as e:  # could not read: not the object's fault, retried by the next run
            return [ObjectResult(obj, uri, 0, failed=f"could not read: {e}")]
        return self.process(data, obj, uri, ingested_at)

    def process(self, data: bytes, obj: layout.LogObject, uri: str, ingested_at: dt.datetime) -> list[ObjectResult]:
        """Normalise one object; returns the objects this call finished (results of batched ones come later)."""
        res = ObjectResult(obj, uri, len(data))
        if not obj.etag:  # the listing left it to the reader: S3's ETag of a single PUT is the MD5 of the bytes
            res.etag = hashlib.md5(data).hexdigest()
        try:
            out = decode_object(data, obj, uri, ingested_at, self.max_object_bytes)
        except ObjectError as e:
            res.error = str(e)
            return [res]
        except Exception as e:  # a bug must not stop the run: quarantine, name it, keep going
            res.error = _UNEXPECTED.format(type(e).__name__, e)
            return [res]
        if not isinstance(out, Decoded):
            self._write(res, out)
            return [res]
        done = self.finish() if self._batch and ingested_at != self._batch_at else []
        self._batch.append((res, out))
        self._batch_rows += out.rows
        self._batch_at = ingested_at
        if self._batch_rows >= self.batch_rows:
            done += self.finish()
        return done

    def _write(self, res: ObjectResult, out) -> None:
        res.rejected = out.rejected
        res.sha256 = out.sha256
        res.rows = out.table.num_rows
        res.partitions = tuple(self.writer.add(TABLES[res.obj.kind], out.table))

    def finish(self) -> list[ObjectResult]:
        """Build and write the pending batch's rows; the results of its objects."""
        batch, self._batch, self._batch_rows = self._batch, [], 0
        if not batch:
            return []
        try:
            table, outs = build_decoded([d for _, d in batch], self._batch_at)
        except Exception:  # a mistyped nested value (the slow path) or a bug: each object on its own
            for res, d in batch:
                try:
                    self._write(res, finish_decoded(d, self._batch_at))
                except ObjectError as e:
                    res.error = str(e)
                except Exception as e:
                    res.error = _UNEXPECTED.format(type(e).__name__, e)
            return [res for res, _ in batch]
        name = TABLES[layout.CLOUDTRAIL]
        dirs = self.writer.add(name, table)
        at = 0
        for (res, _), out in zip(batch, outs):
            res.rejected, res.sha256, res.rows = out.rejected, out.sha256, out.rows
            if out.rows and len(dirs) == 1:
                res.partitions = tuple(dirs)
            elif out.rows:  # the batch spans partitions: this object's own
                res.partitions = tuple(rel for rel, _ in split_partitions(name, table.slice(at, out.rows)))
            at += out.rows
        return [res for res, _ in batch]

    def flush(self) -> list[WrittenFile]:
        if self._batch:
            raise RuntimeError("finish() the pending batch before flush()")
        return self.writer.flush()

    def abort(self) -> None:
        self._batch, self._batch_rows = [], 0
        self.writer.abort()


class InlinePool:
    """workers=1: process in the calling thread; same interface as :class:`ProcessPool`."""

    def __init__(self, store, run_id: str, budget_bytes: int, max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
                 source=None):
        self.proc = ObjectProcessor(store, f"part-{run_id}-w0", budget_bytes, max_object_bytes)
        self.source = source
        self._done: list[ObjectResult] = []
        self.outstanding = 0

    def submit(self, obj, uri, ingested_at, data=None) -> None:
        """Process one object; ``data=None``: read it from the pool's source first."""
        if data is None:
            self._done += self.proc.read_and_process(self.source, obj, uri, ingested_at)
        else:
            self._done += self.proc.process(data, obj, uri, ingested_at)

    def results(self, block: bool = False) -> list[ObjectResult]:
        if block:
            self._done += self.proc.finish()
        out, self._done = self._done, []
        return out

    def flush(self) -> tuple[list[WrittenFile], list[ObjectResult]]:
        self._done += self.proc.finish()
        return self.proc.flush(), self.results()

    def close(self) -> None:
        self.proc.abort()


#: Objects per task message, or fewer once their bytes (S3 objects fetched here) reach CHUNK_BYTES.
#: Per object, a message cost ~100 us of pickling, locking and waking across three processes.
CHUNK_OBJECTS = 8
CHUNK_BYTES = 8 << 20

PR_SET_PDEATHSIG = 1
PARENT_CHECK_S = 1.0


def die_with_parent(parent_pid: int) -> bool:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux); False elsewhere.

    The kernel ties this to the parent *thread* that forked us: the pool is created and closed
    by the same thread (the one running ingest), which outlives its workers. Also exits at once
    if the parent is already gone (it died between fork and here).
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)  # the symbols already loaded, libc among them (no ldconfig run)
            armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:
        os._exit(1)
    return armed


def _next_task(tasks, parent_pid: int):
    """The next message; exits when the parent is gone (the fallback where PDEATHSIG is not available)."""
    while True:
        try:
            return tasks.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if os.getppid() != parent_pid:
                os._exit(1)


def _worker_main(idx, tasks, results, lake_uri, aws_settings, run_id, budget_bytes, parent_pid,
                 max_object_bytes=DEFAULT_MAX_OBJECT_BYTES, source=None) -> None:
    from pipeline import aws
    from pipeline.lake.store import open_store

    die_with_parent(parent_pid)
    aws.configure(aws_settings)
    # Nothing a worker keeps has reference cycles worth collecting mid-run; the collector's
    # passes over the fresh objects of every file only cost time. Collect at each flush instead.
    gc.freeze()
    gc.disable()
    proc = ObjectProcessor(open_store(lake_uri), f"part-{run_id}-w{idx}", budget_bytes, max_object_bytes)

    def send(done):
        if done:
            results.put(("results", idx, done))

    while True:
        try:
            msg = tasks.get_nowait() if proc.pending else _next_task(tasks, parent_pid)
        except queue.Empty:
            msg = ("finish",)  # nothing waiting: build the batch now rather than hold its results back
        try:
            if msg[0] == "finish":
                send(proc.finish())
            elif msg[0] == "objects":
                _, chunk, ingested_at = msg
                done = []
                for obj, uri, data in chunk:
                    done += (proc.read_and_process(source, obj, uri, ingested_at) if data is None
                             else proc.process(data, obj, uri, ingested_at))
                send(done)
            elif msg[0] == "flush":
                send(proc.finish())
                results.put(("flushed", idx, proc.flush()))
                gc.collect()
            else:
                proc.abort()
                return
        except Exception as e:  # the writer failed (disk full, S3 down): tell the main process
            results.put(("error", idx, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


class ProcessPool:
    def __init__(self, workers: int, lake_uri: str, run_id: str, budget_bytes: int, queue_depth: int = 6,
                 max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES, source=None):
        from pipeline import aws

        # fork: instant start with everything imported, and no re-import of the caller's main
        # module (forkserver/spawn would re-run an unguarded script). Created before the fetch
        # threads start; the progress display runs no thread of its own.
        ctx = multiprocessing.get_context("fork")
        self._results = ctx.Queue()
        self._tasks = [ctx.Queue(queue_depth) for _ in range(workers)]
        self._load = [0] * workers
        self.outstanding = 0  # objects submitted whose results have not come back (gathered ones included)
        self._chunk: list[tuple] = []  # (obj, uri, data or None) gathered for the next message
        self._chunk_at = None
        self._chunk_bytes = 0
        self._procs = [
            ctx.Process(target=_worker_main, name=f"soclake-worker-{i}", daemon=True,
                        args=(i, self._tasks[i], self._results, lake_uri, aws._settings, run_id, budget_bytes // workers,
                              os.getpid(), max_object_bytes, source))
            for i in range(workers)
        ]
        for p in self._procs:
            p.start()

    def submit(self, obj: layout.LogObject, uri: str, ingested_at, data=None) -> None:
        """Hand one object to a worker: its bytes, or (``data=None``) the worker reads it from the pool's source.

        Objects travel in chunks (:data:`CHUNK_OBJECTS`, or :data:`CHUNK_BYTES` of data): one
        message, one pickle and one wake-up per chunk rather than per object. A partial chunk
        leaves when the caller waits for results or flushes.
        """
        if self._chunk and ingested_at != self._chunk_at:
            self._send()
        self._chunk.append((obj, uri, data))
        self._chunk_at = ingested_at
        self._chunk_bytes += len(data) if data is not None else 0
        self.outstanding += 1
        if len(self._chunk) >= CHUNK_OBJECTS or self._chunk_bytes >= CHUNK_BYTES:
            self._send()

    def _send(self) -> None:
        """Send the chunk being gathered to the least-loaded worker."""
        if not self._chunk:
            return
        chunk, self._chunk, self._chunk_bytes = self._chunk, [], 0
        # Least-loaded worker; among equals the one this account/region/day hashes to, so a
        # partition's rows tend to land in one file.
        first = chunk[0][0]
        n = len(self._procs)
        home = hash((first.account, first.region, first.date)) % n
        idx = min(range(n), key=lambda i: (self._load[i], i != home))
        while True:
            try:
                self._tasks[idx].put(("objects", chunk, self._chunk_at), timeout=1)
                break
            except queue.Full:
                self._check_alive()
        self._load[idx] += len(chunk)

    def _get(self, block: bool):
        while True:
            try:
                return self._results.get(timeout=1 if block else 0.0001) if block else self._results.get_nowait()
            except queue.Empty:
                if not block:
                    return None
                self._check_alive()

    def _check_alive(self) -> None:
        for p in self._procs:
            if not p.is_alive():
                raise LakeError(f"worker process {p.name} died (exit code {p.exitcode}); nothing uncommitted is kept, rerun to continue")

    def _handle(self, msg):
        kind, idx, payload = msg
        if kind == "error":
            raise LakeError(f"worker {idx} failed writing the lake: {payload}")
        if kind == "results":
            self._load[idx] -= len(payload)
            self.outstanding -= len(payload)
        return kind, idx, payload

    def results(self, block: bool = False) -> list[ObjectResult]:
        """Finished objects; with ``block`` send the partial chunk and wait for at least one (if any are outstanding)."""
        if block:
            self._send()
        out = []
        msg = self._get(block and self.outstanding > 0)
        while msg is not None:
            kind, _, payload = self._handle(msg)
            if kind == "results":
                out += payload
            msg = self._get(False)
        return out

    def flush(self) -> tuple[list[WrittenFile], list[ObjectResult]]:
        """Every worker finishes its queue, then closes and publishes its files."""
        self._send()
        for t in self._tasks:
            t.put(("flush",))
        files, done, pending = [], [], set(range(len(self._procs)))
        while pending:
            kind, idx, payload = self._handle(self._get(True))
            if kind == "results":
                done += payload
            elif kind == "flushed":
                files.extend(payload)
                pending.discard(idx)
        return files, done

    def close(self) -> None:
        for t, p in zip(self._tasks, self._procs):
            if p.is_alive():
                try:
                    t.put(("stop",), timeout=5)
                except queue.Full:
                    p.terminate()
        for p in self._procs:
            p.join(10)
            if p.is_alive():
                p.kill()
