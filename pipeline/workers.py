"""Normalise-and-write workers: one per core, each with its own partition writer.

Rows never travel between processes: a worker normalises an object and appends its rows to its
own open Parquet files; the main process only hears "object X: N rows into partitions P" (or
why it was quarantined) and, when it asks for a flush, the list of files that are now durable.
``workers=1`` runs the very same :class:`ObjectProcessor` in-process.
"""

from __future__ import annotations

import datetime as dt
import gc
import multiprocessing
import queue
import traceback
from dataclasses import dataclass

from pipeline import layout
from pipeline.errors import LakeError, ObjectError
from pipeline.lake.writer import StreamingPartitionWriter, WrittenFile
from pipeline.normalize import TABLES, normalize


@dataclass
class ObjectResult:
    obj: layout.LogObject
    uri: str
    size: int  # bytes read (as stored, compressed)
    rows: int = 0
    partitions: tuple[str, ...] = ()
    error: str | None = None


class ObjectProcessor:
    def __init__(self, store, file_prefix: str, budget_bytes: int):
        self.writer = StreamingPartitionWriter(store, file_prefix, budget_bytes)

    def process(self, data: bytes, obj: layout.LogObject, uri: str, ingested_at: dt.datetime) -> ObjectResult:
        res = ObjectResult(obj, uri, len(data))
        try:
            table = normalize(data, obj, uri, ingested_at)
        except ObjectError as e:
            res.error = str(e)
            return res
        except Exception as e:  # a bug must not stop the run: quarantine, name it, keep going
            res.error = f"{type(e).__name__}: {e} (unexpected: please report this object to soclake)"
            return res
        res.rows = table.num_rows
        res.partitions = tuple(self.writer.add(TABLES[obj.kind], table))
        return res

    def flush(self) -> list[WrittenFile]:
        return self.writer.flush()

    def abort(self) -> None:
        self.writer.abort()


class InlinePool:
    """workers=1: process in the calling thread; same interface as :class:`ProcessPool`."""

    def __init__(self, store, run_id: str, budget_bytes: int):
        self.proc = ObjectProcessor(store, f"part-{run_id}-w0", budget_bytes)
        self._done: list[ObjectResult] = []
        self.outstanding = 0

    def submit(self, data, obj, uri, ingested_at) -> None:
        self._done.append(self.proc.process(data, obj, uri, ingested_at))

    def results(self, block: bool = False) -> list[ObjectResult]:
        out, self._done = self._done, []
        return out

    def flush(self) -> tuple[list[WrittenFile], list[ObjectResult]]:
        return self.proc.flush(), self.results()

    def close(self) -> None:
        self.proc.abort()


def _worker_main(idx, tasks, results, lake_uri, aws_settings, run_id, budget_bytes) -> None:
    from pipeline import aws
    from pipeline.lake.store import open_store

    aws.configure(aws_settings)
    # Nothing a worker keeps has reference cycles worth collecting mid-run; the collector's
    # passes over the fresh objects of every file only cost time. Collect at each flush instead.
    gc.freeze()
    gc.disable()
    proc = ObjectProcessor(open_store(lake_uri), f"part-{run_id}-w{idx}", budget_bytes)
    while True:
        msg = tasks.get()
        try:
            if msg[0] == "obj":
                results.put(("result", idx, proc.process(*msg[1:])))
            elif msg[0] == "flush":
                results.put(("flushed", idx, proc.flush()))
                gc.collect()
            else:
                proc.abort()
                return
        except Exception as e:  # the writer failed (disk full, S3 down): tell the main process
            results.put(("error", idx, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


class ProcessPool:
    def __init__(self, workers: int, lake_uri: str, run_id: str, budget_bytes: int, queue_depth: int = 6):
        from pipeline import aws

        # fork: instant start with everything imported, and no re-import of the caller's main
        # module (forkserver/spawn would re-run an unguarded script). Created before the fetch
        # threads start; the progress display runs no thread of its own.
        ctx = multiprocessing.get_context("fork")
        self._results = ctx.Queue()
        self._tasks = [ctx.Queue(queue_depth) for _ in range(workers)]
        self._load = [0] * workers
        self.outstanding = 0
        self._procs = [
            ctx.Process(target=_worker_main, name=f"soclake-worker-{i}", daemon=True,
                        args=(i, self._tasks[i], self._results, lake_uri, aws._settings, run_id, budget_bytes // workers))
            for i in range(workers)
        ]
        for p in self._procs:
            p.start()

    def submit(self, data, obj: layout.LogObject, uri: str, ingested_at) -> None:
        # Least-loaded worker; among equals the one this account/region/day hashes to, so a
        # partition's rows tend to land in one file.
        n = len(self._procs)
        home = hash((obj.account, obj.region, obj.date)) % n
        idx = min(range(n), key=lambda i: (self._load[i], i != home))
        while True:
            try:
                self._tasks[idx].put(("obj", data, obj, uri, ingested_at), timeout=1)
                break
            except queue.Full:
                self._check_alive()
        self._load[idx] += 1
        self.outstanding += 1

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
        if kind == "result":
            self._load[idx] -= 1
            self.outstanding -= 1
        return kind, idx, payload

    def results(self, block: bool = False) -> list[ObjectResult]:
        """Finished objects; with ``block`` wait for at least one (if any are outstanding)."""
        out = []
        msg = self._get(block and self.outstanding > 0)
        while msg is not None:
            kind, _, payload = self._handle(msg)
            if kind == "result":
                out.append(payload)
            msg = self._get(False)
        return out

    def flush(self) -> tuple[list[WrittenFile], list[ObjectResult]]:
        """Every worker finishes its queue, then closes and publishes its files."""
        for t in self._tasks:
            t.put(("flush",))
        files, done, pending = [], [], set(range(len(self._procs)))
        while pending:
            kind, idx, payload = self._handle(self._get(True))
            if kind == "result":
                done.append(payload)
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
