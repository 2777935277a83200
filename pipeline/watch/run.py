"""``soclake watch``: S3 notifications on an SQS queue drive the same ingest, detection and sinks.

One batch at a time:

1. **gather** messages for up to ``max_wait`` seconds after the first, or until they name
   ``max_objects`` objects (micro-batching: a busy trail makes files of sensible size); from the
   first message on, their visibility is extended while the batch is in flight;
2. take the lake's **writer lease** (waiting, while the messages stay invisible, for a compaction
   or a batch run holding it; a receive is never spent on waiting);
3. **ingest** exactly the named objects (:class:`~pipeline.sources.keys.KeyListSource` through
   :func:`~pipeline.ingest.ingest`: same ledger, normalisers and writer as ``soclake ingest``);
4. **delete** the messages whose objects are all committed to the ledger (ingested, already there,
   quarantined, or not log events); a message naming an object that could not be read stays,
   comes back when its visibility lapses and, after ``maxReceiveCount``, goes to the DLQ;
5. **detect** incrementally (widened back to the oldest object of the batch when it is late) and
   **forward** new alerts to the configured sinks; then release the lease.

A crash anywhere loses nothing: undeleted messages come back and the ledger turns what was
already committed into a no-op. A stop signal lets the current batch finish (or, while still
gathering, hands the messages straight back) and releases the lease.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

from pipeline import layout
from pipeline.errors import LeaseHeld, SoclakeError
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake.lease import writer_lease
from pipeline.sources.keys import KeyListSource
from pipeline.watch.messages import IGNORE, OBJECTS, UNKNOWN, Parsed, parse_body
from pipeline.watch.queue import KeepInFlight, Message, Queue

IDLE_POLL_SECONDS = 10  # long-poll length while nothing is in flight (a stop signal waits at most this)
_KEY_TIME = re.compile(r"_(\d{8}T\d{4})Z_")


@dataclass
class WatchOptions:
    max_wait: float = 10.0  # seconds to gather messages after the first of a batch
    max_objects: int = 1000  # objects per batch
    once: bool = False  # one batch (what is on the queue now), then return
    config: str | None = None  # sinks (forward after each batch) when given
    workers: int = 1  # normalising processes (1: in-process; batches are small)
    lookback: dt.timedelta = dt.timedelta(hours=3)
    idle_poll: int = IDLE_POLL_SECONDS
    lease_step: float = 5.0  # seconds per lease attempt while waiting for another writer
    enrich: object = None  # pipeline.enrich.apply.EnrichOptions (--ip-db, --aws-ranges) for detection


@dataclass
class WatchSummary:
    queue: str
    lake: str
    batches: int = 0
    messages: Counter = field(default_factory=Counter)
    objects: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    files_written: int = 0
    alerts_new: int = 0
    delivered: Counter = field(default_factory=Counter)
    pending: Counter = field(default_factory=Counter)  # left for the next batch, per sink
    quarantined: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    unknown: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rule_errors: list[dict] = field(default_factory=list)
    dlq: dict | None = None
    batch_seconds: list[float] = field(default_factory=list)  # first message received → batch settled
    stopped: str = ""
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.quarantined or self.failed or self.unknown or self.errors or self.rule_errors
                    or sum(self.pending.values()))

    def to_dict(self) -> dict:
        return {
            "queue": self.queue, "lake": self.lake, "batches": self.batches,
            "messages": {k: self.messages[k] for k in MESSAGE_COUNTS}, "objects": {k: self.objects[k] for k in OBJECT_COUNTS},
            "events": dict(self.events), "batch_seconds": _spread(self.batch_seconds),
            "files_written": self.files_written, "alerts_new": self.alerts_new,
            "delivered": dict(self.delivered), "left_pending": dict(self.pending),
            "quarantined": self.quarantined[-100:], "failed": self.failed[-100:], "unknown_messages": self.unknown[-100:],
            "errors": self.errors[-100:], "rule_errors": self.rule_errors[-100:],
            "dead_letter_queue": self.dlq, "stopped": self.stopped, "elapsed_s": round(self.elapsed, 3), "ok": self.ok,
        }


MESSAGE_COUNTS = ("received", "deleted", "ignored", "left_for_retry", "returned", "unknown")
OBJECT_COUNTS = ("named", "ingested", "already_ingested", "quarantined", "failed", "gone", "outside_layout", "not_events")


def _spread(xs: list[float]) -> dict:
    if not xs:
        return {}
    s = sorted(xs)
    return {"p50": round(s[len(s) // 2], 3), "p95": round(s[min(len(s) - 1, int(len(s) * 0.95))], 3),
            "max": round(s[-1], 3), "last": round(xs[-1], 3)}


def _key_time(key: str) -> dt.datetime | None:
    """When a CloudTrail object was written, from its key (to the minute); None for keys without a time
    (GuardDuty exports name only their day, and export findings within minutes of their update)."""
    m = _KEY_TIME.search(key.rsplit("/", 1)[-1])
    return dt.datetime.strptime(m[1], "%Y%m%dT%H%M").replace(tzinfo=dt.UTC) if m else None


class Watcher:
    """The loop; :meth:`run` returns when ``stop`` is set (or after one batch with ``once``)."""

    def __init__(self, queue: Queue, s3_client, store, lake: str, rules: list, opts: WatchOptions,
                 stop: threading.Event | None = None, log: Callable[[str], None] | None = None):
        self.queue, self.s3, self.store, self.lake, self.rules, self.opts = queue, s3_client, store, lake, rules, opts
        self.stop = stop or threading.Event()
        self.log = log or (lambda line: None)
        self.summary = WatchSummary(queue.url, lake)
        self._batch_start = time.monotonic()
        self.detect_due = True  # at start: catch up what a previous watcher may have left undetected

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> WatchSummary:
        t0 = time.monotonic()
        failures = 0
        try:
            while not self.stop.is_set():
                try:
                    batch, keeper = self.gather()
                except SoclakeError as e:  # the queue is unreachable: retry with backoff (or give up once)
                    if self.opts.once:
                        raise
                    failures += 1
                    self._error(str(e))
                    self.stop.wait(min(60, 2 ** failures))
                    continue
                failures = 0
                if batch or self.detect_due:
                    self.process(batch, keeper)
                elif keeper is not None:
                    keeper.stop()
                if self.opts.once:
                    self.summary.stopped = "once"
                    break
            else:
                self.summary.stopped = "signal"
        finally:
            self.summary.dlq = self._dlq()
            self.summary.elapsed = time.monotonic() - t0
        return self.summary

    def gather(self) -> tuple[list[tuple[Message, Parsed]], KeepInFlight | None]:
        """Messages for one batch; ignored and unknown ones are settled here (acknowledged / left for the DLQ)."""
        o = self.opts
        batch: list[tuple[Message, Parsed]] = []
        keeper: KeepInFlight | None = None
        objects, deadline = 0, None
        while not self.stop.is_set():
            if deadline is None:
                wait = min(int(o.max_wait + 0.999), 20) if o.once else o.idle_poll
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait = 1 if o.once else min(int(left + 0.999), 20)
            got = self.queue.receive(wait, max_messages=min(10, o.max_objects - objects))
            if not got:
                if o.once or deadline is not None:
                    break
                continue
            settled, new = [], []
            for m in got:
                self.summary.messages["received"] += 1
                p = parse_body(m.body)
                if p.kind == OBJECTS:
                    batch.append((m, p))
                    new.append(m)
                    objects += len(p.objects)
                elif p.kind == IGNORE:
                    self.summary.messages["ignored"] += 1
                    settled.append(m)
                else:
                    self.summary.messages["unknown"] += 1
                    self.summary.unknown.append({"message": m.id, "reason": p.reason, "receives": m.receives})
            if settled:
                self.summary.messages["deleted"] += len(settled) - len(self.queue.delete(settled))
            if new:
                if keeper is None:
                    keeper = KeepInFlight(self.queue)
                    self._batch_start = time.monotonic()
                    deadline = self._batch_start + o.max_wait
                keeper.add(new)
            if objects >= o.max_objects:
                break
        if self.stop.is_set() and batch:  # stopping before the batch started: hand it straight back
            if keeper is not None:
                keeper.stop()
            self.queue.set_visibility([m for m, _ in batch], 0)
            self.summary.messages["returned"] += len(batch)
            return [], None
        return batch, keeper

    # -- one batch ---------------------------------------------------------------------------------
    def process(self, batch: list[tuple[Message, Parsed]], keeper: KeepInFlight | None) -> None:
        s = self.summary
        named = [bk for _, p in batch for bk in p.objects]
        source = KeyListSource(self.s3, named) if named else None
        with ExitStack() as held:
            if not self._take_lease(held):
                if keeper is not None:
                    keeper.stop()
                self.queue.set_visibility([m for m, _ in batch], 0)
                s.messages["returned"] += len(batch)
                return
            failed: set[str] = set()
            rep = None
            if source is not None:
                for r in source.resolved.values():
                    s.objects["named"] += 1
                    if r.state == "gone":
                        s.objects["gone"] += 1
                    elif r.state == "outside":
                        s.objects["outside_layout"] += 1
                    elif r.state == "error":
                        failed.add(_ident(r.uri))
                        s.objects["failed"] += 1
                        s.failed.append({"object": r.uri, "reason": r.reason})
                if not source.empty:
                    try:
                        rep = ingest(source, self.store, IngestOptions(workers=self.opts.workers, fetch_threads=16))
                    except SoclakeError as e:  # nothing of this batch is deleted: it all comes back
                        self._error(f"ingest failed: {e}")
                        if keeper is not None:
                            keeper.stop()
                        return
                    self._count(rep, failed)
            if keeper is not None:
                keeper.stop()
            done = [m for m, p in batch if not any(_ident(f"s3://{b}/{k}") in failed for b, k in p.objects)]
            left = len(batch) - len(done)
            refused = self.queue.delete(done)
            s.messages["deleted"] += len(done) - len(refused)
            s.messages["left_for_retry"] += left
            s.batches += bool(batch)
            if rep is not None and rep.ingested_objects:
                self.detect_due = True
            if self.detect_due:
                self._detect_and_forward(rep, source)
        if batch:
            s.batch_seconds.append(time.monotonic() - self._batch_start)
            self.log(self._line(rep, len(done), left))

    def _take_lease(self, held: ExitStack) -> bool:
        """Take the writer lease, waiting (messages kept in flight) while another writer has it."""
        while True:
            try:
                held.enter_context(writer_lease(self.store, "watch", wait=self.opts.lease_step))
                return True
            except LeaseHeld as e:
                if self.stop.is_set():
                    self._error(f"stopped while waiting for the lease: {e}")
                    return False
                self.log(f"waiting for the writer lease: {e}")

    def _count(self, rep, failed: set[str]) -> None:
        s = self.summary
        s.objects["ingested"] += rep.ingested_objects
        s.objects["already_ingested"] += rep.skipped
        s.objects["not_events"] += sum(n for k, n in rep.listed.items() if k not in layout.EVENT_KINDS and k != "unrecognised")
        s.objects["outside_layout"] += len(rep.unrecognised)
        s.objects["quarantined"] += len(rep.quarantined)
        s.quarantined += [{"object": u, "reason": r} for u, r in rep.quarantined]
        s.events.update(rep.events)
        s.files_written += rep.files_written
        for u, r in rep.failed:
            failed.add(_ident(u))
            s.objects["failed"] += 1
            s.failed.append({"object": u, "reason": r})

    def _detect_and_forward(self, rep, source: KeyListSource | None) -> None:
        from pipeline.detect import alert_store
        from pipeline.detect.engine import DetectOptions, detect

        s = self.summary
        opts = DetectOptions(lookback=self.opts.lookback, enrich=self.opts.enrich)
        oldest = self._oldest(source)
        until = alert_store.load_state(self.store).get("evaluated_until")
        if oldest is not None and until and oldest < dt.datetime.fromisoformat(until):
            opts.since = oldest - self.opts.lookback  # late objects: evaluate back to them
        try:
            d = detect(self.lake, self.store, self.rules, opts)
            s.alerts_new += len(d.new)
            s.rule_errors += [{"rule": r, "error": e} for r, e in d.errors]
            if self.opts.config:
                from pipeline.forward.run import forward

                for r in forward(self.lake, self.store, self.opts.config):
                    s.delivered[r.name] += r.delivered
                    s.pending[r.name] = r.left
            self.detect_due = False
        except SoclakeError as e:  # kept due: the next batch tries again
            self._error(f"detect/forward failed: {e}")

    @staticmethod
    def _oldest(source: KeyListSource | None) -> dt.datetime | None:
        times = []
        for r in (source.resolved.values() if source is not None else ()):
            if r.state == "ok" and isinstance(layout.classify(r.key), layout.LogObject):
                t = _key_time(r.key)
                if t is not None:
                    times.append(t)
        return min(times, default=None)

    def _error(self, msg: str) -> None:
        self.summary.errors.append(msg)
        self.log(f"error: {msg}")

    def _dlq(self) -> dict | None:
        if self.queue.dlq_arn is None:
            return None
        return {"arn": self.queue.dlq_arn, "max_receive_count": self.queue.max_receives, "depth": self.queue.dlq_depth()}

    def _line(self, rep, deleted: int, left: int) -> str:
        s = self.summary
        ingested = rep.ingested_objects if rep is not None else 0
        events = rep.total_events if rep is not None else 0
        line = (f"batch {s.batches}: {deleted} message(s) done, {ingested} object(s) ingested ({events:,} events), "
                f"{rep.skipped if rep is not None else 0} already in the lake")
        if left:
            line += f", {left} message(s) left for retry"
        return line + f"; alerts so far {s.alerts_new}"


def _ident(uri: str) -> str:
    return layout.identity(uri) or uri


__all__ = ["WatchOptions", "WatchSummary", "Watcher", "UNKNOWN"]
