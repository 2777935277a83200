"""``soclake verify``: CloudTrail log file integrity, like ``aws cloudtrail validate-logs``, over a whole source.

For every digest file in the window: its location (it names where it was delivered), its
signature (SHA256withRSA with the region's public key) and its link to the previous digest
(``previousDigestSignature`` and ``previousDigestHashValue`` match the previous digest as found);
every log file it lists: present, and the SHA-256 of its uncompressed content equal to the listed
hash. Across the window: gaps in the hourly chain longer than ``max_gap``, and log files that no
digest lists although a later digest of their account and region exists.

Log files are not read twice: ingest stores each object's content hash in the ledger; verify
uses it when the object's ETag is still the one ingested (``rehash`` reads everything again),
and reads and hashes the rest. Digest files are always read from the source (they are small,
and a signature lives in the object's metadata, which can change without changing the ETag).
"""

from __future__ import annotations

import collections
import datetime as dt
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from pipeline import layout
from pipeline.integrity import digest as dg
from pipeline.integrity.keys import PublicKeys
from pipeline.lake.ledger import Ledger, identity
from pipeline.sources.base import Filters, Lister, walk

DEFAULT_MAX_GAP = dt.timedelta(hours=3)
#: A log file must be listed by a digest once a digest ending this long after its delivery exists.
LISTING_SLACK = dt.timedelta(hours=1)

DIGEST_INVALID, DIGEST_MISSING, CHAIN_BROKEN, GAP = "digest_invalid", "digest_missing", "chain_broken", "gap"
LOG_MODIFIED, LOG_DELETED, LOG_NOT_LISTED = "log_modified", "log_deleted", "log_not_listed"

_DIGEST_NAME = re.compile(r"^(?P<account>\d{12})_CloudTrail-Digest_(?P<region>[^_]+)_(?P<trail>.+)_"
                          r"(?P<home>[a-z]{2}(?:-[a-z]+)+-\d)_(?P<ts>\d{8}T\d{6}Z)\.json\.gz$")
_LOG_TIME = re.compile(r"_(\d{8}T\d{4})Z_")


@dataclass
class VerifyOptions:
    filters: Filters = field(default_factory=Filters)  # since/until: delivery dates of the digest files
    max_gap: dt.timedelta = DEFAULT_MAX_GAP
    rehash: bool = False  # read and hash every log file, even those the ledger has a hash for
    threads: int = 8
    now: dt.datetime | None = None  # "now" for the trailing gap when no --until is given (tests pin it)


@dataclass(frozen=True)
class Problem:
    kind: str
    uri: str
    account: str
    region: str
    time: dt.datetime  # digest end, or the log file's delivery time
    detail: str
    trail: str = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "object": self.uri, "account": self.account, "region": self.region,
                "trail": self.trail, "time": _iso(self.time), "detail": self.detail}


@dataclass
class VerifyReport:
    source: str
    lake: str
    digests_valid: int = 0
    digests_invalid: int = 0
    digests_missing: int = 0
    logs_valid: int = 0
    logs_modified: int = 0
    logs_deleted: int = 0
    logs_not_listed: int = 0
    logs_without_digests: int = 0  # in accounts/regions with no digest at all (validation not enabled?)
    logs_outside_window: int = 0  # listed by a digest, delivered outside the listed dates: not checked
    hashes_from_ledger: int = 0
    hashes_read: int = 0
    streams: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    key_calls: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def digests(self) -> int:
        return self.digests_valid + self.digests_invalid + self.digests_missing

    @property
    def logs(self) -> int:
        return self.logs_valid + self.logs_modified + self.logs_deleted

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, uri: str, stream: tuple, time: dt.datetime, detail: str) -> None:
        account, region, trail = stream[0], stream[1], stream[2] if len(stream) > 2 else ""
        self.problems.append(Problem(kind, uri, account, region, time, detail, trail))

    def to_dict(self) -> dict:
        return {
            "source": self.source, "lake": self.lake, "ok": self.ok,
            "results_found": {"from": _iso(self.first), "to": _iso(self.last)},
            "digests": {"valid": self.digests_valid, "invalid": self.digests_invalid, "missing": self.digests_missing},
            "log_files": {"valid": self.logs_valid, "modified": self.logs_modified, "deleted": self.logs_deleted,
                          "not_listed": self.logs_not_listed, "without_digests": self.logs_without_digests,
                          "outside_window": self.logs_outside_window},
            "gaps": sum(p.kind == GAP for p in self.problems),
            "hashes": {"from_ledger": self.hashes_from_ledger, "read": self.hashes_read},
            "streams": self.streams, "public_key_calls": self.key_calls,
            "problems": [p.to_dict() for p in self.problems],
        }

    def lines(self) -> list[str]:
        """The report as ``aws cloudtrail validate-logs`` words it: problems, then the counts."""
        out = [f"{_WHAT[p.kind]}\t{p.uri}\t{_STATUS[p.kind]}: {p.detail}" for p in self.problems]
        out.append("")
        if not self.digests:
            out.append(f"No digest files found under {self.source} for the window")
        else:
            out.append(f"Results found for {_iso(self.first)} to {_iso(self.last)} ({self.streams} trail/region chains):")
            out.append("")
            out.append(_count(self.digests_valid, self.digests, "digest files", "valid"))
            if self.digests_invalid:
                out.append(_count(self.digests_invalid, self.digests, "digest files", "INVALID"))
            if self.digests_missing:
                out.append(_count(self.digests_missing, self.digests, "digest files", "MISSING"))
        if self.logs:
            out.append(_count(self.logs_valid, self.logs, "log files", "valid"))
            for n, word in ((self.logs_modified, "INVALID (modified)"), (self.logs_deleted, "INVALID (not found)")):
                if n:
                    out.append(_count(n, self.logs, "log files", word))
        if self.logs_not_listed:
            out.append(f"{self.logs_not_listed} log files NOT LISTED in any digest")
        gaps = sum(p.kind == GAP for p in self.problems)
        if gaps:
            out.append(f"{gaps} gaps in the digest chain longer than the allowed gap")
        if self.logs_without_digests:
            out.append(f"{self.logs_without_digests} log files in accounts/regions without any digest file "
                       "(log file validation not enabled on their trail?)")
        if self.logs_outside_window:
            out.append(f"{self.logs_outside_window} listed log files delivered outside the window: not checked")
        out.append(f"(hashes: {self.hashes_from_ledger} from the ingest ledger, {self.hashes_read} read)")
        return out


_WHAT = {DIGEST_INVALID: "Digest file", DIGEST_MISSING: "Digest file", CHAIN_BROKEN: "Digest file", GAP: "Digest chain",
         LOG_MODIFIED: "Log file", LOG_DELETED: "Log file", LOG_NOT_LISTED: "Log file"}
_STATUS = {DIGEST_INVALID: "INVALID", DIGEST_MISSING: "INVALID", CHAIN_BROKEN: "INVALID", GAP: "GAP",
           LOG_MODIFIED: "INVALID", LOG_DELETED: "INVALID", LOG_NOT_LISTED: "NOT LISTED"}


def _count(n: int, total: int, what: str, word: str) -> str:
    return f"{n}/{total} {what} {word}"


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def layout_key(key: str) -> str:
    """An object's place in the AWS layout (from ``AWSLogs/``): how digests and the source are matched."""
    i = key.find("AWSLogs/")
    return key[i:] if i >= 0 else key


def _log_time(key: str) -> dt.datetime | None:
    m = _LOG_TIME.search(key.rsplit("/", 1)[-1])
    return dt.datetime.strptime(m[1], "%Y%m%dT%H%M").replace(tzinfo=dt.UTC) if m else None


@dataclass
class _Found:
    obj: layout.LogObject
    stream: tuple[str, str, str, str]  # account, region, trail, home region
    digest: dg.Digest | None = None
    error: str | None = None


def verify(source: Lister, store, keys: PublicKeys, options: VerifyOptions | None = None,
           progress=None) -> VerifyReport:
    """Verify the digest chains and log files under ``source``; ``store`` is the lake (its ledger's hashes).
    ``progress(step, done, total)`` hears each step (``pipeline.cli.progress.StepProgress``)."""
    opts = options or VerifyOptions()
    progress = progress or (lambda step, done=None, total=None: None)
    report = VerifyReport(source.uri, getattr(store, "uri", ""))
    f = opts.filters
    digest_filters = replace(f, kinds=frozenset({layout.DIGEST}))
    log_filters = replace(f, kinds=frozenset({layout.CLOUDTRAIL}),
                          since=f.since - dt.timedelta(days=1) if f.since else None)
    progress("listing digest and log files")
    digests = [o for o in walk(source, digest_filters) if isinstance(o, layout.LogObject)]
    logs = {layout_key(o.key): o for o in walk(source, log_filters) if isinstance(o, layout.LogObject)}
    ledger = Ledger.load(store) if store is not None else None

    with ThreadPoolExecutor(max(1, opts.threads), thread_name_prefix="verify") as pool:
        found = []
        for fd in pool.map(lambda o: _read_digest(source, o), digests):
            found.append(fd)
            progress("reading digest files", len(found), len(digests))
        progress("checking signatures and chains")
        streams: dict[tuple, list[_Found]] = collections.defaultdict(list)
        for fd in found:
            streams[fd.stream].append(fd)
        listed: dict[str, tuple[dg.LogFileEntry, _Found]] = {}
        for stream, items in sorted(streams.items()):
            _check_stream(source, keys, stream, items, digest_filters, opts, report, listed)
        _check_logs(source, ledger, logs, listed, opts, report, pool, progress)
    _check_unlisted(source, logs, listed, streams, report)
    report.streams = len(streams)
    report.key_calls = keys.calls
    report.problems.sort(key=lambda p: (p.account, p.region, p.time, p.kind, p.uri))
    return report


def _read_digest(source: Lister, obj: layout.LogObject) -> _Found:
    name = obj.key.rsplit("/", 1)[-1]
    m = _DIGEST_NAME.match(name)
    stream = (obj.account, obj.region, m["trail"] if m else "?", m["home"] if m else "?")
    reader = getattr(source, "read_with_metadata", None)
    try:
        data, meta = reader(obj.key) if reader else (source.read(obj.key), {})
        return _Found(obj, stream, dg.parse(data, meta))
    except dg.DigestFormatError as e:
        return _Found(obj, stream, error=str(e))
    except Exception as e:  # gone since listed, unreadable: the digest cannot vouch for anything
        return _Found(obj, stream, error=f"could not read it: {e}")


def _location_error(source: Lister, fd: _Found) -> str | None:
    d = fd.digest
    bucket = getattr(source, "bucket", None)
    where = f"{d['digestS3Bucket']}/{d['digestS3Object']}"
    if bucket is not None:
        if d["digestS3Bucket"] != bucket or d["digestS3Object"] != getattr(source, "prefix", "") + fd.obj.key:
            return f"has been moved from its original location (it names s3://{where})"
    elif layout_key(d["digestS3Object"]) != layout_key(fd.obj.key):
        return f"has been moved from its original location (it names s3://{where})"
    return None


def _digest_time(fd: _Found) -> dt.datetime:
    if fd.digest is not None:
        return fd.digest.end
    m = _DIGEST_NAME.match(fd.obj.key.rsplit("/", 1)[-1])
    return dt.datetime.strptime(m["ts"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC) if m else \
        dt.datetime.combine(fd.obj.date, dt.time(), dt.UTC)


def _check_stream(source, keys: PublicKeys, stream, items: list[_Found], filters: Filters, opts: VerifyOptions,
                  report: VerifyReport, listed: dict) -> None:
    items.sort(key=_digest_time)
    by_key = {layout_key(fd.obj.key): fd for fd in items}
    good = [fd.digest for fd in items if fd.digest is not None]
    lo = min((d.start for d in good), default=None)
    hi = max((d.end for d in good), default=None)
    previous: _Found | None = None
    for fd in items:
        uri, d, when = source.object_uri(fd.obj.key), fd.digest, _digest_time(fd)
        report.first = when if report.first is None else min(report.first, d.start if d else when)
        report.last = when if report.last is None else max(report.last, when)
        if d is None:
            report.digests_invalid += 1
            report.add(DIGEST_INVALID, uri, stream, when, fd.error or "unreadable")
            previous = fd
            continue
        why = _location_error(source, fd)
        if why is None:
            key = keys.get(fd.obj.region, d["digestPublicKeyFingerprint"], lo - dt.timedelta(hours=1), hi)
            why = dg.check_signature(d, key)
        if why:
            report.digests_invalid += 1
            report.add(DIGEST_INVALID, uri, stream, when, why)
        else:
            report.digests_valid += 1
        _check_link(source, stream, fd, previous, by_key, filters, opts, report)
        for entry in d.log_files:
            listed.setdefault(layout_key(entry.s3_object), (entry, fd))
        previous = fd
    if hi is not None:
        end = (dt.datetime.combine(filters.until + dt.timedelta(days=1), dt.time(), dt.UTC) if filters.until
               else opts.now or dt.datetime.now(dt.UTC))
        if end - hi > opts.max_gap:
            report.add(GAP, source.object_uri(items[-1].obj.key), stream, hi,
                       f"no digest file after {_iso(hi)} ({_hours(end - hi)} until {_iso(end)}): "
                       "the trail stopped logging, digests were deleted, or delivery is failing")


def _hours(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds() / 3600:,.1f} h"


def _check_link(source, stream, fd: _Found, previous: _Found | None, by_key: dict, filters: Filters,
                opts: VerifyOptions, report: VerifyReport) -> None:
    d = fd.digest
    uri = source.object_uri(fd.obj.key)
    prev_obj = d["previousDigestS3Object"]
    if prev_obj is None:
        if previous is not None and previous.digest is not None:
            # The chain starts again: CloudTrail does this when logging was stopped and started.
            if d.start - previous.digest.end > opts.max_gap:
                report.add(GAP, uri, stream, d.start, f"the chain starts again at {_iso(d.start)} after "
                           f"{_hours(d.start - previous.digest.end)} without digests (logging stopped?)")
        return
    p = by_key.get(layout_key(prev_obj))
    if p is None:
        prev_info = layout.classify(layout_key(prev_obj))
        expected = previous is not None or (isinstance(prev_info, layout.LogObject) and filters.date_ok(prev_info.date))
        if expected:
            report.digests_missing += 1
            report.add(DIGEST_MISSING, _sibling_uri(source, prev_obj), stream, d.start,
                       f"not found: the chain from {fd.obj.key.rsplit('/', 1)[-1]} points to it (deleted?)")
            if previous is not None and previous.digest is not None and d.start - previous.digest.end > opts.max_gap:
                report.add(GAP, uri, stream, d.start, f"no digest from {_iso(previous.digest.end)} to {_iso(d.start)} "
                           f"({_hours(d.start - previous.digest.end)})")
        return
    if p.digest is None:
        return  # already reported as invalid
    if d["previousDigestSignature"] != p.digest.signature:
        report.add(CHAIN_BROKEN, uri, stream, d.end, "previousDigestSignature does not match the signature of the "
                   f"previous digest file {p.obj.key.rsplit('/', 1)[-1]} (it was re-signed or replaced)")
    elif d["previousDigestHashValue"] is not None and d["previousDigestHashValue"].lower() != p.digest.content_sha256:
        report.add(CHAIN_BROKEN, uri, stream, d.end, "previousDigestHashValue does not match the SHA-256 of the "
                   f"previous digest file {p.obj.key.rsplit('/', 1)[-1]} (it was modified)")
    if previous is not None and previous is not p and previous.digest is not None:
        report.add(CHAIN_BROKEN, uri, stream, d.end, f"the previous digest it names is not the one before it "
                   f"({previous.obj.key.rsplit('/', 1)[-1]} is): a digest was inserted")


def _sibling_uri(source, s3_object: str) -> str:
    return source.object_uri(layout_key(s3_object)) if getattr(source, "bucket", None) is None else \
        f"s3://{source.bucket}/{s3_object}"


def _check_logs(source, ledger: Ledger | None, logs: dict, listed: dict, opts: VerifyOptions, report: VerifyReport,
                pool: ThreadPoolExecutor, progress) -> None:
    to_read: list[tuple[dg.LogFileEntry, _Found, layout.LogObject]] = []
    for lk, (entry, fd) in sorted(listed.items()):
        obj = logs.get(lk)
        stream, when = fd.stream, _log_time(lk) or fd.digest.end
        if obj is None:
            info = layout.classify(lk)
            if isinstance(info, layout.LogObject) and not _in_log_window(opts.filters, info.date):
                report.logs_outside_window += 1
                continue
            report.logs_deleted += 1
            report.add(LOG_DELETED, _sibling_uri(source, entry.s3_object), stream, when,
                       f"not found (listed by digest {fd.obj.key.rsplit('/', 1)[-1]})")
            continue
        uri = source.object_uri(obj.key)
        held = ledger.objects.get(identity(uri)) if ledger is not None else None  # keyed by layout identity
        if held is not None and held.etag == obj.etag and getattr(held, "sha256", None) and not opts.rehash:
            report.hashes_from_ledger += 1
            _judge(report, entry, fd, uri, when, held.sha256)
        else:
            to_read.append((entry, fd, obj))

    def hash_one(item):
        entry, fd, obj = item
        try:
            return dg.content_sha256(source.read(obj.key)), None
        except (zlib.error, EOFError, OSError) as e:
            return None, f"not a gzip object any more ({e})"
        except Exception as e:
            return None, f"could not be read ({e})"

    for (entry, fd, obj), (sha, err) in zip(to_read, pool.map(hash_one, to_read)):
        report.hashes_read += 1
        progress("hashing log files", report.hashes_read, len(to_read))
        uri, when = source.object_uri(obj.key), _log_time(obj.key) or fd.digest.end
        if err and "could not be read" in err:
            report.logs_deleted += 1
            report.add(LOG_DELETED, uri, fd.stream, when, err)
        else:
            _judge(report, entry, fd, uri, when, sha, err)


def _in_log_window(filters: Filters, date: dt.date) -> bool:
    since = filters.since - dt.timedelta(days=1) if filters.since else None
    return (since is None or date >= since) and (filters.until is None or date <= filters.until)


def _judge(report: VerifyReport, entry: dg.LogFileEntry, fd: _Found, uri: str, when, sha: str | None,
           err: str | None = None) -> None:
    if sha is not None and entry.hash_algorithm in ("SHA-256", "") and sha == entry.hash_value:
        report.logs_valid += 1
        return
    report.logs_modified += 1
    why = err or (f"hash value doesn't match: SHA-256 {sha}, digest {fd.obj.key.rsplit('/', 1)[-1]} lists "
                  f"{entry.hash_value}" if entry.hash_algorithm in ("SHA-256", "") else
                  f"unsupported hash algorithm {entry.hash_algorithm!r}")
    report.add(LOG_MODIFIED, uri, fd.stream, when, why)


def _check_unlisted(source, logs: dict, listed: dict, streams: dict, report: VerifyReport) -> None:
    """Log files a digest should list by now (a later digest of their account/region exists) but none does."""
    span: dict[tuple[str, str], tuple[dt.datetime, dt.datetime]] = {}
    for (account, region, *_), items in streams.items():
        good = [fd.digest for fd in items if fd.digest is not None]
        if good:
            lo, hi = min(d.start for d in good), max(d.end for d in good)
            old = span.get((account, region))
            span[(account, region)] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
    for lk, obj in sorted(logs.items()):
        if lk in listed:
            continue
        when = _log_time(lk)
        cover = span.get((obj.account, obj.region))
        if cover is None:
            report.logs_without_digests += 1
            continue
        if when is not None and cover[0] <= when and when + LISTING_SLACK < cover[1]:
            report.logs_not_listed += 1
            report.add(LOG_NOT_LISTED, source.object_uri(obj.key), (obj.account, obj.region), when,
                       f"delivered {_iso(when)} but no digest lists it (digests cover {_iso(cover[0])} to {_iso(cover[1])}): "
                       "added after delivery, or its digest is gone")


__all__ = ["VerifyOptions", "VerifyReport", "Problem", "verify", "layout_key", "DEFAULT_MAX_GAP"]
