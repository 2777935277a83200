"""The backfill's stages as named composite PTransforms; the same code paths as the local runner.

::

    ListLogObjects     walk(source, filters) exactly as `soclake ingest` lists, skipping what the
                       lake's ledger holds (same key and ETag); each object gets a shard number:
                       consecutive runs of ~shard_bytes of compressed input per (kind, account,
                       region, delivery day).
    WriteLake          group the listing (descriptions, never rows) by shard; one worker per shard
                       reads, normalises and writes its objects with the local runner's own
                       ObjectProcessor (pipeline.normalize + the streaming partition writer):
                       one zstd Parquet file per partition folder the shard touches, named
                       <table>/event_date=…/account_id=…/region=…/part-<run>-b<shard hash>-NNNNN.parquet
                       ObjectError (or a bug) → 'dead_letter' (quarantined with the reason);
                       unreadable → 'failed' (not the object's fault: retried by the next run).
                       Only file descriptions and ledger entries travel on.
    CommitLedger       once every file is written: one ledger commit naming every object
                       (ingested with rows and files, or quarantined with the reason) and every
                       file added, so a later local `soclake ingest` skips what the backfill did.

File names are deterministic (run id + shard, objects taken in key order), so a retried shard
overwrites its own files atomically; whatever a failed attempt staged that no entry names is
removed right after the commit. A job that dies before CommitLedger leaves files no
commit names; the next run (local or Beam) removes them first (``pipeline.ingest.recover``).
Clients are created in ``setup()`` from the settings the DoFns carry, never at import.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsList, TaggedOutput

from pipeline import aws, layout
from pipeline.errors import LakeError
from pipeline.ingest.workers import ObjectProcessor, ingested_entry
from pipeline.lake.ledger import INGESTED, QUARANTINED, Ledger, ObjectEntry
from pipeline.lake.staging import publish_committed, settle
from pipeline.lake.store import open_store
from pipeline.normalize import TABLES
from pipeline.sources import Filters, open_source, walk

NAMESPACE = "soclake"  # Beam metrics namespace
#: Compressed input per (kind, account, region, delivery day) that goes into one file per
#: partition: 256 MB of .json.gz is ~700k CloudTrail events, ~90 MB of Parquet.
DEFAULT_SHARD_BYTES = 256 << 20
REPORT_PREFIX = "_state/backfill/"

# output tags
OBJECTS, UNRECOGNISED, SUMMARY = "objects", "unrecognised", "summary"
DEAD_LETTER, FAILED = "dead_letter", "failed"
ENTRIES, FILES = "entries", "files"


@dataclass(frozen=True)
class BackfillConfig:
    """What every DoFn needs, picklable: URIs and settings, never clients."""

    source: str
    lake: str
    run_id: str
    ingested_at: dt.datetime
    filters: Filters = field(default_factory=Filters)
    aws: aws.AwsSettings = field(default_factory=aws.AwsSettings)
    retry_quarantined: bool = False
    shard_bytes: int = DEFAULT_SHARD_BYTES

    def _s3(self):
        return aws.s3_client(self.aws)

    def open_source(self):
        return open_source(self.source, self._s3)

    def open_store(self):
        return open_store(self.lake, self._s3)


class Listed(NamedTuple):
    """An object to ingest: why (new / changed / retry) and the shard its rows are written with."""

    obj: layout.LogObject
    uri: str
    why: str
    shard: int


class DeadLetter(NamedTuple):
    item: Listed
    reason: str
    etag: str = ""  # the object's ETag (computed by its reader when the listing left it empty)


def _count(name: str, n: int = 1) -> None:
    Metrics.counter(NAMESPACE, name).inc(n)


# -- ListLogObjects ---------------------------------------------------------------------------
class _WalkDoFn(beam.DoFn):
    """One source URI in; the objects the ledger does not hold yet out, shard by shard, largest first."""

    def __init__(self, cfg: BackfillConfig):
        self.cfg = cfg

    def setup(self):
        self.source = self.cfg.open_source()
        self.store = self.cfg.open_store()

    def process(self, _uri):
        cfg = self.cfg
        ledger = Ledger.load(self.store)
        if hasattr(self.source, "remember"):
            self.source.remember(ledger.known, ledger.holds)  # unchanged files are not hashed again, new ones by their reader
        listed, to_ingest, skipped = collections.Counter(), collections.Counter(), 0
        group, group_bytes = None, 0
        shards: dict[str, list[Listed]] = {}
        for item in walk(self.source, cfg.filters):
            if isinstance(item, layout.Unrecognised):
                listed["unrecognised"] += 1
                _count("listed_unrecognised")
                yield TaggedOutput(UNRECOGNISED, (self.source.object_uri(item.key), item.reason))
                continue
            listed[item.kind] += 1
            _count(f"listed_{item.kind}")
            if item.kind not in layout.INGESTED_KINDS:
                continue  # insights: recognised and counted, not ingested yet
            uri = self.source.object_uri(item.key)
            why = ledger.status(uri, item.etag, cfg.retry_quarantined)
            if why is None:
                skipped += 1
                _count("skipped_already_ingested")
                continue
            to_ingest[why] += 1
            _count(f"to_ingest_{why}")
            # Keys of one account/region/day are listed together and in time order, so a running
            # byte count cuts them into consecutive time slices of about shard_bytes each.
            g = (item.kind, item.account, item.region, item.date)
            if g != group:
                group, group_bytes = g, 0
            it = Listed(item, uri, why, group_bytes // cfg.shard_bytes)
            shards.setdefault(shard_key(it), []).append(it)
            group_bytes += item.size
        # Largest shards first: runners hand shards to workers in the order they arrive (the
        # DirectRunner deals them round-robin, a work queue takes them as workers free up), and
        # the small ones last even out the load. In listing order, a day's small tail and the
        # tiny digest shards fell unevenly: one of 2 workers got 107 MB of the 177 MB archive.
        for items in sorted(shards.values(), key=lambda its: -sum(i.obj.size for i in its)):
            yield from items
        yield TaggedOutput(SUMMARY, {"listed": dict(listed), "to_ingest": dict(to_ingest), "skipped": skipped})


class ListLogObjects(beam.PTransform):
    """PBegin → {'objects': Listed, 'unrecognised': (uri, reason), 'summary': counts of the walk}."""

    def __init__(self, cfg: BackfillConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin):
        walked = (
            pbegin
            | "Source" >> beam.Create([self.cfg.source])
            | "Walk" >> beam.ParDo(_WalkDoFn(self.cfg)).with_outputs(UNRECOGNISED, SUMMARY, main=OBJECTS)
        )
        # One worker lists; the reads fan out when WriteLake groups the listing by shard.
        return {OBJECTS: walked[OBJECTS], UNRECOGNISED: walked[UNRECOGNISED], SUMMARY: walked[SUMMARY]}


# -- WriteLake ------------------------------------------------------------------------------
def shard_key(item: Listed) -> str:
    """The shard an object's rows are written with: its (kind, account, region, delivery day) and slice."""
    o = item.obj
    return f"{o.kind}/{o.account}/{o.region}/{o.date}/{item.shard}"


def shard_prefix(run_id: str, key: str) -> str:
    """File name prefix of a shard's files: deterministic, so a retried shard overwrites its own files."""
    return f"part-{run_id}-b{hashlib.sha1(key.encode()).hexdigest()[:10]}"


class _WriteShardDoFn(beam.DoFn):
    """One shard's objects → read, normalise and write them (the local runner's ObjectProcessor).

    Only the descriptions of the files and the objects' ledger entries leave the worker; the rows
    never cross a shuffle. Memory is the writer's buffer budget plus the object being normalised.
    """

    def __init__(self, cfg: BackfillConfig):
        self.cfg = cfg
        self.ingested = Metrics.counter(NAMESPACE, "objects_ingested")
        self.quarantined = Metrics.counter(NAMESPACE, "objects_quarantined")
        self.failed = Metrics.counter(NAMESPACE, "objects_failed")
        self.bytes_read = Metrics.counter(NAMESPACE, "bytes_read")
        self.files = Metrics.counter(NAMESPACE, "files_written")
        self.bytes = Metrics.counter(NAMESPACE, "parquet_bytes")
        self.rows = Metrics.counter(NAMESPACE, "rows_written")

    def setup(self):
        from pipeline.tuning import tune_malloc

        tune_malloc()  # as the local runner's workers: a third of the time went to page faults without it
        self.source = self.cfg.open_source()
        self.store = self.cfg.open_store()

    def process(self, group):
        from pipeline.ingest import DEFAULT_BUFFER_BYTES, assign_files

        key, items = group
        cfg = self.cfg
        proc = ObjectProcessor(self.store, shard_prefix(cfg.run_id, key), DEFAULT_BUFFER_BYTES // 2)
        done, listed = [], {}
        try:
            for item in sorted(items, key=lambda it: it.obj.key):  # same order, same file names on a retry
                listed[item.uri] = item
                yield from self._outcomes(proc.read_and_process(self.source, item.obj, item.uri, cfg.ingested_at),
                                          listed, done)
            yield from self._outcomes(proc.finish(), listed, done)
            files = proc.flush()
        except BaseException:
            proc.abort()
            raise
        assign_files(done, files)
        for e in done:
            yield TaggedOutput(ENTRIES, e)
        for f in files:
            self.files.inc()
            self.bytes.inc(f.bytes)
            self.rows.inc(f.rows)
            yield f


    def _outcomes(self, results, listed: dict, done: list):
        """Count and route finished objects: failed, dead-lettered, or ingested (entries kept in ``done``)."""
        for res in results:
            item = listed[res.uri]
            if res.failed is not None:  # could not read: not the object's fault, retried by the next run
                self.failed.inc()
                yield TaggedOutput(FAILED, (item.uri, res.failed))
            elif res.error is not None:
                self.quarantined.inc()
                yield TaggedOutput(DEAD_LETTER, DeadLetter(item, res.error, res.object_etag))
            else:
                self.ingested.inc()
                self.bytes_read.inc(res.size)
                _count(f"events_{TABLES[item.obj.kind]}", res.rows)
                if res.rejected:
                    _count("records_rejected", len(res.rejected))
                done.append(ingested_entry(res))


class WriteLake(beam.PTransform):
    """Listed → {'files': WrittenFile, 'entries': ObjectEntry, 'dead_letter': DeadLetter, 'failed': (uri, reason)}.

    Groups the *listing* by shard (small descriptions, never rows); each shard is read,
    normalised and written by one worker into one file per partition folder it touches.
    Unusable objects go to 'dead_letter' (quarantined with the reason); unreadable ones to
    'failed' (not the object's fault: retried by the next run).
    """

    def __init__(self, cfg: BackfillConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, objects):
        out = (
            objects
            | "KeyByShard" >> beam.Map(lambda it: (shard_key(it), it))
            | "GroupByShard" >> beam.GroupByKey()
            | "ReadNormalizeWrite" >> beam.ParDo(_WriteShardDoFn(self.cfg)).with_outputs(
                ENTRIES, DEAD_LETTER, FAILED, main=FILES)
        )
        return {FILES: out[FILES], ENTRIES: out[ENTRIES], DEAD_LETTER: out[DEAD_LETTER], FAILED: out[FAILED]}


# -- CommitLedger -----------------------------------------------------------------------------
def quarantine_entry(d: DeadLetter) -> ObjectEntry:
    o = d.item.obj
    return ObjectEntry(d.item.uri, o.etag or d.etag, o.size, o.kind, QUARANTINED, reason=d.reason, stat=o.stat)


class _CommitDoFn(beam.DoFn):
    def __init__(self, cfg: BackfillConfig):
        self.cfg = cfg

    def setup(self):
        self.store = self.cfg.open_store()

    def process(self, entries, files, unrecognised, failed, summaries):
        from pipeline.ingest import retract  # the local runner's own retraction of changed objects

        cfg, store = self.cfg, self.store
        ledger = Ledger.load(store, cfg.run_id)
        # A retried commit (the first attempt died after writing it) must not commit twice.
        if not any(e.run == cfg.run_id for e in ledger.objects.values()):
            written = {f.path for f in files}
            missing = {p for e in entries for p in e.files} - written
            if missing:
                raise LakeError(f"{len(missing)} files named by objects were not written, e.g. {sorted(missing)[0]}")
            changed = {e.uri for e in entries
                       if (old := ledger.entry(e.uri)) is not None and old.status == INGESTED and old.etag != e.etag}
            added, removed, replaced = sorted(written), [], {}
            if changed:
                r_added, removed, replaced = retract(store, ledger, changed, cfg.run_id)
                added += r_added
            ledger.commit(entries, added, removed, replaced)
            publish_committed(store, added, removed)
            settle(store, ledger)  # staged files no commit names: left by retried shards
            ledger.compact()
        else:  # committed by an attempt that died: finish its publishing
            settle(store, ledger)
        report = _report(cfg, ledger, entries, files, unrecognised, failed, summaries)
        store.put(f"{REPORT_PREFIX}{cfg.run_id}.json", orjson.dumps(report, option=orjson.OPT_INDENT_2))
        yield report


def _report(cfg, ledger, entries, files, unrecognised, failed, summaries) -> dict:
    listed, to_ingest, skipped = collections.Counter(), collections.Counter(), 0
    for s in summaries:
        listed.update(s["listed"])
        to_ingest.update(s["to_ingest"])
        skipped += s["skipped"]
    ingested = [e for e in entries if e.status == INGESTED]
    quarantined = sorted((e.uri, e.reason) for e in entries if e.status == QUARANTINED)
    events = collections.Counter()
    for e in ingested:
        events[TABLES[e.kind]] += e.rows
    return {
        "run_id": cfg.run_id,
        "source": cfg.source,
        "lake": cfg.lake,
        "listed": dict(listed),
        "skipped_already_ingested": skipped,
        "to_ingest": dict(to_ingest),
        "ingested_objects": len(ingested),
        "events": dict(events),
        "bytes_read": sum(e.size for e in ingested),
        "files_written": len(files),
        "parquet_bytes": sum(f.bytes for f in files),
        "quarantined": [{"object": u, "reason": r} for u, r in quarantined],
        "failed": [{"object": u, "reason": r} for u, r in sorted(failed)],
        "unrecognised": [{"key": k, "reason": r} for k, r in sorted(unrecognised)],
        "rejected_records": sum(e.rejected for e in ingested),
        "rejected": [{"object": e.uri, **x} for e in sorted(ingested, key=lambda e: e.uri) for x in e.rejects],
        "still_quarantined": len(ledger.quarantined()) - len(quarantined),
        "ok": not quarantined and not failed and not any(e.rejected for e in ingested),
    }


class CommitLedger(beam.PTransform):
    """{'entries', 'dead_letter', 'files', 'unrecognised', 'failed', 'summary'} → the run report (one dict).

    The files and the other lists are side inputs, so the commit runs only once all of them
    are complete: every data file is durable before the ledger names it.
    """

    def __init__(self, cfg: BackfillConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, pcolls):
        quarantined = pcolls[DEAD_LETTER] | "QuarantineEntries" >> beam.Map(quarantine_entry)
        entries = (
            (pcolls[ENTRIES], quarantined)
            | "AllEntries" >> beam.Flatten()
            | "OneList" >> beam.combiners.ToList()
        )
        return entries | "Commit" >> beam.ParDo(
            _CommitDoFn(self.cfg), files=AsList(pcolls[FILES]), unrecognised=AsList(pcolls[UNRECOGNISED]),
            failed=AsList(pcolls[FAILED]), summaries=AsList(pcolls[SUMMARY]))


def build(p: beam.Pipeline, cfg: BackfillConfig) -> dict:
    """The whole backfill on ``p``; returns every stage's outputs (tests assert on them)."""
    listed = p | "ListLogObjects" >> ListLogObjects(cfg)
    lake = listed[OBJECTS] | "WriteLake" >> WriteLake(cfg)
    report = {
        ENTRIES: lake[ENTRIES], DEAD_LETTER: lake[DEAD_LETTER], FILES: lake[FILES],
        UNRECOGNISED: listed[UNRECOGNISED], FAILED: lake[FAILED], SUMMARY: listed[SUMMARY],
    } | "CommitLedger" >> CommitLedger(cfg)
    return {**listed, **lake, "report": report}
