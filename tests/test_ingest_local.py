"""Ingest from a local copy of the layout: exactly once, bad input quarantined, crash-safe."""

import gzip
import os
import signal
import subprocess
import sys
import time

import duckdb
import orjson
import pytest

from pipeline import views
from pipeline.errors import SourceError
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import Ledger, LocalStore
from pipeline.lake.ledger import QUARANTINED
from pipeline.sources import Filters, LocalSource
from pipeline.synth.records import make_cloudtrail_record, make_guardduty_finding
from tests.archive import ct_bytes, ct_key, gd_bytes, gd_key, records_for


def run(archive, lake, **opts):
    opts.setdefault("workers", 1)
    return ingest(LocalSource(archive.root), LocalStore(lake), IngestOptions(**opts))


def lake_rows(lake, table="cloudtrail"):
    con = views.connect(str(lake))
    total, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT (source_object, source_index)) FROM {table}"
    ).fetchone()
    return total, distinct


def test_rerun_ingests_only_new_objects_and_never_duplicates(archive, tmp_path):
    lake = tmp_path / "lake"
    for i in range(3):
        archive.put(ct_key(hhmm=f"10{i}0", uniq=f"a{i}"), ct_bytes(records_for(50, tag=f"a{i}")))
    first = run(archive, lake)
    assert (first.ingested_objects, first.total_events, first.ok) == (3, 150, True)
    again = run(archive, lake)
    assert (again.ingested_objects, again.skipped, again.files_written) == (0, 3, 0)
    archive.put(ct_key(hhmm="1100", uniq="b"), ct_bytes(records_for(7, tag="b")))
    third = run(archive, lake)
    assert (third.ingested_objects, third.skipped, third.total_events) == (1, 3, 7)
    assert lake_rows(lake) == (157, 157)


def test_partitions_come_from_the_records_own_time_account_and_region(archive, tmp_path):
    lake = tmp_path / "lake"
    late = records_for(2, account="123456789012", region="eu-west-1", day="2026-10-31", hour=23)
    archive.put(ct_key(account="123456789012", region="eu-west-1", day="2026-11-01", uniq="x"), ct_bytes(late))
    run(archive, lake)
    files = sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet"))
    assert len(files) == 1
    assert files[0].startswith("cloudtrail/event_date=2026-10-31/account_id=123456789012/region=eu-west-1/part-")
    con = views.connect(str(lake))
    assert con.execute("SELECT DISTINCT account_id, typeof(account_id) FROM cloudtrail").fetchall() == [("123456789012", "VARCHAR")]


def test_bad_objects_are_quarantined_with_reasons_and_the_run_goes_on(archive, tmp_path):
    lake = tmp_path / "lake"
    good = ct_key(hhmm="1000", uniq="good")
    archive.put(good, ct_bytes(records_for(10, tag="good")))
    bad = {
        ct_key(hhmm="1001", uniq="gzip"): (gzip.compress(b'{"Records": []}')[:-9], "corrupt gzip"),
        ct_key(hhmm="1002", uniq="trunc"): (gzip.compress(b'{"Records": [{"eventTime": "2026-11-01T10:00:00Z"'), "invalid JSON"),
        ct_key(hhmm="1004", uniq="empty"): (b"", "empty object"),
        ct_key(hhmm="1005", uniq="config"): (gzip.compress(b'{"configurationItems": [1]}'), "not a CloudTrail log"),
    }
    for key, (data, _) in bad.items():
        archive.put(key, data)
    # A record without eventTime is left out (dead-lettered), not its whole object.
    notime = ct_key(hhmm="1003", uniq="notime")
    archive.put(notime, ct_bytes([make_cloudtrail_record(eventTime=None)]))
    report = run(archive, lake)
    assert report.ingested_objects == 2 and report.total_events == 10 and not report.ok
    assert report.rejected_records == 1 and report.rejected[0][1] == 0 and "no eventTime" in report.rejected[0][2]
    reasons = {u.rsplit("/", 1)[1]: r for u, r in report.quarantined}
    for key, (_, why) in bad.items():
        assert why in reasons[key.rsplit("/", 1)[1]]
    ledger = Ledger.load(LocalStore(lake))
    assert {os.path.basename(e.uri) for e in ledger.quarantined()} == {k.rsplit("/", 1)[1] for k in bad}
    assert all(e.status == QUARANTINED and e.reason for e in ledger.quarantined())
    # A rerun leaves them alone; --retry-quarantined tries them again (still bad: still quarantined).
    assert run(archive, lake).to_ingest == {}
    retry = run(archive, lake, retry_quarantined=True)
    assert retry.to_ingest == {"retry": 4} and len(retry.quarantined) == 4
    # Re-delivering a fixed object (new ETag) ingests it without any flag.
    time.sleep(0.01)
    archive.put(notime, ct_bytes(records_for(4, tag="fixed")))
    rerun = run(archive, lake)
    assert rerun.to_ingest == {"changed": 1} and rerun.total_events == 4
    assert lake_rows(lake) == (14, 14)


def test_a_changed_object_replaces_its_rows(archive, tmp_path):
    lake = tmp_path / "lake"
    archive.put(ct_key(uniq="keep"), ct_bytes(records_for(5, tag="keep")))
    archive.put(ct_key(uniq="change"), ct_bytes(records_for(5, tag="old")))
    run(archive, lake)
    time.sleep(0.01)
    archive.put(ct_key(uniq="change"), ct_bytes(records_for(3, tag="new")))
    report = run(archive, lake)
    assert report.to_ingest == {"changed": 1}
    con = views.connect(str(lake))
    ids = sorted(r[0].split("-")[0] for r in con.execute("SELECT eventID FROM cloudtrail").fetchall())
    assert ids == ["keep"] * 5 + ["new"] * 3
    # and the ledger's live files are exactly what is on disk
    ledger = Ledger.load(LocalStore(lake))
    on_disk = {p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet")}
    assert ledger.files == on_disk


def test_crash_after_writing_before_commit_leaves_nothing_twice(archive, tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    for i in range(4):
        archive.put(ct_key(hhmm=f"10{i}0", uniq=f"c{i}"), ct_bytes(records_for(20, tag=f"c{i}")))
    calls = {"n": 0}
    real = Ledger.commit

    def crash_on_second(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash after files were written")
        return real(self, *a, **k)

    monkeypatch.setattr(Ledger, "commit", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(archive, lake, commit_bytes=0)  # flush + commit after every object
    monkeypatch.setattr(Ledger, "commit", real)
    on_disk = len(list(lake.rglob("*.parquet")))
    assert on_disk == 2  # one committed, one orphan written before the "crash"
    report = run(archive, lake)
    assert report.orphans_removed == 1 and report.ingested_objects == 3
    assert lake_rows(lake) == (80, 80)


def test_kill_9_mid_run_then_rerun_gives_exact_counts(archive, tmp_path):
    lake = tmp_path / "lake"
    n_objects, per = 60, 200
    for i in range(n_objects):
        archive.put(ct_key(hhmm=f"{10 + i // 60:02d}{i % 60:02d}", uniq=f"k{i}"), ct_bytes(records_for(per, tag=f"k{i}")))
    cmd = [sys.executable, "-m", "pipeline", "ingest", "--source", str(archive.root), "--lake", str(lake),
           "--workers", "2", "--commit-mb", "0", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = lake / "_state" / "ingest"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and len(list(state.glob("*.commit.json"))) >= 5:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; make the archive bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = Ledger.load(LocalStore(lake))
    assert 0 < len(committed.objects) < n_objects
    done = subprocess.run(cmd[:-1] + ["--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["skipped_already_ingested"] == len(committed.objects)
    assert lake_rows(lake) == (n_objects * per, n_objects * per)


def test_filters_list_only_matching_dates_accounts_and_regions(archive, tmp_path):
    lake = tmp_path / "lake"
    for acct in ("111111111111", "222222222222"):
        for region in ("us-east-1", "eu-west-1"):
            for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
                archive.put(ct_key(acct, region, day, uniq="f"), ct_bytes(records_for(1, acct, region, day)))
    f = Filters(since=__import__("datetime").date(2026, 11, 2), accounts=frozenset({"222222222222"}),
                regions=frozenset({"eu-west-1"}))
    report = run(archive, lake, filters=f)
    assert report.ingested_objects == 2
    con = views.connect(str(lake))
    assert con.execute("SELECT DISTINCT account_id, region FROM cloudtrail").fetchall() == [("222222222222", "eu-west-1")]


def test_insights_and_stray_keys_are_counted_not_ingested_and_a_broken_digest_is_quarantined(archive, tmp_path):
    archive.put(ct_key(uniq="ok"), ct_bytes(records_for(3)))
    archive.put("AWSLogs/111111111111/CloudTrail-Digest/us-east-1/2026/11/01/"
                "111111111111_CloudTrail-Digest_us-east-1_main_us-east-1_20261101T100000Z.json.gz", gzip.compress(b"{}"))
    archive.put("AWSLogs/111111111111/CloudTrail-Insight/us-east-1/2026/11/01/"
                "111111111111_CloudTrail-Insight_us-east-1_20261101T1000Z_i.json.gz", gzip.compress(b'{"Records": []}'))
    archive.put("AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/01/README.txt", b"hello")
    archive.put("AWSLogs/111111111111/Config/us-east-1/2026/11/01/c.json.gz", b"x")
    archive.put("AWSLogs/notes/x.txt", b"x")
    report = run(archive, tmp_path / "lake")
    assert report.listed == {"cloudtrail": 1, "cloudtrail-digest": 1, "cloudtrail-insight": 1, "unrecognised": 3}
    assert report.ingested_objects == 1  # digests go to cloudtrail_digests; this one is not a digest
    assert [(u.rsplit("/", 1)[-1], r) for u, r in report.quarantined] == [
        ("111111111111_CloudTrail-Digest_us-east-1_main_us-east-1_20261101T100000Z.json.gz",
         "not a CloudTrail digest file: expected a JSON object with digestStartTime, digestEndTime and logFiles")]
    reasons = " ".join(r for _, r in report.unrecognised)
    assert "naming pattern" in reasons and "unknown source 'Config'" in reasons and "neither an account" in reasons


def test_guardduty_versions_kept_and_latest_view_shows_newest(archive, tmp_path):
    lake = tmp_path / "lake"
    v1 = make_guardduty_finding(id="f1", updatedAt="2026-11-01T10:00:00.000Z", severity=5.0)
    v2 = make_guardduty_finding(id="f1", updatedAt="2026-11-01T12:00:00.000Z", severity=8.0)
    other = make_guardduty_finding(id="f2", updatedAt="2026-11-01T11:00:00.000Z")
    archive.put(gd_key(uniq="0001"), gd_bytes([v1, other]))
    archive.put(gd_key(uniq="0002"), gd_bytes([v2]))
    report = run(archive, lake)
    assert report.events == {"guardduty": 3}
    con = views.connect(str(lake))
    assert con.execute("SELECT count(*) FROM guardduty").fetchone() == (3,)
    assert con.execute("SELECT id, severity FROM guardduty_latest ORDER BY id").fetchall() == [("f1", 8.0), ("f2", other["severity"])]


def test_a_source_without_awslogs_is_a_clear_error(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(SourceError, match="no AWSLogs/ folder"):
        ingest(LocalSource(tmp_path / "elsewhere"), LocalStore(tmp_path / "lake"), IngestOptions(workers=1))


def test_parquet_files_are_zstd_with_time_statistics(archive, tmp_path):
    import pyarrow.parquet as pq

    lake = tmp_path / "lake"
    recs = records_for(30)[::-1]
    archive.put(ct_key(uniq="z"), ct_bytes(recs))
    run(archive, lake)
    (path,) = lake.rglob("*.parquet")
    meta = pq.ParquetFile(path).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    times = pq.read_table(path, columns=["event_time"]).column(0).to_pylist()
    stats = meta.row_group(0).column(meta.schema.names.index("event_time")).statistics
    assert (stats.min, stats.max) == (min(times), max(times))
    assert duckdb.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone() == (30,)


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_read_the_files_and_hash_new_ones_themselves(archive, tmp_path, monkeypatch, workers):
    """New local files are not hashed while listing: the worker that reads one records the MD5 of
    the bytes it read as its ETag; a rerun skips it by size and mtime, a touched file by its content."""
    import hashlib

    lake = tmp_path / "lake"
    keys = [ct_key(hhmm=f"10{i}0", uniq=f"h{i}") for i in range(3)]
    for i, key in enumerate(keys):
        archive.put(key, ct_bytes(records_for(4, tag=f"h{i}")))
    src = LocalSource(archive.root)
    src.remember(lambda ident: None, lambda ident: False)
    assert {o.etag for o in src.list_all("AWSLogs/") if o.key in keys} == {""}  # left to the reader
    hashed = []
    real = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda *a, **k: hashed.append(1) or real(*a, **k))
    assert run(archive, lake, workers=workers).ok
    assert hashed == []  # the listing read no file
    ledger = Ledger.load(LocalStore(lake))
    for key in keys:
        entry = ledger.entry(str(archive.root / key))
        assert entry.etag == hashlib.md5((archive.root / key).read_bytes()).hexdigest()
    os.utime(archive.root / keys[0])  # same bytes, new mtime: hashed while listing, same ETag, skipped
    again = run(archive, lake, workers=workers)
    assert (again.ingested_objects, again.skipped, len(hashed)) == (0, 3, 1)
    assert lake_rows(lake) == (12, 12)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_a_worker_cannot_read_is_failed_not_quarantined(archive, tmp_path, monkeypatch, workers):
    lake = tmp_path / "lake"
    archive.put(ct_key(uniq="ok"), ct_bytes(records_for(3, tag="ok")))
    archive.put(ct_key(hhmm="1100", uniq="gone"), ct_bytes(records_for(3, tag="gone")))
    real = LocalSource.read

    def read(self, key):
        if "gone" in key:
            raise OSError("simulated read error")
        return real(self, key)

    monkeypatch.setattr(LocalSource, "read", read)  # before the workers fork: they inherit it
    report = run(archive, lake, workers=workers)
    assert [(os.path.basename(u), r) for u, r in report.failed] == [
        (ct_key(hhmm="1100", uniq="gone").rsplit("/", 1)[1], "could not read: simulated read error")]
    assert (report.ingested_objects, report.quarantined, report.total_events) == (1, [], 3)
    monkeypatch.setattr(LocalSource, "read", real)
    again = run(archive, lake, workers=workers)  # no ledger entry: the next run reads it
    assert (again.ingested_objects, again.skipped, again.total_events) == (1, 1, 3)
