"""The backfill's stages as named composite PTransforms; the same code paths as the local runner.

::

    ListLogObjects     walk(source, filters) exactly as `soclake ingest` lists, skipping what the
                       lake's ledger holds (same key and ETag); each object gets a shard number:
                       consecutive runs of ~shard_bytes of compressed input per (kind, account,
                       region, delivery day). Reshuffled so the reads spread over the workers.
    ReadAndNormalize   fetch, then pipeline.normalize.normalize → one Arrow table per object.
                       ObjectError (or a bug) → 'dead_letter' (quarantined with the reason);
                       unreadable → 'failed' (not the object's fault: retried by the next run).
    WriteLake          split rows by partition folder, key by (folder, shard), GroupByKey, and
                       stream each group into one zstd Parquet file with the lake's schema:
                       <table>/event_date=…/account_id=…/region=…/part-<run>-b<shard>.parquet
    CommitLedger       once every file is written: one ledger commit naming every object
                       (ingested with rows and files, or quarantined with the reason) and every
                       file added, so a later local `soclake ingest` skips what the backfill did.

File names are deterministic (run id + shard), so a retried bundle overwrites its own file
atomically instead of leaving a second copy. A job that dies before CommitLedger leaves files no
commit names; the next run (local or Beam) removes them first (``pipeline.ingest.recover``).
Clients are created in ``setup()`` from the settings the DoFns carry, never at import.
"""

from __future__ import annotations

import collections
import datetime as dt
import typing
from dataclasses import dataclass, field
from typing import NamedTuple

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsList, TaggedOutput

from pipeline import aws, layout, schema
from pipeline.errors import LakeError, ObjectError
from pipeline.lake.ledger import INGESTED, QUARANTINED, Ledger, ObjectEntry
from pipeline.lake.staging import publish_committed, settle, staged
from pipeline.lake.store import open_store
from pipeline.lake.writer import PARQUET_OPTIONS, PARTITION_COLUMNS, ROW_GROUP_ROWS, WrittenFile, split_partitions
from pipeline.normalize import TABLES, normalize_object
from pipeline.sources import Filters, open_source, walk

NAMESPACE = "soclake"  # Beam metrics namespace
#: Compressed input per (kind, account, region, delivery day) that goes into one file per
#: partition: 256 MB of .json.gz is ~700k CloudTrail events, ~90 MB of Parquet.
DEFAULT_SHARD_BYTES = 256 << 20
REPORT_PREFIX = "_state/backfill/"

# output tags
OBJECTS, UNRECOGNISED, SUMMARY = "objects", "unrecognised", "summary"
TABLES_OUT, DEAD_LETTER, FAILED = "tables", "dead_letter", "failed"
ROWS, ENTRIES, FILES = "rows", "entries", "files"


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


class Normalized(NamedTuple):
    item: Listed
    table: pa.Table
    rejected: tuple = ()  # records left out (pipeline.normalize.Rejected), as the local runner does
    sha256: str | None = None  # of the uncompressed content, kept in the ledger for soclake verify


class DeadLetter(NamedTuple):
    item: Listed
    reason: str


def data_file(rel: str, run_id: str, shard: int) -> str:
    """The one file a run writes for a partition folder and shard."""
    return f"{rel}/part-{run_id}-b{shard:04d}.parquet"


def _count(name: str, n: int = 1) -> None:
    Metrics.counter(NAMESPACE, name).inc(n)


class ArrowTableCoder(beam.coders.Coder):
    """Arrow IPC stream, LZ4-compressed: ~330 bytes/CloudTrail event through the shuffle (4x smaller
    than raw Arrow, ~2 µs/event to encode and decode; zstd is 40% smaller and 4x slower)."""

    _OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")

    def encode(self, value: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, value.schema, options=self._OPTIONS) as w:
            w.write_table(value)
        return sink.getvalue().to_pybytes()

    def decode(self, encoded: bytes) -> pa.Table:
        return pa.ipc.open_stream(encoded).read_all()

    def estimate_size(self, value: pa.Table) -> int:
        return value.nbytes  # the default would encode every element once more just to measure it

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return pa.Table


beam.coders.registry.register_coder(pa.Table, ArrowTableCoder)


# -- ListLogObjects ---------------------------------------------------------------------------
class _WalkDoFn(beam.DoFn):
    """One source URI in; the objects the ledger does not hold yet out (lazily, as listed)."""

    def __init__(self, cfg: BackfillConfig):
        self.cfg = cfg

    def setup(self):
        self.source = self.cfg.open_source()
        self.store = self.cfg.open_store()

    def process(self, _uri):
        cfg = self.cfg
        ledger = Ledger.load(self.store)
        if hasattr(self.source, "remember"):
            self.source.remember(ledger.known)  # unchanged local files are not hashed again
        listed, to_ingest, skipped = collections.Counter(), collections.Counter(), 0
        group, group_bytes = None, 0
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
            yield Listed(item, uri, why, group_bytes // cfg.shard_bytes)
            group_bytes += item.size
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
        # One worker lists; the reads fan out after the reshuffle.
        objects = walked[OBJECTS] | "Spread" >> beam.Reshuffle()
        return {OBJECTS: objects, UNRECOGNISED: walked[UNRECOGNISED], SUMMARY: walked[SUMMARY]}


# -- ReadAndNormalize -------------------------------------------------------------------------
class _ReadNormalizeDoFn(beam.DoFn):
    def __init__(self, cfg: BackfillConfig):
        self.cfg = cfg
        self.ingested = Metrics.counter(NAMESPACE, "objects_ingested")
        self.quarantined = Metrics.counter(NAMESPACE, "objects_quarantined")
        self.failed = Metrics.counter(NAMESPACE, "objects_failed")
        self.bytes_read = Metrics.counter(NAMESPACE, "bytes_read")

    def setup(self):
        self.source = self.cfg.open_source()

    def process(self, item: Listed):
        try:
            data = self.source.read(item.obj.key)
        except Exception as e:  # could not read: not the object's fault, retried by the next run
            self.failed.inc()
            yield TaggedOutput(FAILED, (item.uri, f"could not read: {e}"))
            return
        try:
            out = normalize_object(data, item.obj, item.uri, self.cfg.ingested_at)
        except ObjectError as e:
            reason = str(e)
        except Exception as e:  # a bug must not stop the run (same words as the local runner's workers)
            reason = f"{type(e).__name__}: {e} (unexpected: please report this object to soclake)"
        else:
            self.ingested.inc()
            self.bytes_read.inc(len(data))
            _count(f"events_{TABLES[item.obj.kind]}", out.table.num_rows)
            if out.rejected:
                _count("records_rejected", len(out.rejected))
            yield Normalized(item, out.table, tuple(out.rejected), out.sha256)
            return
        self.quarantined.inc()
        yield TaggedOutput(DEAD_LETTER, DeadLetter(item, reason))


class ReadAndNormalize(beam.PTransform):
    """Listed → {'tables': Normalized, 'dead_letter': DeadLetter, 'failed': (uri, reason)}."""

    def __init__(self, cfg: BackfillConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, objects):
        out = objects | "FetchNormalize" >> beam.ParDo(_ReadNormalizeDoFn(self.cfg)).with_outputs(
            DEAD_LETTER, FAILED, main=TABLES_OUT)
        return {TABLES_OUT: out[TABLES_OUT], DEAD_LETTER: out[DEAD_LETTER], FAILED: out[FAILED]}


# -- WriteLake --------------------------------------------------------------------------------
class _KeyByPartitionDoFn(beam.DoFn):
    """An object's rows keyed by (partition folder, shard), plus its ledger entry naming those files."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def process(self, n: Normalized):
        obj, table_name = n.item.obj, TABLES[n.item.obj.kind]
        files = []
        for rel, rows in split_partitions(table_name, n.table):
            files.append(data_file(rel, self.run_id, n.item.shard))
            yield (rel, n.item.shard), rows.drop_columns(list(PARTITION_COLUMNS))
        entry = ObjectEntry(n.item.uri, obj.etag, obj.size, obj.kind, INGESTED, rows=n.table.num_rows, files=files,
                            stat=obj.stat,
                            sha256=n.sha256)
        entry.reject_records(list(n.rejected))
        yield TaggedOutput(ENTRIES, entry)


class _WritePartitionDoFn(beam.DoFn):
    """One (folder, shard) group → one Parquet file, written in row groups as the rows stream in."""

    def __init__(self, cfg: BackfillConfig):
        self.cfg = cfg
        self.files = Metrics.counter(NAMESPACE, "files_written")
        self.bytes = Metrics.counter(NAMESPACE, "parquet_bytes")
        self.rows = Metrics.counter(NAMESPACE, "rows_written")

    def setup(self):
        self.store = self.cfg.open_store()

    def process(self, group):
        (rel, shard), chunks = group
        table_name = rel.split("/", 1)[0]
        path = data_file(rel, self.cfg.run_id, shard)
        tmp = self.store.begin(staged(path))
        try:
            rows = self._write(tmp, table_name, chunks)
            size = self.store.publish(tmp, staged(path))  # into place only once the ledger commit names it
        finally:
            self.store.abort(tmp)  # no-op once published
        self.files.inc()
        self.bytes.inc(size)
        self.rows.inc(rows)
        yield WrittenFile(table_name, path, rows, size)

    @staticmethod
    def _write(tmp: str, table_name: str, chunks: typing.Iterable[pa.Table]) -> int:
        written = 0
        pending: list[pa.Table] = []
        pending_rows = 0
        with pq.ParquetWriter(tmp, schema.arrow_schema(table_name, with_partitions=False), **PARQUET_OPTIONS) as w:
            for chunk in chunks:
                pending.append(chunk)
                pending_rows += chunk.num_rows
                if pending_rows >= ROW_GROUP_ROWS:  # full row groups only; the rest waits
                    rows = pa.concat_tables(pending)
                    full = rows.num_rows - rows.num_rows % ROW_GROUP_ROWS
                    w.write_table(rows.slice(0, full), row_group_size=ROW_GROUP_ROWS)
                    written += full
                    pending = [rows.slice(full)]
                    pending_rows = rows.num_rows - full
            if pending_rows:
                w.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                written += pending_rows
        return written


class WriteLake(beam.PTransform):
    """Normalized → {'files': WrittenFile, 'entries': ObjectEntry of each ingested object}."""

    def __init__(self, cfg: BackfillConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, normalized):
        keyed = normalized | "KeyByPartition" >> beam.ParDo(_KeyByPartitionDoFn(self.cfg.run_id)).with_output_types(
            tuple[tuple[str, int], pa.Table]).with_outputs(ENTRIES, main=ROWS)
        files = (
            keyed[ROWS]
            | "GroupByPartition" >> beam.GroupByKey()
            | "WriteParquet" >> beam.ParDo(_WritePartitionDoFn(self.cfg))
        )
        return {FILES: files, ENTRIES: keyed[ENTRIES]}


# -- CommitLedger -----------------------------------------------------------------------------
def quarantine_entry(d: DeadLetter) -> ObjectEntry:
    o = d.item.obj
    return ObjectEntry(d.item.uri, o.etag, o.size, o.kind, QUARANTINED, reason=d.reason, stat=o.stat)


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
    read = listed[OBJECTS] | "ReadAndNormalize" >> ReadAndNormalize(cfg)
    lake = read[TABLES_OUT] | "WriteLake" >> WriteLake(cfg)
    report = {
        ENTRIES: lake[ENTRIES], DEAD_LETTER: read[DEAD_LETTER], FILES: lake[FILES],
        UNRECOGNISED: listed[UNRECOGNISED], FAILED: read[FAILED], SUMMARY: listed[SUMMARY],
    } | "CommitLedger" >> CommitLedger(cfg)
    return {**listed, **read, **lake, "report": report}
