"""A local copy of the ``AWSLogs/`` layout (e.g. ``aws s3 sync`` output) as a log source."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline import layout
from pipeline.errors import SourceError
from pipeline.sources.base import ObjectInfo

#: identity → (stat, etag) the ledger recorded for it, or None
Known = Callable[[str], "tuple[str, str] | None"]


class LocalSource:
    """A folder holding ``AWSLogs/``. An object's ETag is the MD5 of its bytes, as S3 computes it.

    That is the ETag S3 gives an object uploaded in one PUT (as CloudTrail and GuardDuty deliver
    them), so a local copy and the S3 original are the same object to the ledger. Hashing costs
    one read per file; it is done once: when the ledger (see :meth:`remember`) recorded this
    identity with the same size and mtime, the ETag it recorded is reused without reading.
    """

    def __init__(self, root: str | os.PathLike, known: Known | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{self.root} is not a directory: --source takes s3://bucket/prefix or a local folder")
        self.uri = str(self.root)
        self.known = known

    def remember(self, known: Known) -> None:
        """Reuse the ledger's recorded ETags for files unchanged since (same size and mtime)."""
        self.known = known

    def _info(self, rel: str, st: os.stat_result) -> ObjectInfo:
        stat = f"{st.st_size}-{st.st_mtime_ns}"
        ident = layout.identity(rel)
        if ident is None:  # outside the layout: reported, never read, so never hashed
            return ObjectInfo(rel, st.st_size, stat, stat)
        seen = self.known(ident) if self.known else None
        if seen is not None and seen[0] == stat:
            return ObjectInfo(rel, st.st_size, seen[1], stat)
        try:
            with open(self.root / rel, "rb") as f:
                etag = hashlib.file_digest(f, "md5").hexdigest()
        except OSError:
            etag = stat  # unreadable now: the read reports it
        return ObjectInfo(rel, st.st_size, etag, stat)

    def list_level(self, prefix: str) -> tuple[list[str], list[ObjectInfo]]:
        path = self.root / prefix
        if not path.is_dir():
            return [], []
        dirs, files = [], []
        with os.scandir(path) as it:
            for e in sorted(it, key=lambda e: e.name):
                rel = prefix + e.name
                if e.is_dir():
                    dirs.append(rel + "/")
                elif e.is_file():
                    files.append(self._info(rel, e.stat()))
        return dirs, files

    def list_all(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self.root / prefix
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for name in sorted(filenames):
                yield self._info(f"{rel_dir}/{name}", os.stat(os.path.join(dirpath, name)))

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def object_uri(self, key: str) -> str:
        return str(self.root / key)
