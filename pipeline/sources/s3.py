"""An S3 bucket (optionally under a key prefix) holding the ``AWSLogs/`` layout."""

from __future__ import annotations

from collections.abc import Iterator

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import SourceError
from pipeline.sources.base import ObjectInfo


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ("bucket", "some/prefix/") (prefix empty or ending in '/')."""
    if not uri.startswith("s3://"):
        raise SourceError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise SourceError(f"{uri!r} names no bucket: use s3://bucket[/prefix]")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


class S3Source:
    """Lists with ``list_objects_v2`` (paginated, delimiter per level) and reads with ``get_object``.

    The boto3 client is passed in (built from the user's profile, region and endpoint), so
    tests point it at a moto server on loopback.
    """

    def __init__(self, client, uri: str):
        self.client = client
        self.bucket, self.prefix = split_s3_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}"

    def _pages(self, prefix: str, delimiter: str | None):
        kwargs = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            yield from self.client.get_paginator("list_objects_v2").paginate(**kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            raise SourceError(f"cannot list {self.uri}{prefix}: {code or e} ({_hint(code)})") from e
        except BotoCoreError as e:
            raise SourceError(f"cannot list {self.uri}{prefix}: {e}") from e

    def _info(self, obj: dict) -> ObjectInfo:
        return ObjectInfo(obj["Key"][len(self.prefix):], obj["Size"], obj.get("ETag", "").strip('"'))

    def list_level(self, prefix: str) -> tuple[list[str], list[ObjectInfo]]:
        dirs, files = [], []
        for page in self._pages(prefix, "/"):
            dirs.extend(p["Prefix"][len(self.prefix):] for p in page.get("CommonPrefixes", ()))
            files.extend(self._info(o) for o in page.get("Contents", ()))
        return dirs, files

    def list_all(self, prefix: str) -> Iterator[ObjectInfo]:
        for page in self._pages(prefix, None):
            for o in page.get("Contents", ()):
                yield self._info(o)

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()

    def read_with_metadata(self, key: str) -> tuple[bytes, dict[str, str]]:
        """The object's bytes and its S3 user metadata (``x-amz-meta-*``, prefix removed), in one GET."""
        got = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        return got["Body"].read(), dict(got.get("Metadata") or {})

    def object_uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"


def _hint(code: str) -> str:
    return {
        "NoSuchBucket": "check the bucket name and the region/endpoint",
        "AccessDenied": "the credentials need s3:ListBucket on the bucket",
        "InvalidAccessKeyId": "check the AWS profile or credentials",
    }.get(code, "check credentials, region and --endpoint-url")
