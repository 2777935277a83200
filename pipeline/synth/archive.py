"""Write a deterministic synthetic organisation log archive in AWS's own layout.

``generate_archive(sink, ...)`` writes CloudTrail log files, CloudTrail digest files and a
GuardDuty findings export to a sink (a directory or an S3 bucket) and returns what it wrote.
Same arguments, same bytes: all randomness comes from ``random.Random`` instances seeded from
``seed`` (one per account/region stream, one per scenario), and gzip headers carry mtime 0.
"""

from __future__ import annotations

import gc
import hashlib
import os
import random
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from itertools import accumulate
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

import orjson

from pipeline.integrity.digest import signed_metadata
from pipeline.layout import META_DIR, metadata_path
from pipeline.synth import signing
from pipeline.synth.background import Org, StreamGenerator, build_org, day_table
from pipeline.synth.findings import benign_findings
from pipeline.synth.ids import stable_hex
from pipeline.synth.scenarios import SCENARIOS, Injection, ScenarioContext

try:  # ISA-L is ~3x faster than zlib; the output differs, so pin one for byte-identical archives
    from isal.igzip import compress as _gzip_compress
except ImportError:  # pragma: no cover
    from gzip import compress as _gzip_compress

__all__ = ["Sink", "DirSink", "S3Sink", "ArchiveSummary", "ScenarioInfo", "generate_archive", "KEY_PATTERNS",
           "TAMPER_KINDS", "META_DIR", "metadata_path"]

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ORG_ID = re.compile(r"^o-[a-z0-9]{10,32}$")
_MAX_WINDOW = 3600
KEY_PATTERNS = {
    "cloudtrail": re.compile(
        r"^(?:(?P<prefix>.+)/)?AWSLogs/(?:(?P<org>o-[a-z0-9]{10,32})/)?(?P<account>\d{12})/CloudTrail/"
        r"(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
        r"(?P=account)_CloudTrail_(?P=region)_(?P<ts>\d{8}T\d{4}Z)_(?P<unique>[A-Za-z0-9]{16})\.json\.gz$"),
    "digest": re.compile(
        r"^(?:(?P<prefix>.+)/)?AWSLogs/(?:(?P<org>o-[a-z0-9]{10,32})/)?(?P<account>\d{12})/CloudTrail-Digest/"
        r"(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
        r"(?P=account)_CloudTrail-Digest_(?P=region)_(?P<trail>[A-Za-z0-9._-]+)_(?P<home>[a-z]{2}-[a-z]+-\d)_"
        r"(?P<ts>\d{8}T\d{6}Z)\.json\.gz$"),
    "guardduty": re.compile(
        r"^(?:(?P<prefix>.+)/)?AWSLogs/(?P<account>\d{12})/GuardDuty/(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d)/"
        r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<uuid>[0-9a-f-]{36})\.jsonl\.gz$"),
}


class Sink(Protocol):
    def put(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None: ...




class DirSink:
    """Writes each object to ``root/<key>``, creating directories."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def put(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if metadata:
            side = self.root / metadata_path(key)
            side.parent.mkdir(parents=True, exist_ok=True)
            side.write_bytes(orjson.dumps(metadata))


class S3Sink:
    """Puts each object into ``bucket`` with the boto3 S3 ``client`` it is given."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket = client, bucket

    def put(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **({"Metadata": metadata} if metadata else {}))


@dataclass
class ScenarioInfo:
    """One injected scenario: what a detection should find."""

    name: str
    account: str
    region: str
    actor: str
    event_ids: list[str]
    finding_ids: list[str]
    start: str
    end: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ArchiveSummary:
    objects: int = 0  # every object written (CloudTrail, digest and GuardDuty files)
    events: int = 0  # CloudTrail records, background and injected
    findings: int = 0  # GuardDuty finding lines (an updated finding counts again)
    bytes: int = 0  # compressed bytes written
    json_bytes: int = 0  # uncompressed CloudTrail JSON
    keys: dict[str, list[str]] = field(default_factory=lambda: {"cloudtrail": [], "digest": [], "guardduty": []})
    scenarios: list[ScenarioInfo] = field(default_factory=list)
    tampered: list[dict[str, str]] = field(default_factory=list)  # {"kind": ..., "key": ...}: what --tamper changed
    accounts: list[str] = field(default_factory=list)  # the first is the management account
    regions: list[str] = field(default_factory=list)
    org_id: str | None = None
    guardduty_account: str = ""  # the delegated administrator whose prefix holds the export
    start: str = ""
    end: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (scenarios as dicts)."""
        return asdict(self)


@dataclass
class _Obj:
    w0: int  # first second of background activity
    end: int  # exclusive end of the object's delivery interval
    size: int  # background records
    key_time: int  # delivery time written in the key


def _minute_weights(start: int, minutes: int) -> list[float]:
    """Activity per minute: busier on working hours (UTC), quieter at weekends."""
    out = []
    for m in range(minutes):
        t = start + 60 * m
        hour, weekday = (t // 3600) % 24, ((t // 86400) + 3) % 7  # 1970-01-01 was a Thursday
        busy = 1.0 if 7 <= hour < 19 else 0.0
        out.append((0.35 + busy) * (0.55 if weekday >= 5 else 1.0))
    return out


def _plan(rng: random.Random, count: int, per_object: int, start: int, cum: list[float]) -> list[_Obj]:
    n_obj = max(1, round(count / per_object))
    raw = [0.7 + 0.6 * rng.random() for _ in range(n_obj)]
    scale = count / sum(raw)
    sizes = [int(r * scale) for r in raw]
    for i in range(count - sum(sizes)):
        sizes[i % n_obj] += 1
    total = cum[-1]
    objs: list[_Obj] = []
    prev = start
    for c in accumulate(sizes):
        target = total * c / count if count else total
        m = min(bisect_right(cum, target), len(cum) - 1)
        lo = cum[m - 1] if m else 0.0
        end = start + 60 * m + int(60 * (target - lo) / max(cum[m] - lo, 1e-9))
        end = max(end, prev + 1)
        key_time = -(-end // 60) * 60 + 60 * rng.randrange(0, 5)
        objs.append(_Obj(max(prev, end - _MAX_WINDOW), end, 0, key_time))
        prev = end
    for o, s in zip(objs, sizes, strict=True):
        o.size = s
    objs[-1].end = max(objs[-1].end, start + 60 * len(cum))
    return objs


def _split(total: int, weights: list[float]) -> list[int]:
    raw = [total * w / sum(weights) for w in weights]
    out = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: out[i] - raw[i])[: total - sum(out)]:
        out[i] += 1
    return out


def _stamp(t: int, fmt: str) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime(fmt)


def _epoch(value: str | date | datetime) -> int:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def _resolve(scenarios: Iterable[str]) -> list[str]:
    names = list(scenarios)
    if "all" in names:
        names = [n for n in names if n != "all"] + [n for n in SCENARIOS if n not in names]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: {sorted(SCENARIOS)}")
    return list(dict.fromkeys(names))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of short-lived dicts: the cyclic collector would only slow generation down."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def generate_archive(
    sink: Sink, *, seed: int = 7, accounts: int = 3, regions: Iterable[str] = ("us-east-1", "eu-west-1"),
    start: str | date | datetime = "2026-11-01", days: int = 2, events: int = 20000, events_per_object: int = 500,
    guardduty_findings: int = 40, org_id: str | None = None, prefix: str = "", scenarios: Iterable[str] = (),
    digests: bool = True, progress: Callable[[int, int], None] | None = None, tamper: Iterable[str] = (),
) -> ArchiveSummary:
    """Write a synthetic organisation archive to ``sink`` and describe it.

    ``events`` background CloudTrail records spread over ``days`` days from ``start`` (UTC) across
    ``accounts`` accounts and ``regions``, about ``events_per_object`` per log file; then the named
    ``scenarios`` (or ``("all",)``) injected into the log files of their account, region and time.
    ``progress(objects_done, events_done)`` is called every 25 CloudTrail files and at the end.

    Digest files are signed with a key per (seed, region) (:mod:`pipeline.synth.signing`), chain
    and list every log file's hash. ``tamper`` (kinds of :data:`TAMPER_KINDS`) then breaks the
    first account/region stream on purpose, once per kind; ``summary.tampered`` says where.
    """
    regions = tuple(regions)
    if accounts < 1 or not regions or days < 1 or events < 0 or events_per_object < 1 or guardduty_findings < 0:
        raise ValueError("accounts, regions, days and events_per_object must be positive; events and findings >= 0")
    if org_id is not None and not _ORG_ID.match(org_id):
        raise ValueError(f"org_id {org_id!r} is not an organisation id like o-a1b2c3d4e5")
    names = _resolve(scenarios)
    tampering = _Tamper(seed, tamper)
    if tampering.kinds and not digests:
        raise ValueError("tamper needs digests: tampering is only visible against the digest files")
    prefix = prefix.strip("/")
    t_start = _epoch(start)
    t_end = t_start + 86400 * days
    base = "/".join(p for p in (prefix, "AWSLogs", org_id or "") if p)
    org = build_org(seed, accounts, regions)
    summary = ArchiveSummary(accounts=list(org.accounts), regions=list(regions), org_id=org_id,
                             guardduty_account=org.security, start=_stamp(t_start, "%Y-%m-%dT%H:%M:%SZ"),
                             end=_stamp(t_end, "%Y-%m-%dT%H:%M:%SZ"))
    streams = [(a, r) for a in org.accounts for r in regions]
    acct_w = {a: {"management": 0.45, "security": 0.6, "workload": 1.0}[org.roles[a]] *
              (0.8 + 0.4 * random.Random(f"soclake-synth:{seed}:{a}:volume").random()) for a in org.accounts}
    counts = _split(events, [acct_w[a] * (1.0 if r == org.home else 0.55) for a, r in streams])
    cum = list(accumulate(_minute_weights(t_start, (t_end - t_start) // 60)))
    rngs, plans = {}, {}
    for (a, r), count in zip(streams, counts, strict=True):
        rngs[(a, r)] = random.Random(f"soclake-synth:{seed}:{a}:{r}")
        plans[(a, r)] = _plan(rngs[(a, r)], count, events_per_object, t_start, cum)
    injections = [SCENARIOS[name](ScenarioContext(org=org, start=t_start, end=t_end,
                                                  rng=random.Random(f"soclake-synth:{seed}:scenario:{name}")))
                  for name in names]
    placed, extra_files = _place(injections, plans)
    tampering.plan_logs(len(plans[streams[0]]))

    day0, day_names = day_table(t_start, days + 2)
    with _gc_paused():
        for a, r in streams:
            gen, rng = StreamGenerator(org, a, r), rngs[(a, r)]
            stream_base = f"{base}/{a}/CloudTrail/{r}"
            delivered = []
            for i, obj in enumerate(plans[(a, r)]):
                recs = gen.records(rng, obj.size, obj.w0, obj.end, i, day0, day_names)
                unique = "".join(rng.choices(_ALNUM, k=16))
                extra = placed.get((a, r, i))
                if extra:
                    recs.extend(extra)
                    recs.sort(key=itemgetter("eventTime"))
                if not recs:
                    continue
                as_ = tampering.log_action(len(delivered)) if (a, r) == streams[0] else None
                delivered.append(_write_log(sink, summary, stream_base, a, r, obj.key_time, unique, recs, as_))
                if progress and len(summary.keys["cloudtrail"]) % 25 == 0:
                    progress(len(summary.keys["cloudtrail"]), summary.events)
            for key_time, recs in sorted(extra_files.get((a, r), {}).items()):
                recs.sort(key=itemgetter("eventTime"))
                unique = "".join(_ALNUM[int(c, 16) % 62] for c in stable_hex(seed, a, r, key_time, length=16))
                delivered.append(_write_log(sink, summary, stream_base, a, r, key_time, unique, recs))
            if digests:
                _write_digests(sink, summary, org, a, r, base, sorted(delivered), t_start, t_end, rng, org_id, seed,
                               tampering if (a, r) == streams[0] else None)
    _write_guardduty(sink, summary, org, seed, regions, t_start, t_end, guardduty_findings, injections, prefix)
    for inj in injections:
        times = sorted(rec["eventTime"] for rec in inj.records) or [f["createdAt"] for f in inj.findings]
        summary.scenarios.append(ScenarioInfo(
            inj.name, inj.account, inj.region, inj.actor, [rec["eventID"] for rec in inj.records],
            [f["id"] for f in inj.findings], times[0], times[-1], dict(inj.details)))
    if progress:
        progress(len(summary.keys["cloudtrail"]), summary.events)
    return summary


def _place(injections: list[Injection], plans: dict[tuple[str, str], list[_Obj]]) -> tuple[dict, dict]:
    """An injected record joins the log file whose window holds its time; one that falls in a quiet
    gap between windows goes to a small file of its own, delivered a few minutes later."""
    placed: dict[tuple[str, str, int], list[dict]] = {}
    extra_files: dict[tuple[str, str], dict[int, list[dict]]] = {}
    for inj in injections:
        for rec in inj.records:
            stream = (rec["recipientAccountId"], rec["awsRegion"])
            if stream not in plans:
                raise ValueError(f"scenario {inj.name} wrote to {stream}, which is not in the archive")
            t = _epoch(rec["eventTime"])
            objs = plans[stream]
            idx = min(bisect_right([o.end for o in objs], t), len(objs) - 1)
            if objs[idx].w0 <= t < objs[idx].end and objs[idx].size:
                placed.setdefault((*stream, idx), []).append(rec)
            else:
                extra_files.setdefault(stream, {}).setdefault(t - t % 300 + 300 + 120, []).append(rec)
    return placed, extra_files


def _write_log(sink: Sink, summary: ArchiveSummary, stream_base: str, account: str, region: str, key_time: int,
               unique: str, recs: list[dict], tamper: str | None = None) -> tuple[int, str, str, str, str]:
    key = (f"{stream_base}/{_stamp(key_time, '%Y/%m/%d')}/{account}_CloudTrail_{region}_"
           f"{_stamp(key_time, '%Y%m%dT%H%MZ')}_{unique}.json.gz")
    data = orjson.dumps({"Records": recs})
    if tamper == "modify":  # someone removed the last record (or renamed the only one) after delivery
        edited = recs[:-1] if len(recs) > 1 else [{**recs[0], "eventName": "DescribeInstances"}]
        _put(sink, summary, "cloudtrail", key, orjson.dumps({"Records": edited}))
    elif tamper != "delete":
        _put(sink, summary, "cloudtrail", key, data)
    if tamper:
        summary.tampered.append({"kind": tamper, "key": key})
    summary.events += len(recs)
    summary.json_bytes += len(data)
    return key_time, key, hashlib.sha256(data).hexdigest(), recs[0]["eventTime"], recs[-1]["eventTime"]


def _put(sink: Sink, summary: ArchiveSummary, kind: str, key: str, data: bytes, metadata: dict | None = None) -> None:
    blob = _gzip_compress(data, 1, mtime=0)
    if metadata:
        sink.put(key, blob, metadata)
    else:
        sink.put(key, blob)
    summary.keys[kind].append(key)
    summary.objects += 1
    summary.bytes += len(blob)


def _bucket(sink: Sink, org: Org) -> str:
    return getattr(sink, "bucket", None) or f"aws-cloudtrail-logs-{org.management}-{stable_hex(org.management, length=8)}"


def _write_digests(sink: Sink, summary: ArchiveSummary, org: Org, account: str, region: str, base: str,
                   delivered: list[tuple], t_start: int, t_end: int, rng: random.Random, org_id: str | None,
                   seed: int = 7, tampering: _Tamper | None = None) -> None:
    """Hourly digest files chaining the log files delivered in each hour, as CloudTrail writes them:
    hashes of the uncompressed content, signed (SHA256withRSA, signature in the object metadata)."""
    bucket, trail = _bucket(sink, org), "organization-trail" if org_id else "management-events"
    key_obj = signing.private_key(seed, region)
    fp = signing.key_fingerprint(seed, region)
    n = 0
    offset = 60 + rng.randrange(0, 120)
    last = max([t_end - 1] + [d[0] for d in delivered])
    prev: tuple[str, str, str] | None = None  # key, sha256, signature
    hour = t_start - t_start % 3600 - 3600  # the first digest ends just after the archive starts
    while hour <= last:
        lo, hi = hour + offset, hour + 3600 + offset
        files = [d for d in delivered if lo <= d[0] < hi]
        key = (f"{base}/{account}/CloudTrail-Digest/{region}/{_stamp(hi, '%Y/%m/%d')}/{account}_CloudTrail-Digest_"
               f"{region}_{trail}_{org.home}_{_stamp(hi, '%Y%m%dT%H%M%SZ')}.json.gz")
        doc = {
            "awsAccountId": account, "digestStartTime": _stamp(lo, "%Y-%m-%dT%H:%M:%SZ"),
            "digestEndTime": _stamp(hi, "%Y-%m-%dT%H:%M:%SZ"), "digestS3Bucket": bucket, "digestS3Object": key,
            "digestPublicKeyFingerprint": fp,
            "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": max((f[4] for f in files), default=None),
            "oldestEventTime": min((f[3] for f in files), default=None),
            "previousDigestS3Bucket": bucket if prev else None, "previousDigestS3Object": prev[0] if prev else None,
            "previousDigestHashValue": prev[1] if prev else None,
            "previousDigestHashAlgorithm": "SHA-256" if prev else None,
            "previousDigestSignature": prev[2] if prev else None,
            "logFiles": [{"s3Bucket": bucket, "s3Object": f[1], "hashValue": f[2], "hashAlgorithm": "SHA-256",
                          "newestEventTime": f[4], "oldestEventTime": f[3]} for f in files],
        }
        data = orjson.dumps(doc)
        meta = signed_metadata(key_obj, doc, data)
        action = tampering.digest_action(n) if tampering else None
        if action == "resign":  # same content, signed by a key that is not the region's
            summary.tampered.append({"kind": action, "key": key})
            _put(sink, summary, "digest", key, data, signed_metadata(signing.private_key(seed, region, "attacker"), doc, data))
        elif action == "drop-digest":
            summary.tampered.append({"kind": action, "key": key})
        else:
            _put(sink, summary, "digest", key, data, meta)
        prev = (key, hashlib.sha256(data).hexdigest(), meta["signature"])
        hour += 3600
        n += 1


#: What ``generate_archive(tamper=...)`` (``soclake synth --tamper``) can do to the first account/region stream.
TAMPER_KINDS = ("modify", "delete", "drop-digest", "resign")


class _Tamper:
    """Which log file (by delivery order) or digest (by hour) of the first stream each tamper kind hits."""

    DIGEST_TARGETS = {"drop-digest": 12, "resign": 16}  # hours into the chain: working hours, files listed

    def __init__(self, seed: int, kinds: Iterable[str]):
        self.kinds = list(dict.fromkeys(kinds))
        unknown = [k for k in self.kinds if k not in TAMPER_KINDS]
        if unknown:
            raise ValueError(f"unknown tamper kind(s) {unknown}; known: {list(TAMPER_KINDS)}")
        self.log_targets: dict[str, int] = {}

    def plan_logs(self, files: int) -> None:
        """Modify the file a third into the stream's deliveries, delete the one two thirds in."""
        self.log_targets = {"modify": files // 3, "delete": max(2 * files // 3, files // 3 + 1)}

    def log_action(self, index: int) -> str | None:
        return next((k for k, i in self.log_targets.items() if i == index and k in self.kinds), None)

    def digest_action(self, index: int) -> str | None:
        return next((k for k, i in self.DIGEST_TARGETS.items() if i == index and k in self.kinds), None)


def _write_guardduty(sink: Sink, summary: ArchiveSummary, org: Org, seed: int, regions: tuple[str, ...],
                     t_start: int, t_end: int, count: int, injections: list[Injection], prefix: str) -> None:
    """The delegated administrator's findings export: new findings within ~5 minutes, one file
    per region and 5-minute batch; one finding is exported again after an update."""
    rng = random.Random(f"soclake-synth:{seed}:guardduty")
    findings = benign_findings(rng, org.accounts, org.workloads(), regions, t_start, t_end, count)
    findings += [f for inj in injections for f in inj.findings]
    batches: dict[tuple[int, str], list[dict]] = {}
    for f in findings:  # delays and names derive from the findings, so scenarios leave other files alone
        t = _epoch(f["updatedAt"][:19] + "Z") + 60 + int(stable_hex(f["id"], f["updatedAt"], length=4), 16) % 240
        batches.setdefault((t - t % 300 + 300, f["region"]), []).append(f)
    root = "/".join(p for p in (prefix, "AWSLogs", org.security, "GuardDuty") if p)
    for (t, region), batch in sorted(batches.items()):
        batch.sort(key=itemgetter("updatedAt", "id"))
        uuid = stable_hex(seed, "gd-export", t, region)
        uuid = f"{uuid[:8]}-{uuid[8:12]}-4{uuid[13:16]}-{'89ab'[int(uuid[16], 16) & 3]}{uuid[17:20]}-{uuid[20:]}"
        key = f"{root}/{region}/{_stamp(t, '%Y/%m/%d')}/{uuid}.jsonl.gz"
        _put(sink, summary, "guardduty", key, b"".join(orjson.dumps(f) + b"\n" for f in batch))
        summary.findings += len(batch)
