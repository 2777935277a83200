"""Readers see committed data only; an object is its place in the AWS layout whatever the spelling;
state files missing from an S3 lake read as absent (forward on an S3 lake)."""

import json
import os
import subprocess
import sys

import orjson
import pytest

from pipeline import aws, views
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import Ledger, LocalStore, S3Store
from pipeline.lake import staging as staging_mod
from pipeline.lake.ledger import STATE_PREFIX
from pipeline.sources import LocalSource, S3Source
from tests.archive import ct_bytes, ct_key, records_for


def count(lake: str) -> tuple[int, int]:
    con = views.connect(lake)
    return con.execute("SELECT count(*), count(DISTINCT eventID) FROM cloudtrail").fetchone()


def fill(archive, n=4, per=20, tag="c"):
    for i in range(n):
        archive.put(ct_key(hhmm=f"10{i}0", uniq=f"{tag}{i}"), ct_bytes(records_for(per, tag=f"{tag}{i}")))


# -- uncommitted files are invisible ----------------------------------------------------------------
def test_files_written_before_a_crash_in_the_commit_are_invisible_to_readers(archive, lake_store, monkeypatch):
    fill(archive)
    calls = {"n": 0}
    real = Ledger.commit

    def crash_on_second(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed after the files were written, before the commit")
        return real(self, *a, **k)

    monkeypatch.setattr(Ledger, "commit", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        ingest(LocalSource(archive.root), lake_store, IngestOptions(workers=1, commit_bytes=0))
    monkeypatch.setattr(Ledger, "commit", real)
    assert count(lake_store.uri) == (20, 20)  # the committed object only, while the crashed run's file exists
    assert lake_store.list(staging_mod.STAGING)  # (it does, staged)
    report = ingest(LocalSource(archive.root), lake_store, IngestOptions(workers=1))
    assert report.ingested_objects == 3 and report.orphans_removed == 1
    assert count(lake_store.uri) == (80, 80)
    assert lake_store.list(staging_mod.STAGING) == []


def test_a_crash_between_commit_and_publish_is_finished_by_the_next_writer(archive, lake_store, monkeypatch):
    fill(archive, n=2)
    ingest(LocalSource(archive.root), lake_store, IngestOptions(workers=1))
    archive.put(ct_key(hhmm="1000", uniq="c0"), ct_bytes(records_for(5, tag="z")))  # changed: retracts a file
    fill(archive, n=1, tag="new")

    def crash(*a, **k):
        raise KeyboardInterrupt("killed right after the ledger commit")

    monkeypatch.setattr("pipeline.ingest.run.publish_committed", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest(LocalSource(archive.root), lake_store, IngestOptions(workers=1))
    monkeypatch.undo()
    total, distinct = count(lake_store.uri)
    assert total == distinct  # never a row twice, even before the next writer comes
    report = ingest(LocalSource(archive.root), lake_store, IngestOptions(workers=1))
    assert report.ingested_objects == 0
    assert count(lake_store.uri) == (20 + 5 + 20, 45)
    assert Ledger.load(lake_store).files == {f for f in lake_store.list("cloudtrail/")}


def test_staging_is_outside_every_table_folder():
    from pipeline import schema

    assert all(not staging_mod.staged("x").startswith(t + "/") for t in (*schema.LOG_TABLES, "alerts", "incidents"))


# -- object identity ------------------------------------------------------------------------------
def test_relative_absolute_and_trailing_slash_spellings_are_one_object(archive, tmp_path, monkeypatch):
    fill(archive)
    store = LocalStore(tmp_path / "lake")
    monkeypatch.chdir(archive.root.parent)
    first = ingest(LocalSource(archive.root.name), store, IngestOptions(workers=1))
    assert first.ingested_objects == 4
    for spelling in (str(archive.root) + "/", f"./{archive.root.name}//", str(archive.root)):
        again = ingest(LocalSource(spelling), store, IngestOptions(workers=1))
        assert (again.ingested_objects, again.skipped) == (0, 4), spelling
    assert count(store.uri) == (80, 80)


def test_an_s3_object_and_its_local_copy_are_one_object(s3, bucket, aws_settings, archive, tmp_path):
    fill(archive, n=3)
    for path in archive.root.rglob("*.gz"):
        s3.put_object(Bucket=bucket, Key="trail/" + path.relative_to(archive.root).as_posix(), Body=path.read_bytes())
    store = LocalStore(tmp_path / "lake")
    first = ingest(S3Source(aws.s3_client(aws_settings), f"s3://{bucket}/trail/"), store, IngestOptions(workers=1))
    assert first.ingested_objects == 3
    local = ingest(LocalSource(archive.root), store, IngestOptions(workers=1))
    assert (local.ingested_objects, local.skipped) == (0, 3)  # same layout place, same content (ETag = MD5)
    assert count(store.uri) == (60, 60)
    # the other way round, and a changed local copy is a new version of the same object
    archive.put(ct_key(hhmm="1000", uniq="c0"), ct_bytes(records_for(7, tag="v2")))
    changed = ingest(LocalSource(archive.root), store, IngestOptions(workers=1))
    assert changed.to_ingest == {"changed": 1}
    assert count(store.uri) == (47, 47)


def test_unchanged_local_files_are_not_hashed_again(archive, tmp_path, monkeypatch):
    fill(archive, n=3)
    store = LocalStore(tmp_path / "lake")
    ingest(LocalSource(archive.root), store, IngestOptions(workers=1))
    import hashlib

    calls = []
    real = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = ingest(LocalSource(archive.root), store, IngestOptions(workers=1))
    assert again.skipped == 3 and calls == []


def test_a_ledger_written_before_identities_keeps_working(archive, tmp_path, monkeypatch):
    """Old ledgers keyed objects by the path as typed, with size-mtime ETags for local files."""
    fill(archive, n=3)
    store = LocalStore(tmp_path / "lake")
    monkeypatch.chdir(archive.root.parent)
    ingest(LocalSource(archive.root.name), store, IngestOptions(workers=1))
    for name in store.list(STATE_PREFIX):  # rewrite the state as the old code wrote it
        doc = orjson.loads(store.get(name))
        for o in doc["objects"]:
            st = os.stat(o["uri"])
            o["etag"] = f"{st.st_size}-{st.st_mtime_ns}"
            del o["stat"]
        store.put(name, orjson.dumps(doc))
    again = ingest(LocalSource(str(archive.root) + "/"), store, IngestOptions(workers=1))
    assert (again.ingested_objects, again.skipped) == (0, 3)
    archive.put(ct_key(hhmm="1010", uniq="c1"), ct_bytes(records_for(4, tag="v2")))
    changed = ingest(LocalSource(str(archive.root)), store, IngestOptions(workers=1))
    assert changed.to_ingest == {"changed": 1}
    assert count(store.uri) == (44, 44)  # the old version's rows (read via the old spelling) are gone


# -- missing state on S3 is "absent", not "unreadable" -------------------------------------------------
def test_a_missing_object_is_file_not_found_in_every_store(lake_store):
    with pytest.raises(FileNotFoundError):
        lake_store.get("_state/outbox/nothing.json")


def test_forward_on_an_s3_lake(s3, bucket, aws_settings, moto_endpoint, tmp_path):
    from pipeline.detect.alert_store import write_alerts
    from tests.test_forward_core import make_alert

    lake = f"s3://{bucket}/lake"
    write_alerts(S3Store(aws.s3_client(aws_settings), lake), [make_alert(i) for i in range(3)], {}, "run1")
    conf = tmp_path / "c.yml"
    conf.write_text(f"sinks:\n  - {{name: archive, type: jsonl, path: {tmp_path / 'out.jsonl'}}}\n")
    base = [sys.executable, "-m", "pipeline", "forward", "--lake", lake, "--config", str(conf),
            "--endpoint-url", moto_endpoint]
    status = subprocess.run(base + ["--status", "--json"], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)[0]["pending"] == 3
    done = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "archive: 3 delivered of 3 pending" in done.stdout, done.stderr
    again = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "0 delivered of 0 pending" in again.stdout, again.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3
    assert s3.get_object(Bucket=bucket, Key="lake/_state/outbox/archive.json")["Body"].read()


def test_a_flush_publishes_its_files_concurrently_and_all_of_them(tmp_path):
    """Each publish waits on the disk or on S3, not on the process: a flush keeps several in flight."""
    import threading
    import time

    import pyarrow.parquet as pq

    from pipeline import schema
    from pipeline.lake.writer import StreamingPartitionWriter

    class SlowStore(LocalStore):
        def __init__(self, root):
            super().__init__(root)
            self.lock, self.now, self.most = threading.Lock(), 0, 0

        def publish(self, tmp, rel):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(0.05)  # an upload's round trip
            try:
                return super().publish(tmp, rel)
            finally:
                with self.lock:
                    self.now -= 1

    store = SlowStore(tmp_path / "lake")
    writer = StreamingPartitionWriter(store, "part-test-w0")
    full = schema.arrow_schema("cloudtrail")
    for day in range(1, 7):  # six partitions, one file each
        rows = [{"eventTime": f"2026-11-0{day}T00:00:00Z", "eventID": f"e{day}", "event_date": f"2026-11-0{day}",
                 "account_id": "111111111111", "region": "us-east-1"}]
        writer.add("cloudtrail", pa_table(rows, full))
    files = writer.flush()
    assert len(files) == 6 and store.most > 1
    for f in files:
        assert pq.read_metadata(store.path(staging_mod.staged(f.path))).num_rows == f.rows == 1


def pa_table(rows, full):
    import datetime as dt

    import pyarrow as pa

    cols = {}
    for field in full:
        values = [r.get(field.name) for r in rows]
        if field.name == "event_date":
            values = [dt.date.fromisoformat(v) for v in values]
        cols[field.name] = pa.array(values, field.type) if any(v is not None for v in values) else pa.nulls(len(rows), field.type)
    return pa.table(cols, schema=full)
