"""A local copy of the ``AWSLogs/`` layout (e.g. ``aws s3 sync`` output) as a log source."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import SourceError
from pipeline.sources.base import ObjectInfo


class LocalSource:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{self.root} is not a directory: --source takes s3://bucket/prefix or a local folder")
        self.uri = str(self.root)

    def _info(self, rel: str, st: os.stat_result) -> ObjectInfo:
        # Local files have no ETag: size + mtime identifies a version well enough to spot changes.
        return ObjectInfo(rel, st.st_size, f"{st.st_size}-{st.st_mtime_ns}")

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
