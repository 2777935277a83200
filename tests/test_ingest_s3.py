"""Ingest from S3 through boto3 against a real moto server on 127.0.0.1 (real HTTP and pagination)."""

import datetime as dt
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from pipeline import aws, views
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import Ledger, LocalStore, S3Store
from pipeline.sources import Filters, S3Source
from pipeline.synth.records import make_guardduty_finding
from tests.archive import ct_bytes, ct_key, gd_bytes, gd_key, records_for


def put_all(s3, bucket, items, **extra):
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1], **extra), items))


def test_more_than_1000_keys_org_layout_and_bucket_prefix(s3, bucket, aws_settings, tmp_path):
    """Pagination is real (moto pages at 1,000 keys) and the org-id segment and prefix are handled."""
    items = []
    for i in range(1050):
        day = f"2026-11-{1 + i % 3:02d}"
        key = ct_key(day=day, hhmm=f"{i // 60 % 24:02d}{i % 60:02d}", uniq=f"u{i}", org="o-abc1234567", prefix="org-trail/")
        items.append((key, ct_bytes(records_for(1, day=day, tag=f"u{i}"))))
    put_all(s3, bucket, items)
    src = S3Source(aws.s3_client(aws_settings), f"s3://{bucket}/org-trail")
    report = ingest(src, LocalStore(tmp_path / "lake"), IngestOptions(workers=2))
    assert (report.listed["cloudtrail"], report.ingested_objects, report.total_events) == (1050, 1050, 1050)
    assert report.ok and report.quarantined == []
    assert views.connect(str(tmp_path / "lake")).execute("SELECT count(DISTINCT eventID) FROM cloudtrail").fetchone() == (1050,)


def test_sse_kms_objects_read_transparently(s3, bucket, aws_settings, moto_endpoint, tmp_path):
    kms = boto3.client("kms", endpoint_url=moto_endpoint, region_name="us-east-1")
    key_id = kms.create_key(Description="cloudtrail")["KeyMetadata"]["KeyId"]
    put_all(s3, bucket, [(ct_key(uniq="kms"), ct_bytes(records_for(4)))], ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    head = s3.head_object(Bucket=bucket, Key=ct_key(uniq="kms"))
    assert head["ServerSideEncryption"] == "aws:kms"
    report = ingest(S3Source(aws.s3_client(aws_settings), f"s3://{bucket}"), LocalStore(tmp_path / "lake"), IngestOptions(workers=1))
    assert report.total_events == 4 and report.ok


def test_filters_are_pushed_into_list_prefixes(s3, bucket, aws_settings, tmp_path):
    items = []
    for acct in ("111111111111", "222222222222"):
        for region in ("us-east-1", "eu-west-1"):
            for day in ("2026-10-30", "2026-10-31", "2026-11-01"):
                items.append((ct_key(acct, region, day, uniq="p"), ct_bytes(records_for(1, acct, region, day))))
    items.append((gd_key("222222222222", "eu-west-1", "2026-10-31"), gd_bytes([make_guardduty_finding(accountId="222222222222")])))
    put_all(s3, bucket, items)
    client = aws.s3_client(aws_settings)
    prefixes = []
    client.meta.events.register("provide-client-params.s3.ListObjectsV2", lambda params, **_: prefixes.append(params.get("Prefix", "")))
    f = Filters(since=dt.date(2026, 10, 31), until=dt.date(2026, 10, 31), accounts=frozenset({"222222222222"}),
                regions=frozenset({"eu-west-1"}))
    report = ingest(S3Source(client, f"s3://{bucket}"), LocalStore(tmp_path / "lake"), IngestOptions(workers=1, filters=f))
    assert report.events == {"cloudtrail": 1, "guardduty": 1}
    deep = [p for p in prefixes if p.count("/") >= 5]  # listings below the region level
    assert deep and all(p.endswith("2026/10/31/") and "/222222222222/" in p and "/eu-west-1/" in p for p in deep)
    assert not any("111111111111" in p for p in prefixes)


def test_s3_lake_with_ledger_in_the_lake(s3, bucket, aws_settings, tmp_path):
    put_all(s3, bucket, [(ct_key(uniq=f"s{i}", hhmm=f"10{i}0"), ct_bytes(records_for(5, tag=f"s{i}"))) for i in range(3)])
    s3.create_bucket(Bucket=bucket + "-lake")
    lake_uri = f"s3://{bucket}-lake/soc/lake"
    src = S3Source(aws.s3_client(aws_settings), f"s3://{bucket}")
    store = S3Store(aws.s3_client(aws_settings), lake_uri)
    first = ingest(src, store, IngestOptions(workers=1))
    assert first.total_events == 15 and first.files_written == 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket + "-lake")["Contents"]]
    assert any(k.startswith("soc/lake/cloudtrail/event_date=2026-11-01/account_id=111111111111/region=us-east-1/") for k in keys)
    assert any(k.startswith("soc/lake/_state/ingest/") for k in keys)
    assert ingest(src, store, IngestOptions(workers=1)).skipped == 3
    assert len(Ledger.load(store).objects) == 3
    con = views.connect(lake_uri)
    assert con.execute("SELECT count(*), count(DISTINCT eventID), min(account_id) FROM cloudtrail").fetchone() == (15, 15, "111111111111")


def test_cli_ingest_from_s3_reports_json_and_exit_codes(s3, bucket, moto_endpoint, tmp_path):
    put_all(s3, bucket, [(ct_key(uniq="ok"), ct_bytes(records_for(3))), (ct_key(uniq="bad", hhmm="1100"), b"not gzip")])
    cmd = [sys.executable, "-m", "pipeline", "ingest", "--source", f"s3://{bucket}", "--lake", str(tmp_path / "lake"),
           "--endpoint-url", moto_endpoint, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    assert report["events"] == {"cloudtrail": 3}
    assert report["quarantined"][0]["object"] == f"s3://{bucket}/{ct_key(uniq='bad', hhmm='1100')}"
    assert "not gzip" in report["quarantined"][0]["reason"]
    human = subprocess.run(cmd[:-1] + ["--quiet"], capture_output=True, text=True, timeout=120)
    assert human.returncode == 0 and "already ingested (skipped): 2" in human.stdout
    assert "1 object(s) remain quarantined from earlier runs" in human.stdout


def test_cli_names_a_missing_bucket_plainly(moto_endpoint, tmp_path):
    cmd = [sys.executable, "-m", "pipeline", "ingest", "--source", "s3://no-such-bucket-here", "--lake", str(tmp_path / "l"),
           "--endpoint-url", moto_endpoint, "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: cannot list s3://no-such-bucket-here/AWSLogs/: NoSuchBucket")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [["ingest", "--source", "x"], ["synth"]])
def test_missing_required_flags_are_usage_errors(argv):
    done = subprocess.run([sys.executable, "-m", "pipeline", *argv], capture_output=True, text=True)
    assert done.returncode != 0 and ("required" in done.stderr or "no lake" in done.stderr)
