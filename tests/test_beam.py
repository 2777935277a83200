"""The Beam backfill: each stage with TestPipeline, then the whole pipeline against the local runner.

Equivalence is the contract: over the same archive (bad objects included) the DirectRunner and
`soclake ingest` must leave the same rows, the same quarantine and the same alerts, and a later
local run on a Beam-written lake must find nothing left to do.
"""

import datetime as dt
import gzip
import os
import time

import duckdb
import pyarrow.parquet as pq
import pytest

beam = pytest.importorskip("apache_beam")

from apache_beam.metrics.metric import MetricsFilter  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline  # noqa: E402
from apache_beam.testing.util import assert_that, equal_to  # noqa: E402

from pipeline import aws, layout, schema, views  # noqa: E402
from pipeline.beam import backfill  # noqa: E402
from pipeline.beam.transforms import (  # noqa: E402
    DEAD_LETTER,
    ENTRIES,
    FAILED,
    FILES,
    OBJECTS,
    SUMMARY,
    UNRECOGNISED,
    BackfillConfig,
    Listed,
    ListLogObjects,
    WriteLake,
    _CommitDoFn,
    shard_key,
    shard_prefix,
)
from pipeline.cli import backfill as backfill_cli  # noqa: E402
from pipeline.detect.engine import detect  # noqa: E402
from pipeline.detect.rules import load_rules  # noqa: E402
from pipeline.errors import ConfigError  # noqa: E402
from pipeline.ingest import IngestOptions, ingest  # noqa: E402
from pipeline.lake import Ledger, LocalStore, S3Store  # noqa: E402
from pipeline.lake.ledger import INGESTED, STATE_PREFIX, ObjectEntry  # noqa: E402
from pipeline.lake.staging import staged  # noqa: E402
from pipeline.sources import Filters, LocalSource, S3Source  # noqa: E402
from pipeline.synth import DirSink, S3Sink, generate_archive  # noqa: E402
from pipeline.synth.records import make_cloudtrail_record  # noqa: E402
from tests.archive import ct_bytes, ct_key, records_for  # noqa: E402
from tests.test_file_stats import assert_footers_match_rows  # noqa: E402

IN_MEMORY = ["--runner=DirectRunner"]
MULTI = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2",
         "--default_sdk_harness_log_level=ERROR"]
NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


def cfg_for(source, lake, **kw):
    return BackfillConfig(source=str(source), lake=str(lake), run_id=kw.pop("run_id", "20261128T000000000000Z-beef"),
                          ingested_at=NOW, **kw)


def counters(result) -> dict:
    found = result.metrics().query(MetricsFilter().with_namespace("soclake"))["counters"]
    return {c.key.metric.name: c.committed for c in found}


def listed(archive, key, shard=0, why="new"):
    obj = layout.classify(key, os.path.getsize(archive.root / key), "etag-" + key[-12:])
    return Listed(obj, str(archive.root / key), why, shard)


# -- stages ----------------------------------------------------------------------------------
def test_list_log_objects_walks_like_the_local_runner_and_skips_the_ledger(archive, tmp_path):
    held = ct_key(hhmm="0900", uniq="held")
    keys = [held] + [ct_key(hhmm=f"10{i}0", uniq=f"n{i}") for i in range(3)]
    keys.append(ct_key(region="eu-west-1", uniq="eu"))
    for k in keys:
        archive.put(k, ct_bytes(records_for(2)))
    archive.put("AWSLogs/111111111111/CloudTrail-Digest/us-east-1/2026/11/01/"
                "111111111111_CloudTrail-Digest_us-east-1_main_us-east-1_20261101T100000Z.json.gz", gzip.compress(b"{}"))
    archive.put("AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/01/README.txt", b"hello")
    archive.put(ct_key(day="2026-10-30", uniq="old"), ct_bytes(records_for(1, day="2026-10-30")))
    lake = tmp_path / "lake"
    src = LocalSource(archive.root)
    etag = next(o for o in src.list_all("AWSLogs/") if o.key == held).etag
    Ledger(LocalStore(lake)).commit([ObjectEntry(src.object_uri(held), etag, 1, "cloudtrail", INGESTED, rows=2)])
    # shards of one object's size: each object of an account/region/day opens the next; a new region restarts at 0
    size = min((archive.root / k).stat().st_size for k in keys[1:4])
    cfg = cfg_for(archive.root, lake, filters=Filters(since=dt.date(2026, 11, 1)), shard_bytes=size)

    p = BeamTestPipeline()
    out = p | ListLogObjects(cfg)
    assert_that(out[OBJECTS] | beam.Map(lambda x: (x.uri.rsplit("_", 1)[1], x.why, x.shard)),
                equal_to([("n0.json.gz", "new", 0), ("n1.json.gz", "new", 1), ("n2.json.gz", "new", 2),
                          ("eu.json.gz", "new", 0), ("20261101T100000Z.json.gz", "new", 0)]), label="objects")
    assert_that(out[UNRECOGNISED] | beam.Map(lambda u: (os.path.basename(u[0]), "naming pattern" in u[1])),
                equal_to([("README.txt", True)]), label="unrecognised")
    assert_that(out[SUMMARY], equal_to([{"listed": {"cloudtrail": 5, "cloudtrail-digest": 1, "unrecognised": 1},
                                         "to_ingest": {"new": 5}, "skipped": 1}]), label="summary")
    result = p.run()
    c = counters(result)
    assert (c["listed_cloudtrail"], c["skipped_already_ingested"], c["to_ingest_new"]) == (5, 1, 5)  # and the digest


def test_the_listing_hands_out_shards_largest_first_each_one_whole(archive, tmp_path):
    """Runners deal shards out in arrival order (the DirectRunner round-robin): largest first evens the load."""
    from apache_beam.pvalue import TaggedOutput

    from pipeline.beam.transforms import _WalkDoFn

    sizes = {("us-east-1", "2026-11-01"): 1, ("eu-west-1", "2026-11-01"): 40, ("us-east-1", "2026-11-02"): 9}
    for g, ((region, day), n) in enumerate(sizes.items()):
        for i in range(2):
            archive.put(ct_key(region=region, day=day, hhmm=f"10{i}0", uniq=f"g{g}o{i}"),
                        ct_bytes(records_for(n, day=day)))
    walker = _WalkDoFn(cfg_for(archive.root, tmp_path / "lake", filters=Filters(since=dt.date(2026, 11, 1))))
    walker.setup()
    out = [x for x in walker.process(str(archive.root)) if not isinstance(x, TaggedOutput)]
    keys = [shard_key(x) for x in out]
    order = list(dict.fromkeys(keys))
    assert [k.split("/")[2:4] for k in order] == [["eu-west-1", "2026-11-01"], ["us-east-1", "2026-11-02"],
                                                   ["us-east-1", "2026-11-01"]]
    assert keys == sorted(keys, key=order.index)  # each shard's objects together
    bytes_of = [sum(x.obj.size for x in out if shard_key(x) == k) for k in order]
    assert bytes_of == sorted(bytes_of, reverse=True)


def test_write_lake_sends_bad_objects_to_the_dead_letter_output_with_counters(archive, tmp_path):
    good = ct_key(hhmm="1000", uniq="good")
    bad = {
        ct_key(hhmm="1001", uniq="gzip"): (gzip.compress(b'{"Records": []}')[:-9], "corrupt gzip"),
        ct_key(hhmm="1002", uniq="trunc"): (gzip.compress(b'{"Records": [{"eventTime": "2026-11-01T10:00:00Z"'), "invalid JSON"),
    }
    notime = ct_key(hhmm="1003", uniq="notime")  # its one record is rejected, not the object
    archive.put(notime, ct_bytes([make_cloudtrail_record(eventTime=None)]))
    archive.put(good, ct_bytes(records_for(10)))
    for k, (data, _) in bad.items():
        archive.put(k, data)
    items = [listed(archive, k) for k in [good, notime, *bad]]
    gone = ct_key(hhmm="1004", uniq="gone")
    archive.put(gone, b"x")
    items.append(listed(archive, gone))
    os.unlink(archive.root / gone)  # listed, then deleted before the read

    p = BeamTestPipeline()
    out = p | beam.Create(items) | WriteLake(cfg_for(archive.root, tmp_path / "lake"))
    assert_that(out[ENTRIES] | beam.Map(lambda e: (os.path.basename(e.uri), e.rows, e.rejected)),
                equal_to([(good.rsplit("/", 1)[1], 10, 0), (notime.rsplit("/", 1)[1], 0, 1)]), label="entries")

    def reasons(dead):
        got = {os.path.basename(d.item.uri): d.reason for d in dead}
        expected = {k.rsplit("/", 1)[1]: why for k, (_, why) in bad.items()}
        assert got.keys() == expected.keys() and all(expected[k] in got[k] for k in got), got

    assert_that(out[DEAD_LETTER], reasons, label="dead letter")
    assert_that(out[FAILED] | beam.Map(lambda f: (os.path.basename(f[0]), f[1].startswith("could not read"))),
                equal_to([(gone.rsplit("/", 1)[1], True)]), label="failed")
    c = counters(p.run())
    assert (c["objects_ingested"], c["objects_quarantined"], c["objects_failed"], c["events_cloudtrail"]) == (2, 2, 1, 10)
    assert c["records_rejected"] == 1


def test_write_lake_writes_one_file_per_partition_and_shard_and_no_rows_cross_a_shuffle(archive, tmp_path):
    lake = tmp_path / "lake"
    # object a spans two event days (a late record of Oct 31); b shares a's Nov 1 partition and shard; c another shard
    a_recs = records_for(3, day="2026-11-01") + records_for(2, day="2026-10-31", hour=23, tag="late")
    specs = [("a", a_recs, 0), ("b", records_for(4, tag="b"), 0), ("c", records_for(5, tag="c"), 1)]
    items = []
    for uniq, recs, shard in specs:
        key = ct_key(uniq=uniq)
        archive.put(key, ct_bytes(recs))
        items.append(listed(archive, key, shard=shard))
    cfg = cfg_for(archive.root, lake)
    nov1 = "cloudtrail/event_date=2026-11-01/account_id=111111111111/region=us-east-1"
    oct31 = "cloudtrail/event_date=2026-10-31/account_id=111111111111/region=us-east-1"
    s0, s1 = (shard_prefix(cfg.run_id, shard_key(items[i])) for i in (0, 2))
    assert s0 != s1 and s0 == shard_prefix(cfg.run_id, shard_key(items[1]))
    # a shard numbers its files as it meets partitions: objects in key order, an object's partitions in order
    a_oct31, a_nov1, c_nov1 = f"{oct31}/{s0}-00001.parquet", f"{nov1}/{s0}-00002.parquet", f"{nov1}/{s1}-00001.parquet"

    p = BeamTestPipeline()
    out = p | beam.Create(items) | WriteLake(cfg)
    assert_that(out[FILES] | beam.Map(lambda f: (f.path, f.rows)),
                equal_to([(a_nov1, 7), (a_oct31, 2), (c_nov1, 5)]), label="files")
    assert_that(out[ENTRIES] | beam.Map(lambda e: (e.uri.rsplit("_", 1)[1], e.rows, sorted(e.files))),
                equal_to([("a.json.gz", 5, sorted([a_nov1, a_oct31])), ("b.json.gz", 4, [a_nov1]),
                          ("c.json.gz", 5, [c_nov1])]), label="entries")
    result = p.run()
    assert not (lake / "cloudtrail").exists()  # staged: nothing is visible before the ledger commit
    f = pq.ParquetFile(lake / staged(a_nov1))
    assert f.schema_arrow == schema.arrow_schema("cloudtrail", with_partitions=False)
    assert f.metadata.row_group(0).column(0).compression == "ZSTD"
    assert not list(lake.rglob("*.tmp"))
    # the only shuffle carries the listing: one element per object, never a table of rows
    assert counters(result)["rows_written"] == 14
    stages = [t for t in p.to_runner_api().components.transforms.values() if t.unique_name.startswith("WriteLake/")]
    shuffles = [t.unique_name for t in stages if t.spec.urn == "beam:transform:group_by_key:v1"]
    assert shuffles == ["WriteLake/GroupByShard"]


def test_a_retried_commit_does_not_commit_twice(tmp_path):
    lake = tmp_path / "lake"
    cfg = cfg_for(tmp_path, lake)
    fn = _CommitDoFn(cfg)
    fn.setup()
    entries = [ObjectEntry("/x/a.json.gz", "e", 1, "cloudtrail", "quarantined", reason="bad")]
    first = list(fn.process(entries, [], [], [], []))
    again = list(fn.process(entries, [], [], [], []))
    assert len(LocalStore(lake).list(STATE_PREFIX)) == 1
    assert first[0]["quarantined"] == again[0]["quarantined"] == [{"object": "/x/a.json.gz", "reason": "bad"}]


# -- the whole pipeline against the local runner ---------------------------------------------
@pytest.fixture(scope="module")
def mixed_archive(tmp_path_factory):
    """~5k CloudTrail events with every attack scenario, GuardDuty findings, and bad objects."""
    root = tmp_path_factory.mktemp("beam") / "logs"
    summary = generate_archive(DirSink(root), seed=3, accounts=2, days=2, events=5000, events_per_object=250,
                               guardduty_findings=20, scenarios=("all",))
    sink = DirSink(root)
    sink.put(ct_key(hhmm="1001", uniq="gzip"), gzip.compress(b'{"Records": []}')[:-9])
    sink.put(ct_key(hhmm="1002", uniq="trunc"), gzip.compress(b'{"Records": [{"eventTime": "2026-11-01T10:00:00Z"'))
    sink.put(ct_key(hhmm="1003", uniq="notime"), ct_bytes([make_cloudtrail_record(eventTime=None)]))
    sink.put("AWSLogs/notes/x.txt", b"x")
    return root, summary


def _columns(table):
    return ", ".join(f'"{f.name}"' for f in schema.arrow_schema(table) if f.name != "ingested_at")


def assert_same_lake(a, b):
    con = duckdb.connect()
    views.register(con, str(a), prefix="a_")
    views.register(con, str(b), prefix="b_")
    for table in ("cloudtrail", "guardduty"):
        cols = _columns(table)
        n = con.execute(f"SELECT count(*) FROM a_{table}").fetchone()[0]
        assert n and n == con.execute(f"SELECT count(*) FROM b_{table}").fetchone()[0], table
        for x, y in (("a", "b"), ("b", "a")):
            diff = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM {x}_{table} EXCEPT ALL "
                               f"SELECT {cols} FROM {y}_{table})").fetchone()[0]
            assert diff == 0, f"{table}: {diff} rows of {x} not in {y}"
    qa = {e.uri: e.reason for e in Ledger.load(LocalStore(a)).quarantined()}
    qb = {e.uri: e.reason for e in Ledger.load(LocalStore(b)).quarantined()}
    assert len(qa) == 2 and qa == qb
    ra = {e.uri: e.rejects for e in Ledger.load(LocalStore(a)).objects.values() if e.rejected}
    rb = {e.uri: e.rejects for e in Ledger.load(LocalStore(b)).objects.values() if e.rejected}
    assert len(ra) == 1 and ra == rb


def alert_ids(lake):
    rules = [r for r in load_rules() if r.enabled]
    report = detect(str(lake), LocalStore(lake), rules)
    assert report.ok, report.errors
    return {a.id for a in report.new}


@pytest.fixture(scope="module")
def local_lake(mixed_archive, tmp_path_factory):
    lake = tmp_path_factory.mktemp("local") / "lake"
    report = ingest(LocalSource(mixed_archive[0]), LocalStore(lake), IngestOptions(workers=2))
    assert len(report.quarantined) == 2 and report.rejected_records == 1
    return lake, report


@pytest.mark.parametrize("mode", ["multi_processing", "in_memory"])
def test_backfill_equals_the_local_runner_and_later_local_runs_skip_it(mode, mixed_archive, local_lake, tmp_path):
    root, summary = mixed_archive
    local_lake, local_report = local_lake
    lake = tmp_path / "beam-lake"
    report = backfill.run_backfill(str(root), str(lake), Filters(), MULTI if mode == "multi_processing" else IN_MEMORY)
    assert report["events"]["cloudtrail"] == summary.events and report["events"]["guardduty"] == summary.findings
    assert len(report["quarantined"]) == 2 and not report["ok"] and report["failed"] == []
    assert report["rejected_records"] == 1 and "no eventTime" in report["rejected"][0]["reason"]
    assert report["unrecognised"] == [{"key": k, "reason": r} for k, r in sorted(local_report.unrecognised)] != []
    assert (report["listed"], report["to_ingest"]) == (dict(local_report.listed), dict(local_report.to_ingest))
    assert report["metrics"]["objects_quarantined"] == 2
    assert_same_lake(local_lake, lake)
    assert assert_footers_match_rows(lake) > 0  # the footer stats detection plans from (tests/test_file_stats.py)

    # the ledger names exactly the files on disk, and a local incremental run has nothing to do
    ledger = Ledger.load(LocalStore(lake))
    assert ledger.files == {p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet")}
    again = ingest(LocalSource(root), LocalStore(lake), IngestOptions(workers=1))
    assert again.to_ingest == {} and again.orphans_removed == 0
    assert again.skipped == report["ingested_objects"] + 2

    if mode == "multi_processing":  # detection once is enough: the rows are already proven equal
        assert alert_ids(lake) == alert_ids(local_lake) != set()


def test_a_changed_object_replaces_its_rows_and_orphans_are_removed(archive, tmp_path):
    lake = tmp_path / "lake"
    archive.put(ct_key(uniq="keep"), ct_bytes(records_for(5, tag="keep")))
    archive.put(ct_key(uniq="change"), ct_bytes(records_for(5, tag="old")))
    ingest(LocalSource(archive.root), LocalStore(lake), IngestOptions(workers=1))
    time.sleep(0.01)
    archive.put(ct_key(uniq="change"), ct_bytes(records_for(3, tag="new")))
    orphan = lake / "cloudtrail/event_date=2026-11-01/account_id=111111111111/region=us-east-1/part-dead-b0000.parquet"
    orphan.write_bytes(b"left by a job that died before its commit")
    report = backfill.run_backfill(str(archive.root), str(lake), Filters(), IN_MEMORY)
    assert (report["to_ingest"], report["orphans_removed"], report["skipped_already_ingested"]) == ({"changed": 1}, 1, 1)
    ids = sorted(r[0].split("-")[0] for r in views.connect(str(lake)).execute("SELECT eventID FROM cloudtrail").fetchall())
    assert ids == ["keep"] * 5 + ["new"] * 3
    assert Ledger.load(LocalStore(lake)).files == {p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet")}


def test_s3_source_and_s3_lake_on_the_moto_server(s3, bucket, aws_settings):
    summary = generate_archive(S3Sink(s3, bucket), seed=4, accounts=1, days=1, events=1500, events_per_object=250,
                               guardduty_findings=5, prefix="trail")
    s3.put_object(Bucket=bucket, Key=ct_key(uniq="bad", prefix="trail/"), Body=b"not gzip")
    s3.create_bucket(Bucket=bucket + "-lake")
    source, lake = f"s3://{bucket}/trail", f"s3://{bucket}-lake/soc"
    report = backfill.run_backfill(source, lake, Filters(), IN_MEMORY, aws_settings=aws_settings)
    assert report["events"] == {"cloudtrail": summary.events, "guardduty": summary.findings,
                                "cloudtrail_digests": len(summary.keys["digest"])}
    assert [q["object"] for q in report["quarantined"]] == [f"{source}/{ct_key(uniq='bad')}"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket + "-lake")["Contents"]]
    assert any(k.startswith("soc/cloudtrail/event_date=") and "/part-" in k for k in keys)
    con = views.connect(lake)
    assert con.execute("SELECT count(*) FROM cloudtrail").fetchone()[0] == summary.events
    store = S3Store(aws.s3_client(aws_settings), lake)
    again = ingest(S3Source(aws.s3_client(aws_settings), source), store, IngestOptions(workers=1))
    assert again.to_ingest == {} and again.orphans_removed == 0


# -- the command -----------------------------------------------------------------------------
def _parse(argv):
    from pipeline.cli import parse_args

    return parse_args(["backfill", *argv])


def test_command_passes_other_options_to_beam_and_rejects_typos(tmp_path):
    args = _parse(["--source", "s3://b/p", "--lake", "s3://l", "--runner", "DataflowRunner", "--project", "p",
                   "--temp_location=gs://t/tmp", "--since", "2026-11-01", "--", "--region", "europe-west1"])
    assert args.since == dt.date(2026, 11, 1) and args.region is None
    assert backfill_cli.pipeline_args(args) == ["--runner=DataflowRunner", "--project", "p", "--temp_location=gs://t/tmp",
                                            "--region", "europe-west1"]
    assert backfill.unknown_beam_args(args.extra_args) == []
    direct = backfill_cli.pipeline_args(_parse(["--source", "x", "--lake", "y"]))
    assert "--direct_running_mode=multi_processing" in direct
    typo = _parse(["--source", str(tmp_path), "--lake", str(tmp_path / "lake"), "--sinse", "2026-11-01"])
    with pytest.raises(ConfigError, match="--sinse"):
        backfill_cli.cmd_backfill(typo)
    with pytest.raises(ConfigError, match="s3://"):
        backfill.run_backfill(str(tmp_path), "s3://lake/x", Filters(), ["--runner=DataflowRunner"])
