"""A source of exactly the S3 objects named (by a queue's notifications), for the same ingest.

``soclake watch`` hears about objects one notification at a time; instead of a second ingest
path it hands :func:`pipeline.ingest.ingest` a :class:`KeyListSource`: a :class:`Lister` whose
"listing" holds only those objects, each with its size and ETag from a ``HeadObject``. The
layout walk, the ledger (identity + ETag), the normalisers and the writer are then the ingest's own.

Keys are placed in the listing from their ``AWSLogs/`` segment on (the bucket prefix above it is
kept for reading and for the object's URI), so objects of several buckets or trail prefixes go
through one walk. Two spellings of one layout identity are one object to the ledger anyway: the
first named is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.sources.base import ObjectInfo

ANCHOR = "AWSLogs/"


@dataclass(frozen=True)
class Resolved:
    """What a ``HeadObject`` said about one named object."""

    bucket: str
    key: str
    state: str  # "ok", "gone" (404: deleted since), "outside" (no AWSLogs/ in the key), "error"
    size: int = 0
    etag: str = ""
    reason: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _virtual(key: str) -> str | None:
    """The key from its ``AWSLogs/`` segment on (where the layout walk starts), None without one."""
    if key.startswith(ANCHOR):
        return key
    i = key.find("/" + ANCHOR)
    return key[i + 1:] if i >= 0 else None


def _not_found(e: ClientError) -> bool:
    err = e.response.get("Error", {})
    return err.get("Code") in ("404", "NoSuchKey", "NotFound") and err.get("Code") != "NoSuchBucket"


class KeyListSource:
    """A :class:`~pipeline.sources.base.Lister` over named ``(bucket, key)`` pairs.

    ``resolve`` (called by the constructor) heads every object in parallel; :attr:`resolved`
    says per named object whether it is there (with its ETag), gone, outside the layout or
    could not be read (access denied, no such bucket, network: the caller retries those).
    """

    def __init__(self, client, objects: Iterable[tuple[str, str]], threads: int = 16):
        self.client = client
        named = list(dict.fromkeys(objects))
        self.buckets = sorted({b for b, _ in named})
        self.uri = f"s3://{self.buckets[0]}" if len(self.buckets) == 1 else f"s3 ({len(self.buckets)} buckets)"
        self.resolved: dict[tuple[str, str], Resolved] = {}
        self._where: dict[str, tuple[str, str]] = {}  # listing key → (bucket, real key)
        self._infos: dict[str, ObjectInfo] = {}
        with ThreadPoolExecutor(max(1, min(threads, len(named) or 1)), thread_name_prefix="head") as pool:
            for r in pool.map(lambda bk: self._head(*bk), named):
                self.resolved[(r.bucket, r.key)] = r
                if r.state != "ok":
                    continue
                v = _virtual(r.key)
                if v not in self._infos:
                    self._where[v] = (r.bucket, r.key)
                    self._infos[v] = ObjectInfo(v, r.size, r.etag)
        self._keys = sorted(self._infos)

    def _head(self, bucket: str, key: str) -> Resolved:
        if _virtual(key) is None:
            return Resolved(bucket, key, "outside", reason="key is outside the AWSLogs/ layout")
        try:
            h = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if _not_found(e):
                return Resolved(bucket, key, "gone", reason="no such object (deleted since it was notified)")
            err = e.response.get("Error", {})
            return Resolved(bucket, key, "error", reason=f"HeadObject failed: {err.get('Code', '?')} {err.get('Message', '')}".strip())
        except BotoCoreError as e:
            return Resolved(bucket, key, "error", reason=f"HeadObject failed: {e}")
        return Resolved(bucket, key, "ok", h.get("ContentLength", 0), h.get("ETag", "").strip('"'))

    @property
    def empty(self) -> bool:
        return not self._keys

    # -- the Lister protocol ---------------------------------------------------------------------
    def list_level(self, prefix: str) -> tuple[list[str], list[ObjectInfo]]:
        dirs: dict[str, None] = {}
        files = []
        for k in self._under(prefix):
            rest = k[len(prefix):]
            if "/" in rest:
                dirs[prefix + rest.split("/", 1)[0] + "/"] = None
            else:
                files.append(self._infos[k])
        return list(dirs), files

    def list_all(self, prefix: str) -> Iterator[ObjectInfo]:
        for k in self._under(prefix):
            yield self._infos[k]

    def _under(self, prefix: str) -> list[str]:
        return [k for k in self._keys if k.startswith(prefix)]

    def read(self, key: str) -> bytes:
        bucket, real = self._where[key]
        return self.client.get_object(Bucket=bucket, Key=real)["Body"].read()

    def object_uri(self, key: str) -> str:
        bucket, real = self._where.get(key, ("?", key))
        return f"s3://{bucket}/{real}"
