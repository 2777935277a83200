"""Run summaries in the lake (``_state/runs/<kind>.json``): what ``soclake status`` reads.

Every ``ingest``, ``detect`` and ``forward`` (and each step of ``run``) leaves one small JSON
document per kind: the last run and the last successful run, each with its start, end, outcome
(``ok``, ``partial``: finished but something was quarantined, failed or left pending; ``error``:
stopped with an error, whose one-line message is kept) and the figures of its report. It is
written after the run's own state, so a summary never claims more than the lake holds; the
lake's single writer (and ``forward``'s own outbox) keeps the read-modify-write safe.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import orjson

PREFIX = "_state/runs/"
KINDS = ("ingest", "detect", "forward")
OK, PARTIAL, ERROR = "ok", "partial", "error"


@dataclass
class Step:
    """One step of a command (``run`` has up to three), with the figures its report gave."""

    kind: str
    outcome: str = OK
    figures: dict = field(default_factory=dict)


@dataclass
class _Current:
    lake: str | None
    started: dt.datetime
    steps: list[Step] = field(default_factory=list)


_current: ContextVar[_Current | None] = ContextVar("soclake_run", default=None)


def note(kind: str, figures: dict, ok: bool = True) -> None:
    """Called by a command once a step's report is in (no-op outside a recorded command)."""
    cur = _current.get()
    if cur is not None:
        cur.steps.append(Step(kind, OK if ok else PARTIAL, figures))


@contextmanager
def recording(lake: str | None, *kinds: str, args=None):
    """Time a block and write each step it noted (``note_ingest`` and friends) to the lake's run summaries.

    A step the block noted gets its own outcome; a step it never reached because of an error gets
    ``error`` with the message. A lake that could not be opened records nothing. ``args`` (the
    command's flags) only decides whether metrics lines are printed (``--metrics emf``).
    """
    cur = _Current(lake, dt.datetime.now(dt.UTC))
    token = _current.set(cur)
    t0 = time.monotonic()
    error: BaseException | None = None
    try:
        yield
    except BaseException as e:
        error = e
        raise
    finally:
        _current.reset(token)
        _finish(args, cur, kinds, time.monotonic() - t0, error)


def recorded(*kinds: str):
    """Decorate a CLI command: :func:`recording` around it (``forward --status`` sends nothing: not a run)."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(args) -> int:
            if getattr(args, "status", False):
                return fn(args)
            with recording(getattr(args, "lake", None), *kinds, args=args):
                return fn(args)

        return run

    return wrap


def _finish(args, cur: _Current, kinds, seconds: float, error: BaseException | None) -> None:
    from pipeline.ops import metrics

    done = {s.kind for s in cur.steps}
    steps = list(cur.steps)
    if error is not None:
        from pipeline.options import one_line

        msg = "interrupted" if isinstance(error, KeyboardInterrupt) else one_line(error)
        steps += [Step(k, ERROR, {"error": msg}) for k in kinds if k not in done][:1]
    steps = [s for s in steps if s.kind in kinds or s.kind in KINDS]
    if not steps:
        return
    metrics.emit(args, cur, steps, seconds)
    if not cur.lake:
        return
    try:
        store = _store(cur.lake)
        ended = dt.datetime.now(dt.UTC)
        for s in steps:
            record(store, s.kind, cur.started, ended, s.outcome, s.figures, seconds)
    except Exception:  # noqa: BLE001 - a summary must never turn a run's outcome into another
        return


def _store(lake: str):
    from pathlib import Path

    from pipeline.lake.store import open_store

    if not lake.startswith("s3://") and not Path(lake).is_dir():
        raise FileNotFoundError(lake)  # the command failed before creating the lake: nothing to record in
    return open_store(lake)


def record(store, kind: str, started: dt.datetime, ended: dt.datetime, outcome: str, figures: dict,
           seconds: float | None = None) -> dict:
    """Write one run's summary as the kind's last run (and last ok run when it went through)."""
    run = {"kind": kind, "started": started.isoformat(), "ended": ended.isoformat(), "outcome": outcome,
           "seconds": round(seconds if seconds is not None else (ended - started).total_seconds(), 3),
           **figures}
    doc = load(store, kind)
    doc["last"] = run
    if outcome == OK:
        doc["last_ok"] = run
    doc["runs"] = doc.get("runs", 0) + 1
    store.put(f"{PREFIX}{kind}.json", orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return run


def load(store, kind: str) -> dict:
    """The kind's summary document (``{}`` when no run recorded one)."""
    rel = f"{PREFIX}{kind}.json"
    if not store.exists(rel):
        return {}
    try:
        return orjson.loads(store.get(rel))
    except orjson.JSONDecodeError:
        return {}


# -- what each step's report contributes (the same names are the EMF metrics, docs/deploy.md) ---------

def note_ingest(report) -> None:
    note("ingest", {
        "run_id": report.run_id,
        "objects_ingested": report.ingested_objects,
        "events_ingested": report.total_events,
        "objects_quarantined": len(report.quarantined),
        "objects_failed": len(report.failed),
        "records_rejected": report.rejected_records,
        "objects_skipped": report.skipped,
        "still_quarantined": report.still_quarantined,
        "bytes_read": report.bytes_read,
    }, report.ok)


def note_detect(report) -> None:
    note("detect", {
        "since": report.since.isoformat() if report.since else None,
        "until": report.until.isoformat() if report.until else None,
        "rules": report.rules,
        "alerts_new": len(report.new),
        "alerts_updated": len(report.updated),
        "rules_failed": len(report.errors),
        "incidents": len(report.incidents),
    }, report.ok)


def note_forward(reports) -> None:
    sinks = {r.name: {"pending": r.pending, "delivered": r.delivered, "parked": len(r.parked), "left": r.left,
                      "error": r.error} for r in reports}
    note("forward", {
        "alerts_forwarded": sum(r.delivered for r in reports),
        "alerts_parked": sum(len(r.parked) for r in reports),
        "alerts_left_pending": sum(r.left for r in reports),
        "sinks": sinks,
    }, all(r.left == 0 and not r.parked for r in reports))
