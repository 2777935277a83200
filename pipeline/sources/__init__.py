"""Log sources: S3 or a local folder in the ``AWSLogs/`` layout."""

from __future__ import annotations

from pipeline.sources.base import Filters, Lister, Listing, ObjectInfo, list_objects, walk
from pipeline.sources.local import LocalSource
from pipeline.sources.s3 import S3Source, split_s3_uri

__all__ = ["Filters", "Lister", "Listing", "LocalSource", "ObjectInfo", "S3Source", "list_objects", "open_source", "split_s3_uri", "walk"]


def open_source(uri: str, s3_client_factory=None) -> Lister:
    """An S3 source for ``s3://`` URIs (client from the factory), a local one otherwise."""
    if uri.startswith("s3://"):
        if s3_client_factory is None:
            from pipeline.aws import s3_client as s3_client_factory
        return S3Source(s3_client_factory(), uri)
    return LocalSource(uri)
