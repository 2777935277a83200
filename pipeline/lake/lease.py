"""One writer per lake: a lease in ``_state/lease.json``, taken atomically, renewed while held.

Every command that writes the lake (ingest, backfill, detect, forward, run) holds the lease for
its whole run; readers (query, report, catalog, Athena) never take it. The lease document names
its holder (host, pid, command, start) and an expiry time:

* taking it is one conditional write: S3 ``PutObject`` with ``If-None-Match: *`` (or, to take
  over a stale lease, ``If-Match: <its ETag>``); locally the same compare-and-swap under a short
  POSIX record lock (``LocalStore.swap``);
* a background thread renews it every ``ttl / 3`` seconds (``If-Match`` the version it wrote
  last), so a live run keeps it and a dead one loses it after at most ``ttl`` seconds;
* a holder on this very machine whose process is gone (same host, boot and pid namespace, and
  the pid is dead or now a different process) is taken over at once, without waiting;
* a run whose lease was taken over (it stalled past the expiry) learns it at its next
  :meth:`WriterLease.check`, which the ingest calls before each ledger commit.

The clocks of the machines sharing a lake must agree to well under ``ttl`` (NTP does this).
Taking the lease also finishes what a crashed writer left half-published (``staging.settle``).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import orjson

from pipeline.errors import LeaseHeld, LeaseLost

LEASE_PATH = "_state/lease.json"
DEFAULT_TTL = 60.0
POLL_SECONDS = 0.5


def _ttl_default() -> float:
    try:
        return float(os.environ.get("SOCLAKE_LEASE_TTL", DEFAULT_TTL))
    except ValueError:
        return DEFAULT_TTL


def _proc_start(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' where /proc is not available)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _node() -> str:
    """This machine *and* pid namespace: pids are comparable only where this is equal."""
    parts = [socket.gethostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts.append(f.read().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        parts.append("?")
    return "|".join(parts)


@dataclass
class Holder:
    token: str
    host: str
    pid: int
    command: str
    started: str  # ISO 8601, UTC
    expires: float  # epoch seconds
    node: str = ""
    pid_start: str = ""

    def describe(self) -> str:
        return f"{self.command} on {self.host} (pid {self.pid}, started {self.started})"

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.expires

    def dead_here(self) -> bool:
        """True only when the holder provably ran on this machine and its process is gone."""
        if not self.node or self.node != _node() or "?" in self.node:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, someone else's
        return bool(self.pid_start) and _proc_start(self.pid) not in ("", self.pid_start)


def _parse(data: bytes) -> Holder | None:
    try:
        doc = orjson.loads(data)
        return Holder(**{k: doc[k] for k in Holder.__dataclass_fields__ if k in doc})
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None  # unreadable: treated as stale (nothing renews a lease it cannot write)


class WriterLease:
    """The lease of one run on one lake. Use :func:`writer_lease` rather than this directly."""

    def __init__(self, store, command: str, ttl: float | None = None):
        self.store, self.command = store, command
        self.ttl = ttl if ttl is not None else _ttl_default()
        self.renew_every = self.ttl / 3
        now = dt.datetime.now(dt.UTC)
        self.holder = Holder(token=secrets.token_hex(8), host=socket.gethostname(), pid=os.getpid(),
                             command=command, started=now.isoformat(timespec="seconds"), expires=0.0,
                             node=_node(), pid_start=_proc_start(os.getpid()))
        self.version: str | None = None
        self.took_over: Holder | None = None  # the stale holder this run replaced, if any
        self.renewals = 0
        self.settled = 0  # files a crashed writer left, removed when this lease was taken
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def _doc(self) -> bytes:
        self.holder.expires = time.time() + self.ttl
        return orjson.dumps(asdict(self.holder))

    def acquire(self, wait: float = 0.0) -> WriterLease:
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                data, version = self.store.read_versioned(LEASE_PATH)
            except FileNotFoundError:
                data, version = None, None
            holder = None if data is None else _parse(data)
            if data is None or holder is None or holder.expired() or holder.dead_here():
                new = self.store.swap(LEASE_PATH, self._doc(), version)
                if new is not None:
                    self.version, self.took_over = new, holder
                    self._start()
                    return self
                continue  # another writer got there first: look again
            left = deadline - time.monotonic()
            if left <= 0:
                until = dt.datetime.fromtimestamp(holder.expires, dt.UTC).isoformat(timespec="seconds")
                raise LeaseHeld(
                    f"the lake {self.store.uri} is being written by {holder.describe()}; one writer at a time: "
                    f"retry with --wait SECONDS (the lease lapses at {until} unless its holder renews it)"
                )
            time.sleep(min(POLL_SECONDS, left))

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="soclake-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self.renew()
            except LeaseLost:
                return
            except Exception:  # noqa: BLE001 (a transient store error: try again until the lease runs out)
                if time.time() >= self.holder.expires:
                    self._lost = "it could not be renewed before it expired"
                    return

    def renew(self) -> None:
        with self._mutex:
            if self._lost:
                raise LeaseLost(self._message())
            new = self.store.swap(LEASE_PATH, self._doc(), self.version)
            if new is None:
                self._lost = "another run took it over (this run stalled past its expiry)"
                raise LeaseLost(self._message())
            self.version = new
            self.renewals += 1

    def _message(self) -> str:
        return f"lost the writer lease of {self.store.uri}: {self._lost}; nothing more is committed, rerun to continue"

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless this run still holds the lease (call before committing)."""
        if self._lost is None and time.time() >= self.holder.expires:
            self._lost = "it expired without being renewed"
        if self._lost:
            raise LeaseLost(self._message())

    @property
    def lost(self) -> bool:
        return self._lost is not None

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._mutex:
            if self.version is not None and self._lost is None:
                try:
                    self.store.delete_if(LEASE_PATH, self.version)
                except Exception:  # noqa: BLE001 (it expires on its own)
                    pass
            self.version = None


_held: dict[tuple[str, int], list] = {}  # (lake uri, thread) → [lease, depth]
_held_lock = threading.Lock()


@contextmanager
def writer_lease(store, command: str = "ingest", wait: float = 0.0, ttl: float | None = None) -> Iterator[WriterLease]:
    """Hold the lake's writer lease for the block; raise :class:`LeaseHeld` if another run has it.

    ``wait``: seconds to wait for the holder to finish (0 = refuse at once). Nested use on the same
    lake in the same thread (``run`` = ingest + detect + forward) reuses the outer lease.
    """
    key = (store.uri, threading.get_ident())
    with _held_lock:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield entry[0]
        finally:
            with _held_lock:
                entry[1] -= 1
        return
    lease = WriterLease(store, command, ttl).acquire(wait)
    with _held_lock:
        _held[key] = [lease, 1]
    try:
        from pipeline.lake.staging import settle

        lease.settled = settle(store)  # finish or drop what a crashed writer left half-published
        yield lease
    finally:
        with _held_lock:
            _held.pop(key, None)
        lease.release()


def read_holder(store) -> Holder | None:
    """Who holds the lease now (None when nobody does, or it expired)."""
    try:
        holder = _parse(store.get(LEASE_PATH))
    except FileNotFoundError:
        return None
    return holder if holder is not None and not holder.expired() else None
