"""What every log source does, and the layout-aware walk that pushes filters into prefixes.

A source only has to list one "folder" level (delimiter listing), list everything under a
prefix, and read an object. The walk over ``AWSLogs/`` is shared, so S3 and a local copy list
exactly the same objects for the same filters.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pipeline import layout
from pipeline.errors import SourceError


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    problem: str | None = None  # set when the entry cannot be read as an object (e.g. a FIFO): reported, never read
    stat: str = ""  # local files only: "size-mtime_ns"


def _classify(f: ObjectInfo) -> layout.LogObject | layout.Unrecognised:
    if f.problem is not None:
        return layout.Unrecognised(f.key, f.size, f.problem)
    return layout.classify(f.key, f.size, f.etag, f.stat)


class Lister(Protocol):
    """The listing and reading primitives a source provides; keys are relative to the source root."""

    uri: str

    def list_level(self, prefix: str) -> tuple[list[str], list[ObjectInfo]]:
        """Child "folders" (full prefixes ending in '/') and objects directly under ``prefix``."""

    def list_all(self, prefix: str) -> Iterable[ObjectInfo]:
        """Every object under ``prefix``, recursively."""

    def read(self, key: str) -> bytes:
        """The object's bytes, as stored (still gzip-compressed)."""

    def object_uri(self, key: str) -> str:
        """A URI naming the object in messages (``s3://bucket/key`` or a path)."""


@dataclass(frozen=True)
class Filters:
    """What to list: delivery dates (inclusive), accounts, regions and kinds. Empty = everything."""

    since: dt.date | None = None
    until: dt.date | None = None
    accounts: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset(layout.SERVICE_KINDS.values())

    def date_ok(self, d: dt.date) -> bool:
        return (self.since is None or d >= self.since) and (self.until is None or d <= self.until)


@dataclass
class Listing:
    """Result of a walk: objects to consider, plus what was seen and not ingested, with reasons."""

    objects: list[layout.LogObject] = field(default_factory=list)
    unrecognised: list[layout.Unrecognised] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def _last(prefix: str) -> str:
    return prefix.rstrip("/").rsplit("/", 1)[-1]


def walk(lister: Lister, filters: Filters = Filters()) -> Iterator[layout.LogObject | layout.Unrecognised]:
    """Yield every object of the layout under the source that passes ``filters``.

    Descends ``AWSLogs/[org/]account/service/region/`` with delimiter listings, applying the
    account, kind and region filters on the way down and turning the date range into
    ``YYYY/MM/DD/`` prefixes, so a narrow query never lists the whole bucket.
    """
    root_dirs, root_files = lister.list_level("AWSLogs/")
    if not root_dirs and not root_files:
        raise SourceError(
            f"no AWSLogs/ folder under {lister.uri}: point --source at the folder (or bucket prefix) "
            "that holds AWSLogs/, i.e. the trail's S3 key prefix"
        )
    for f in root_files:
        yield _classify(f)
    accounts: list[str] = []
    for d in root_dirs:
        name = _last(d)
        if layout.ORG_RE.match(name):
            sub_dirs, sub_files = lister.list_level(d)
            yield from map(_classify, sub_files)
            for sd in sub_dirs:
                if layout.ACCOUNT_RE.match(_last(sd)):
                    accounts.append(sd)
                else:
                    yield layout.Unrecognised(sd, 0, "folder is neither an account id nor an organisation id")
        elif layout.ACCOUNT_RE.match(name):
            accounts.append(d)
        else:
            yield layout.Unrecognised(d, 0, "folder is neither an account id nor an organisation id")
    for acct in accounts:
        if filters.accounts and _last(acct) not in filters.accounts:
            continue
        svc_dirs, svc_files = lister.list_level(acct)
        yield from map(_classify, svc_files)
        for svc in svc_dirs:
            kind = layout.SERVICE_KINDS.get(_last(svc))
            if kind is None:
                yield layout.Unrecognised(svc, 0, f"unknown source {_last(svc)!r} (not listed further)")
                continue
            if kind not in filters.kinds:
                continue
            yield from _walk_service(lister, svc, filters)


def _walk_service(lister: Lister, svc: str, filters: Filters) -> Iterator[layout.LogObject | layout.Unrecognised]:
    region_dirs, files = lister.list_level(svc)
    yield from map(_classify, files)
    for reg in region_dirs:
        if not layout.REGION_RE.match(_last(reg)):
            yield layout.Unrecognised(reg, 0, f"{_last(reg)!r} is not an AWS region")
            continue
        if filters.regions and _last(reg) not in filters.regions:
            continue
        prefixes = _date_prefixes(filters)
        for p in prefixes if prefixes is not None else [""]:
            for f in lister.list_all(reg + p):
                item = _classify(f)
                if isinstance(item, layout.LogObject) and not filters.date_ok(item.date):
                    continue
                yield item


def _date_prefixes(filters: Filters) -> list[str] | None:
    if filters.since is None and filters.until is None:
        return None
    since = filters.since or dt.date(2013, 11, 1)  # CloudTrail launch: nothing older exists
    until = filters.until or dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    return layout.date_prefixes(since, until)


def list_objects(lister: Lister, filters: Filters = Filters()) -> Listing:
    """Walk the source and split what it holds into objects and unrecognised keys, with counts."""
    out = Listing()
    for item in walk(lister, filters):
        if isinstance(item, layout.LogObject):
            out.counts[item.kind] += 1
            out.objects.append(item)
        else:
            out.counts["unrecognised"] += 1
            out.unrecognised.append(item)
    return out
