"""A local copy of the ``AWSLogs/`` layout (e.g. ``aws s3 sync`` output) as a log source.

Only regular files (or symlinks to them) are read. Anything else under the layout (a FIFO, a
socket, a device, a dangling or looping symlink, a directory named like an object, a folder
that cannot be listed) is reported with the reason instead: listed as a problem, never opened,
so a FIFO named like a log object cannot hang a run and an unreadable folder does not stop it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from pipeline import layout
from pipeline.errors import SourceError
from pipeline.sources.base import ObjectInfo

#: A read that takes longer than this is abandoned (reported as failed; the next run retries it).
READ_TIMEOUT_S = 120.0
_READ_CHUNK = 8 << 20
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def inspect(path: str) -> tuple[os.stat_result | None, str | None]:
    """(stat, None) for a regular file (symlinks followed), else (None, why it is not read)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, ("dangling symlink: its target does not exist" if os.path.islink(path)
                      else "disappeared while the folder was listed")
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, "symlink loop: it never resolves to a file"
        return None, f"cannot inspect it: {e.strerror or e}"
    if stat.S_ISREG(st.st_mode):
        return st, None
    return None, f"not a regular file ({_kind(st.st_mode)}): not read"


#: identity → (stat, etag) the ledger recorded for it, or None
Known = Callable[[str], "tuple[str, str] | None"]


class LocalSource:
    """A folder holding ``AWSLogs/``. An object's ETag is the MD5 of its bytes, as S3 computes it.

    That is the ETag S3 gives an object uploaded in one PUT (as CloudTrail and GuardDuty deliver
    them), so a local copy and the S3 original are the same object to the ledger. Hashing costs
    one read per file; it is done once: when the ledger (see :meth:`remember`) recorded this
    identity with the same size and mtime, the ETag it recorded is reused without reading, and
    a file the ledger has never seen is hashed by its reader, not while listing.
    """

    #: Reads are cheap (no latency to hide): ingest lets the worker that normalises an object read it.
    read_in_workers = True

    def __init__(self, root: str | os.PathLike, known: Known | None = None, read_timeout: float = READ_TIMEOUT_S):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{self.root} is not a directory: --source takes s3://bucket/prefix or a local folder")
        self.uri = str(self.root)
        self.known = known
        self.held: Callable[[str], bool] | None = None
        self.read_timeout = read_timeout

    def remember(self, known: Known, held: Callable[[str], bool] | None = None) -> None:
        """Reuse the ledger's recorded ETags for files unchanged since (same size and mtime).

        With ``held`` (identity → the ledger holds an entry for it), a file the ledger has never
        seen is not hashed while listing: it is new whatever its ETag, so its ETag is left empty
        and the worker that reads the file computes it from the bytes it read (one read, not two).
        """
        self.known = known
        self.held = held

    def _info(self, rel: str, path: str) -> ObjectInfo:
        st, problem = inspect(path)
        if st is None:
            return ObjectInfo(rel, 0, "", problem)
        stat_key = f"{st.st_size}-{st.st_mtime_ns}"
        ident = layout.identity(rel)
        if ident is None:  # outside the layout: reported, never read, so never hashed
            return ObjectInfo(rel, st.st_size, stat_key, stat=stat_key)
        seen = self.known(ident) if self.known else None
        if seen is not None and seen[0] == stat_key:
            return ObjectInfo(rel, st.st_size, seen[1], stat=stat_key)
        if self.held is not None and not self.held(ident):
            return ObjectInfo(rel, st.st_size, "", stat=stat_key)  # new: the reader computes the ETag
        try:  # a regular file (inspect said so): hashing it cannot block
            with open(path, "rb") as f:
                etag = hashlib.file_digest(f, "md5").hexdigest()
        except OSError:
            etag = stat_key  # unreadable now: the read reports it
        return ObjectInfo(rel, st.st_size, etag, stat=stat_key)

    def list_level(self, prefix: str) -> tuple[list[str], list[ObjectInfo]]:
        path = self.root / prefix
        if not path.is_dir():
            return [], []
        dirs, files = [], []
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            return [], [ObjectInfo(prefix, 0, "", f"cannot list this folder: {e.strerror or e}")]
        for e in entries:
            rel = prefix + e.name
            if e.is_dir():
                dirs.append(rel + "/")
            else:
                files.append(self._info(rel, e.path))
        return dirs, files

    def list_all(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self.root / prefix
        if not base.is_dir():
            return
        errors: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(base, onerror=errors.append):
            yield from self._walk_errors(errors)
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for name in sorted(dirnames):
                full = os.path.join(dirpath, name)
                if os.path.islink(full):  # os.walk does not follow these: say so rather than skip silently
                    yield ObjectInfo(f"{rel_dir}/{name}/", 0, "", "symlink to a directory: not followed")
                elif name.endswith((".gz", ".json")):
                    yield ObjectInfo(f"{rel_dir}/{name}", 0, "", "a directory named like a log object: not a file")
            dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))
                                 and not d.endswith((".gz", ".json")))
            for name in sorted(filenames):
                yield self._info(f"{rel_dir}/{name}", os.path.join(dirpath, name))
        yield from self._walk_errors(errors)

    def _walk_errors(self, errors: list[OSError]) -> Iterator[ObjectInfo]:
        while errors:
            e = errors.pop(0)
            rel = os.path.relpath(e.filename or str(self.root), self.root).replace(os.sep, "/")
            yield ObjectInfo(rel.rstrip("/") + "/", 0, "", f"cannot list this folder: {e.strerror or e}")

    def read(self, key: str) -> bytes | bytearray:
        """The file's bytes; refuses anything but a regular file (checked on the open descriptor)."""
        path = self.root / key
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb", buffering=0) as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceError(f"{path} is not a regular file ({_kind(st.st_mode)}): not read")
            deadline = time.monotonic() + self.read_timeout
            buf = bytearray(st.st_size)
            view, n = memoryview(buf), 0
            while n < st.st_size:
                got = f.readinto(view[n:n + _READ_CHUNK])
                if not got:
                    break  # truncated since it was listed: the bytes that are there
                n += got
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {path} took over {self.read_timeout:.0f} s ({n:,} of {st.st_size:,} bytes)")
            view.release()
            del buf[n:]
            return buf  # bytes-like: gunzip and the worker pipe take it as is (no second copy)

    def read_with_metadata(self, key: str) -> tuple[bytes | bytearray, dict[str, str]]:
        """The file's bytes and the S3 user metadata a sidecar kept for it (``layout.metadata_path``), if any."""
        data = self.read(key)
        try:
            meta = orjson.loads((self.root / layout.metadata_path(key)).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            meta = {}
        return data, {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}

    def object_uri(self, key: str) -> str:
        return str(self.root / key)
