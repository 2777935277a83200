"""`soclake compact`: a partition's small files merged atomically under the lease, rows unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline import aws, views
from pipeline.errors import LeaseHeld
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import Ledger, LocalStore, S3Store
from pipeline.lake.compact import compact
from pipeline.lake.lease import writer_lease
from pipeline.lake.staging import STAGING
from pipeline.sources import LocalSource
from tests.archive import ct_bytes, ct_key, gd_bytes, gd_key, records_for

PY = [sys.executable, "-m", "pipeline"]


def small_files(archive, store, batches=6):
    """One ingest per batch, as a watcher commits: a file per partition per batch."""
    from pipeline.synth.records import make_guardduty_finding

    for b in range(batches):
        for region in ("us-east-1", "eu-west-1"):
            archive.put(ct_key(region=region, hhmm=f"1{b}00", uniq=f"b{b}"), ct_bytes(records_for(20, region=region, tag=f"b{b}")))
        archive.put(gd_key(uniq=f"0b1c2d3e-0000-4000-8000-00000000000{b}"),
                    gd_bytes([make_guardduty_finding(id=f"f{b}", accountId="111111111111")]))
        ingest(LocalSource(archive.root), store, IngestOptions(workers=1))


def snapshot(lake):
    con = views.connect(str(lake))
    ids = sorted(r[0] for r in con.execute("SELECT eventID FROM cloudtrail").fetchall())
    gd = sorted(r[0] for r in con.execute("SELECT id FROM guardduty").fetchall())
    return ids, gd


def data_files(store, table="cloudtrail"):
    return [f for f in store.list(table + "/") if f.endswith(".parquet")]


def test_compact_merges_small_files_rows_unchanged(archive, tmp_path):
    lake = tmp_path / "lake"
    store = LocalStore(lake)
    small_files(archive, store)
    before, files_before = snapshot(lake), data_files(store)
    assert len(files_before) == 12 and len(before[0]) == 240
    report = compact(store, min_files=4)
    assert report.partitions_compacted == 3 and report.files_before == 18 and report.files_after == 3
    assert snapshot(lake) == before  # same rows: counts and eventID sets
    assert len(data_files(store)) == 2 and len(data_files(store, "guardduty")) == 1
    assert store.list(STAGING) == []
    ledger = Ledger.load(store)
    assert set(data_files(store)) | set(data_files(store, "guardduty")) == ledger.files
    for e in ledger.objects.values():  # every object's entry names the file now holding its rows
        assert e.files and set(e.files) <= ledger.files
    again = compact(store, min_files=4)
    assert again.partitions_compacted == 0  # nothing small left


def test_a_changed_object_after_compaction_is_retracted_from_the_merged_file(archive, tmp_path):
    lake = tmp_path / "lake"
    store = LocalStore(lake)
    small_files(archive, store, batches=4)
    compact(store, tables=["cloudtrail"], min_files=2)
    archive.put(ct_key(hhmm="1100", uniq="b1"), ct_bytes(records_for(7, tag="b1-v2")))  # re-delivered with new content
    ingest(LocalSource(archive.root), store, IngestOptions(workers=1))
    ids, _ = snapshot(lake)
    assert len(ids) == len(set(ids)) == 160 - 20 + 7
    assert not any(i.startswith("b1-111111111111-us-east-1") for i in ids)


def test_compact_holds_the_lease(archive, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    store = LocalStore(tmp_path / "lake")
    small_files(archive, store, batches=2)
    with writer_lease(store, "watch"), ThreadPoolExecutor(1) as pool:  # another thread: another writer
        with pytest.raises(LeaseHeld):
            pool.submit(compact, store, min_files=2).result()


def test_a_crash_between_commit_and_publish_shows_no_row_twice_and_is_finished(archive, tmp_path, monkeypatch):
    import pipeline.lake.compact as mod

    lake = tmp_path / "lake"
    store = LocalStore(lake)
    small_files(archive, store, batches=3)
    before = snapshot(lake)

    def crash(store, added, removed):
        store.delete(removed[0])  # killed part-way through retiring the old files
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "publish_committed", crash)
    with pytest.raises(KeyboardInterrupt):
        compact(store, tables=["cloudtrail"], min_files=2)
    ids, _ = snapshot(lake)
    assert len(ids) == len(set(ids))  # readers see old files or new ones, never both
    monkeypatch.undo()
    with writer_lease(store, "ingest"):  # the next writer finishes the publish
        pass
    assert snapshot(lake) == before and store.list(STAGING) == []


def test_compact_cli_on_an_s3_lake(archive, s3, bucket, aws_settings, moto_endpoint, tmp_path):
    store = S3Store(aws.s3_client(aws_settings), f"s3://{bucket}/lake")
    small_files(archive, store, batches=3)
    before = len(data_files(store))
    done = subprocess.run(PY + ["compact", "--lake", f"s3://{bucket}/lake", "--table", "cloudtrail", "--min-files", "2",
                                "--endpoint-url", moto_endpoint, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["files_merged"] == before == 6 and report["files_written"] == 2 and report["rows"] == 120
    assert len(data_files(store)) == 2 and store.list(STAGING) == []
    con = views.connect(f"s3://{bucket}/lake")
    assert con.execute("SELECT count(*), count(DISTINCT eventID) FROM cloudtrail").fetchone() == (120, 120)


def test_compact_takes_the_shared_format_flag(archive, tmp_path, capsys):
    import csv
    import io

    from pipeline.cli import main

    lake = tmp_path / "lake"
    small_files(archive, LocalStore(lake))
    capsys.readouterr()
    assert main(["compact", "--lake", str(lake), "--min-files", "4", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows == [{"table": "cloudtrail", "partitions": "2", "files_merged": "12", "files_written": "2"},
                    {"table": "guardduty", "partitions": "1", "files_merged": "6", "files_written": "1"}]
    assert main(["compact", "--lake", str(lake), "--format", "table"]) == 0  # nothing left: the summary alone
    assert capsys.readouterr().out.startswith("compacted 0 of 3 partition(s)")
    assert main(["compact", "--lake", str(lake), "--json"]) == 0
    assert '"partitions_compacted": 0' in capsys.readouterr().out
