"""Where the lake lives: a local folder or ``s3://bucket/prefix``, behind one small interface.

Every write is atomic: a local file is written under a temporary name in its final folder and
renamed into place; an S3 object is a single PUT (multipart for large files, which S3 also makes
visible only on completion). Paths are relative to the lake root and use '/'.

Both stores also offer what the writer lease needs: ``read_versioned`` (bytes + a version
token) and ``swap`` (write only if the object is still at a given version, or absent), i.e. S3
conditional writes (If-None-Match / If-Match) and, locally, a short POSIX lock around a
compare-and-replace. A missing object is a ``FileNotFoundError`` from every store.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import LakeError

TMP_SUFFIX = ".tmp"
_THREAD_LOCK = threading.Lock()  # held only for a compare-and-swap of a small state file


class _AtomicWrites:
    """``writing(rel)``: a temp path to write, published as ``rel`` only if the block succeeds."""

    @contextmanager
    def writing(self, rel: str) -> Iterator[str]:
        tmp = self.begin(rel)
        try:
            yield tmp
            self.publish(tmp, rel)
        finally:
            self.abort(tmp)


class LocalStore(_AtomicWrites):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()
        self.uri = str(self.root)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def url(self, rel: str) -> str:
        """What DuckDB and pyarrow read (a local path)."""
        return str(self.root / rel)

    def begin(self, rel: str) -> str:
        """A local temp path to write ``rel`` to; :meth:`publish` makes it ``rel`` atomically."""
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        return str(final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")

    def publish(self, tmp: str, rel: str) -> int:
        """Make the written temp file durable as ``rel``; returns its size."""
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
            size = os.fstat(f.fileno()).st_size
        os.replace(tmp, self.root / rel)
        return size

    def abort(self, tmp: str) -> None:
        Path(tmp).unlink(missing_ok=True)


    def put(self, rel: str, data: bytes) -> None:
        with self.writing(rel) as tmp:
            Path(tmp).write_bytes(data)

    def get(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def size(self, rel: str) -> int:
        return (self.root / rel).stat().st_size

    def move(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` (atomic on one filesystem); FileNotFoundError when ``src`` is gone."""
        final = self.root / dst
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / src, final)
        _fsync_dir(final.parent)

    # -- compare-and-swap (the writer lease) ---------------------------------------------------
    @contextmanager
    def _locked(self, rel: str) -> Iterator[None]:
        """A POSIX record lock beside ``rel`` (between processes; never inherited by forked workers)
        plus a thread lock (POSIX locks do not exclude threads of one process)."""
        lock = self.root / (rel + ".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with _THREAD_LOCK:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the lock

    def read_versioned(self, rel: str) -> tuple[bytes, str]:
        data = self.get(rel)
        return data, hashlib.sha256(data).hexdigest()

    def swap(self, rel: str, data: bytes, expected: str | None) -> str | None:
        """Write ``data`` iff ``rel`` is at version ``expected`` (None: iff absent); new version or None."""
        with self._locked(rel):
            try:
                current = self.read_versioned(rel)[1]
            except FileNotFoundError:
                current = None
            if current != expected:
                return None
            self.put(rel, data)
            _fsync_dir((self.root / rel).parent)
            return hashlib.sha256(data).hexdigest()

    def delete_if(self, rel: str, expected: str) -> bool:
        with self._locked(rel):
            try:
                if self.read_versioned(rel)[1] != expected:
                    return False
            except FileNotFoundError:
                return False
            self.delete(rel)
            return True

    def list(self, prefix: str) -> list[str]:
        """Every file under ``prefix`` (recursive), including leftover temp files."""
        base = self.root / prefix
        if not base.exists():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(base):
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            out.extend(f"{rel_dir}/{name}" for name in files)
        return sorted(out)

    def delete(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _missing(e: ClientError) -> bool:
    code = e.response.get("Error", {}).get("Code")
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("NoSuchKey", "NotFound", "404") or (status == 404 and code != "NoSuchBucket")


def _precondition_failed(e: ClientError) -> bool:
    # 412 PreconditionFailed; 409 ConditionalRequestConflict when two conditional writes race
    return e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class S3Store(_AtomicWrites):
    """An S3 lake. The boto3 client is passed in (profile, region, endpoint as the user set them)."""

    def __init__(self, client, uri: str):
        from pipeline.sources.s3 import split_s3_uri

        self.client = client
        self.bucket, self.prefix = split_s3_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def url(self, rel: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{rel}"

    @contextmanager
    def _errors(self, what: str, rel: str, missing: str | None = None) -> Iterator[None]:
        """AWS errors as one LakeError naming the object (``cannot read s3://…: AccessDenied …``);
        a missing key as FileNotFoundError when ``missing`` names it (as a local lake does)."""
        try:
            yield
        except ClientError as e:
            if missing is not None and _missing(e):
                raise FileNotFoundError(f"no object {self.url(missing)}") from None
            raise LakeError(f"cannot {what} {self.url(rel)}: {e}") from e
        except BotoCoreError as e:
            raise LakeError(f"cannot {what} {self.url(rel)}: {e}") from e

    def begin(self, rel: str) -> str:
        fd, tmp = tempfile.mkstemp(suffix=".parquet")
        os.close(fd)
        return tmp

    def publish(self, tmp: str, rel: str) -> int:
        """Upload (one PUT, or a multipart upload S3 shows only once complete) and drop the temp file."""
        from boto3.exceptions import S3UploadFailedError  # here: a local lake never imports boto3 (~60 ms)

        try:
            size = os.path.getsize(tmp)
            self.client.upload_file(tmp, self.bucket, self.prefix + rel)
            return size
        except (ClientError, BotoCoreError, S3UploadFailedError) as e:
            # upload_file wraps the AWS error (AccessDenied, …) as "Failed to upload TMP to KEY: <error>"
            why = str(e).split(": ", 1)[-1] if isinstance(e, S3UploadFailedError) else str(e)
            raise LakeError(f"cannot write {self.url(rel)}: {why}") from e
        finally:
            self.abort(tmp)

    def abort(self, tmp: str) -> None:
        if os.path.exists(tmp):
            os.unlink(tmp)


    def put(self, rel: str, data: bytes) -> None:
        with self._errors("write", rel):
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + rel, Body=data)

    def get(self, rel: str) -> bytes:
        return self.read_versioned(rel)[0]

    def read_versioned(self, rel: str) -> tuple[bytes, str]:
        """The object's bytes and ETag; FileNotFoundError when there is no such key (as locally)."""
        with self._errors("read", rel, missing=rel):
            r = self.client.get_object(Bucket=self.bucket, Key=self.prefix + rel)
            return r["Body"].read(), r["ETag"]

    def swap(self, rel: str, data: bytes, expected: str | None) -> str | None:
        """Conditional PUT: If-None-Match '*' when ``expected`` is None, else If-Match. New ETag or None."""
        cond = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        with self._errors("write", rel):
            try:
                return self.client.put_object(Bucket=self.bucket, Key=self.prefix + rel, Body=data, **cond)["ETag"]
            except ClientError as e:
                if _precondition_failed(e) or (expected is not None and _missing(e)):
                    return None
                raise

    def delete_if(self, rel: str, expected: str) -> bool:
        with self._errors("delete", rel):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.prefix + rel, IfMatch=expected)
                return True
            except ClientError as e:
                if _precondition_failed(e) or _missing(e):
                    return False
                raise

    def move(self, src: str, dst: str) -> None:
        """Server-side copy, then delete the source (FileNotFoundError when ``src`` is gone)."""
        with self._errors(f"copy {self.url(src)} to", dst, missing=src):
            self.client.copy({"Bucket": self.bucket, "Key": self.prefix + src}, self.bucket, self.prefix + dst)
        self.delete(src)

    def exists(self, rel: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + rel)
            return True
        except ClientError:
            return False

    def size(self, rel: str) -> int:
        with self._errors("read", rel, missing=rel):
            return self.client.head_object(Bucket=self.bucket, Key=self.prefix + rel)["ContentLength"]

    def list(self, prefix: str) -> list[str]:
        out = []
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                out.extend(o["Key"][len(self.prefix):] for o in page.get("Contents", ()))
        return sorted(out)

    def delete(self, rel: str) -> None:
        with self._errors("delete", rel):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + rel)


def open_store(uri: str, s3_client_factory=None) -> LocalStore | S3Store:
    """The store for a lake URI (worker processes reopen it from the URI and the AWS settings)."""
    if uri.startswith("s3://"):
        if s3_client_factory is None:
            from pipeline.aws import s3_client as s3_client_factory
        return S3Store(s3_client_factory(), uri)
    return LocalStore(uri)
