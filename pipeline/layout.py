"""The ``AWSLogs/`` key layout AWS writes: parse keys into :class:`LogObject` and plan listing prefixes.

Keys are classified, never guessed: anything that does not match the documented layout comes
back as an :class:`Unrecognised` with the reason, so a run can count and report it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

CLOUDTRAIL = "cloudtrail"
GUARDDUTY = "guardduty"
DIGEST = "cloudtrail-digest"
INSIGHT = "cloudtrail-insight"

#: Service folder under ``AWSLogs/<account>/`` → kind.
SERVICE_KINDS = {
    "CloudTrail": CLOUDTRAIL,
    "GuardDuty": GUARDDUTY,
    "CloudTrail-Digest": DIGEST,
    "CloudTrail-Insight": INSIGHT,
}
#: Kinds whose objects hold events soclake ingests; the others are counted only.
EVENT_KINDS = (CLOUDTRAIL, GUARDDUTY)
#: Kinds the local ingest writes to the lake: the events, and the digest files (table cloudtrail_digests).
INGESTED_KINDS = (CLOUDTRAIL, GUARDDUTY, DIGEST)

ACCOUNT_RE = re.compile(r"^\d{12}$")
ORG_RE = re.compile(r"^o-[a-z0-9]{10,32}$")
REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")

_KEY_RE = re.compile(
    r"^(?P<prefix>(?:.*/)?)AWSLogs/(?:(?P<org>o-[a-z0-9]{10,32})/)?(?P<account>\d{12})/"
    r"(?P<service>[^/]+)/(?P<region>[^/]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<file>[^/]+)$"
)
_FILE_RES = {
    CLOUDTRAIL: re.compile(r"^(?P<account>\d{12})_CloudTrail_(?P<region>[^_]+)_\d{8}T\d{4}Z_[A-Za-z0-9]+\.json\.gz$"),
    DIGEST: re.compile(r"^(?P<account>\d{12})_CloudTrail-Digest_(?P<region>[^_]+)_.+_\d{8}T\d{6}Z\.json\.gz$"),
    INSIGHT: re.compile(r"^(?P<account>\d{12})_CloudTrail-Insight_(?P<region>[^_]+)_\d{8}T\d{4}Z_[A-Za-z0-9]+\.json\.gz$"),
    GUARDDUTY: re.compile(r"^[A-Za-z0-9-]+\.jsonl\.gz$"),
}


#: Where a local copy of the layout keeps an object's S3 user metadata (a digest's signature, which
#: ``aws s3 sync`` does not copy): ``.soclake-meta/AWSLogs/<...key>.json`` beside the ``AWSLogs/`` folder,
#: outside the layout, so listings never see it.
META_DIR = ".soclake-meta"


def metadata_path(key: str) -> str:
    """The metadata sidecar of ``key``, relative to the same root as the key."""
    head, sep, tail = key.partition("AWSLogs/")
    return f"{head}{META_DIR}/{sep}{tail}.json" if sep else f"{META_DIR}/{key}.json"


@dataclass(frozen=True, slots=True)
class LogObject:
    """One log object in the layout: where it is and what it holds."""

    kind: str
    account: str
    region: str
    date: dt.date
    key: str
    size: int
    etag: str
    org_id: str | None = None
    stat: str = ""  # local files: "size-mtime_ns", which lets a rerun reuse the content hash it recorded

    @property
    def identity(self) -> str:
        return identity(self.key)


@dataclass(frozen=True, slots=True)
class Unrecognised:
    """A key outside the layout (or of an unknown source), with the reason it was not ingested."""

    key: str
    size: int
    reason: str


_IDENTITY_RE = re.compile(
    r"(?:^|/)(AWSLogs/(?:o-[a-z0-9]{10,32}/)?\d{12}/[^/]+/[^/]+/\d{4}/\d{2}/\d{2}/[^/]+)$"
)


def identity(key_or_uri: str) -> str | None:
    """An object's identity: its place in the layout, ``AWSLogs/[org/]account/service/region/Y/M/D/file``.

    The same for every spelling that reaches it (relative or absolute path, trailing slash on
    the source, ``s3://bucket/prefix/…`` or a local copy); None outside the layout.
    """
    m = _IDENTITY_RE.search(key_or_uri.replace("\\", "/"))
    return m.group(1) if m else None


def classify(key: str, size: int = 0, etag: str = "", stat: str = "") -> LogObject | Unrecognised:
    """Parse one object key of the ``AWSLogs/`` layout."""
    if key.endswith("/"):
        return Unrecognised(key, size, "folder placeholder (zero-byte key ending in '/')")
    m = _KEY_RE.match(key)
    if not m:
        return Unrecognised(key, size, "key is outside the AWSLogs/<account>/<service>/<region>/YYYY/MM/DD/ layout")
    service, region, name = m["service"], m["region"], m["file"]
    kind = SERVICE_KINDS.get(service)
    if kind is None:
        return Unrecognised(key, size, f"unknown source {service!r} (soclake reads CloudTrail and GuardDuty)")
    if not REGION_RE.match(region):
        return Unrecognised(key, size, f"{region!r} is not an AWS region")
    try:
        date = dt.date(int(m["y"]), int(m["m"]), int(m["d"]))
    except ValueError:
        return Unrecognised(key, size, f"{m['y']}/{m['m']}/{m['d']} is not a date")
    fm = _FILE_RES[kind].match(name)
    if not fm:
        return Unrecognised(key, size, f"file name {name!r} does not match the {service} naming pattern")
    if kind != GUARDDUTY and (fm["account"] != m["account"] or fm["region"] != region):
        return Unrecognised(key, size, "account or region in the file name differs from its folder")
    return LogObject(kind, m["account"], region, date, key, size, etag, m["org"], stat)


def date_prefixes(since: dt.date | None, until: dt.date | None) -> list[str] | None:
    """``YYYY/MM/DD/`` (or ``YYYY/MM/`` for long ranges) prefixes covering [since, until]; None = all.

    Long ranges list per month and filter by day afterwards, which needs far fewer requests.
    """
    if since is None and until is None:
        return None
    if since is None or until is None:
        raise ValueError("date_prefixes needs both ends; resolve open ends first")
    if until < since:
        return []
    days = (until - since).days + 1
    if days <= 62:
        return [(since + dt.timedelta(n)).strftime("%Y/%m/%d/") for n in range(days)]
    months, cur = [], since.replace(day=1)
    while cur <= until:
        months.append(cur.strftime("%Y/%m/"))
        cur = (cur.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return months
