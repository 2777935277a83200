"""Log file integrity: the documented digest format, soclake verify end to end through moto S3, tampering, alerts."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import re

import boto3
import duckdb
import orjson
import pytest
from botocore.stub import Stubber
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pipeline import cli
from pipeline.ingest import IngestOptions, ingest
from pipeline.integrity import alerts as integrity_alerts
from pipeline.integrity import digest as dg
from pipeline.integrity.keys import CACHE, PublicKeys, parse_key_file
from pipeline.integrity.verify import VerifyOptions, verify
from pipeline.lake.store import LocalStore
from pipeline.sources import Filters
from pipeline.sources.local import LocalSource
from pipeline.sources.s3 import S3Source
from pipeline.synth import DirSink, S3Sink, generate_archive
from pipeline.synth.signing import public_keys_document

ACCOUNT, REGION, BUCKET = "111122223333", "us-east-2", "trail-bucket"
DIGEST_DIR = f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/2026/11/01/"
LOG_DIR = f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/01/"
UNTIL = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _der(private) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)


def _fp(private) -> str:
    return hashlib.md5(_der(private)).hexdigest()


def _keys(private) -> PublicKeys:
    return PublicKeys({REGION: {_fp(private): _der(private)}})


def _digest_key(hour: int) -> str:
    return f"{DIGEST_DIR}{ACCOUNT}_CloudTrail-Digest_{REGION}_my-trail_{REGION}_20261101T{hour:02d}0000Z.json.gz"


def _log(s3, hour: int, n: int) -> tuple[str, bytes]:
    key = f"{LOG_DIR}{ACCOUNT}_CloudTrail_{REGION}_20261101T{hour - 1:02d}30Z_log{hour:02d}x{n}.json.gz"
    content = orjson.dumps({"Records": [{"eventVersion": "1.09", "eventTime": f"2026-11-01T{hour - 1:02d}:2{n}:00Z",
                                         "eventName": "GetCallerIdentity", "eventSource": "sts.amazonaws.com",
                                         "awsRegion": REGION, "recipientAccountId": ACCOUNT, "eventID": f"e{hour}{n}"}]})
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(content, mtime=0))
    return key, content


def _documented_digest(hour: int, logs: list[tuple[str, bytes]], private, previous: tuple[str, str, str] | None) -> tuple[dict, bytes]:
    """A digest built straight from the User Guide's field list (not from soclake's own writer)."""
    doc = {
        "awsAccountId": ACCOUNT,
        "digestStartTime": f"2026-11-01T{hour - 1:02d}:00:00Z",
        "digestEndTime": f"2026-11-01T{hour:02d}:00:00Z",
        "digestS3Bucket": BUCKET,
        "digestS3Object": _digest_key(hour),
        "digestPublicKeyFingerprint": _fp(private),
        "digestSignatureAlgorithm": "SHA256withRSA",
        "newestEventTime": None if not logs else f"2026-11-01T{hour - 1:02d}:59:00Z",
        "oldestEventTime": None if not logs else f"2026-11-01T{hour - 1:02d}:00:00Z",
        "previousDigestS3Bucket": BUCKET if previous else None,
        "previousDigestS3Object": previous[0] if previous else None,
        "previousDigestHashValue": previous[1] if previous else None,
        "previousDigestHashAlgorithm": "SHA-256" if previous else None,
        "previousDigestSignature": previous[2] if previous else None,
        "logFiles": [{"s3Bucket": BUCKET, "s3Object": k, "hashValue": hashlib.sha256(c).hexdigest(),
                      "hashAlgorithm": "SHA-256", "newestEventTime": None, "oldestEventTime": None} for k, c in logs],
    }
    return doc, orjson.dumps(doc)


def _string_to_sign(doc: dict, content: bytes) -> bytes:
    # Exactly the User Guide's "data signing string": digestEndTime \n bucket/key \n hex(sha256(content)) \n previous sig.
    previous = doc["previousDigestSignature"] or "null"
    return (f"{doc['digestEndTime']}\n{doc['digestS3Bucket']}/{doc['digestS3Object']}\n"
            f"{hashlib.sha256(content).hexdigest()}\n{previous}").encode()


def _put_digest(s3, doc: dict, content: bytes, private, signature: str | None = None) -> str:
    sig = signature or private.sign(_string_to_sign(doc, content), padding.PKCS1v15(), hashes.SHA256()).hex()
    s3.put_object(Bucket=BUCKET, Key=doc["digestS3Object"], Body=gzip.compress(content, mtime=0),
                  Metadata={"signature": sig, "signature-algorithm": "SHA256withRSA"})
    return sig


@pytest.fixture
def documented(s3, key):
    """Three hourly digests, built and signed as documented, each listing two log files, in moto S3."""
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    previous, built = None, []
    for hour in (10, 11, 12):
        logs = [_log(s3, hour, n) for n in range(2)]
        doc, content = _documented_digest(hour, logs, key, previous)
        sig = _put_digest(s3, doc, content, key)
        previous = (doc["digestS3Object"], hashlib.sha256(content).hexdigest(), sig)
        built.append((doc, content, sig))
    yield built
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=o["Key"])
    s3.delete_bucket(Bucket=BUCKET)


def _verify(s3, keys, store=None, **opts):
    # the three hours end at 12:00: the trailing-gap check is for the synthetic archives below
    opts.setdefault("max_gap", dt.timedelta(days=1))
    return verify(S3Source(s3, f"s3://{BUCKET}"), store, keys, VerifyOptions(filters=Filters(until=UNTIL), **opts))


def test_signing_string_is_the_documented_one():
    doc = {"digestEndTime": "2015-08-17T00:00:00Z", "digestS3Bucket": "example-bucket",
           "digestS3Object": "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/16/x.json.gz",
           "previousDigestSignature": None}
    assert dg.signing_string(doc, "ab" * 32) == (
        b"2015-08-17T00:00:00Z\nexample-bucket/AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/16/x.json.gz\n"
        + b"ab" * 32 + b"\nnull")
    assert dg.signing_string({**doc, "previousDigestSignature": "beef"}, "00").endswith(b"\n00\nbeef")


def test_a_documented_digest_chain_is_valid(s3, documented, key):
    report = _verify(s3, _keys(key))
    assert report.ok, report.lines()
    assert (report.digests_valid, report.logs_valid, report.hashes_read) == (3, 6, 6)


@pytest.mark.parametrize("field,value", [
    ("digestEndTime", "2026-11-01T12:00:01Z"),            # line 1 of the signed string
    ("digestS3Bucket", "other-bucket"),                    # line 2 (and the location check)
    ("digestS3Object", "AWSLogs/elsewhere.json.gz"),       # line 2 (and the location check)
    ("previousDigestSignature", "00" * 256),               # line 4
    ("awsAccountId", "999999999999"),                      # any byte of the content: line 3
    ("digestStartTime", "2026-11-01T10:30:00Z"),
    ("logFiles", []),
])
def test_each_documented_field_corrupted_is_rejected(s3, documented, key, field, value):
    doc, content, sig = documented[2]
    forged = {**doc, field: value}
    # the corrupted file keeps the genuine signature: what an editor without CloudTrail's key has
    s3.put_object(Bucket=BUCKET, Key=doc["digestS3Object"], Body=gzip.compress(orjson.dumps(forged), mtime=0),
                  Metadata={"signature": sig, "signature-algorithm": "SHA256withRSA"})
    report = _verify(s3, _keys(key))
    assert report.digests_invalid == 1 and not report.ok
    assert "digest_invalid" in [p.kind for p in report.problems if p.uri.endswith(doc["digestS3Object"])]


def test_signature_metadata_corruptions_are_rejected(s3, documented, key):
    doc, content, sig = documented[1]
    for meta in ({"signature": sig[:-2] + ("00" if sig[-2:] != "00" else "11"), "signature-algorithm": "SHA256withRSA"},
                 {"signature-algorithm": "SHA256withRSA"}, {"signature": sig, "signature-algorithm": "SHA1withRSA"}):
        s3.put_object(Bucket=BUCKET, Key=doc["digestS3Object"], Body=gzip.compress(content, mtime=0), Metadata=meta)
        report = _verify(s3, _keys(key))
        assert report.digests_invalid == 1, meta
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _put_digest(s3, doc, content, key)
    assert _verify(s3, PublicKeys({REGION: {_fp(key): _der(other)}})).digests_invalid == 3  # the wrong key
    assert "public key not found" in _verify(s3, PublicKeys({})).problems[0].detail


def test_chain_hash_and_log_file_hash_are_checked(s3, documented, key):
    # previousDigestHashValue is signed too, so re-sign a digest whose link names another hash: the chain check sees it
    doc, content, _ = documented[2]
    bad_link = {**doc, "previousDigestHashValue": "0" * 64}
    _put_digest(s3, bad_link, orjson.dumps(bad_link), key)
    kinds = [p.kind for p in _verify(s3, _keys(key)).problems]
    assert kinds == ["chain_broken"]
    # a log file whose bytes changed: SHA-256 of the uncompressed content differs from hashValue
    log_key = documented[0][0]["logFiles"][0]["s3Object"]
    s3.put_object(Bucket=BUCKET, Key=log_key, Body=gzip.compress(b'{"Records": []}', mtime=0))
    report = _verify(s3, _keys(key))
    assert report.logs_modified == 1 and "hash value doesn't match" in next(p.detail for p in report.problems if p.kind == "log_modified")


def test_recompressing_a_log_file_is_not_a_modification(s3, documented, key):
    # the hash is over the uncompressed content, as documented: another gzip of the same JSON is still valid
    log_key = documented[0][0]["logFiles"][1]["s3Object"]
    raw = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=log_key)["Body"].read())
    s3.put_object(Bucket=BUCKET, Key=log_key, Body=gzip.compress(raw, compresslevel=1, mtime=12345))
    assert _verify(s3, _keys(key)).ok


def test_list_public_keys_through_boto3_is_cached_in_the_lake(s3, documented, key, tmp_path):
    store = LocalStore(tmp_path / "lake")
    clients = []

    def client_for(region):
        client = boto3.client("cloudtrail", region_name=region)
        stub = Stubber(client)
        if not clients:
            stub.add_response("list_public_keys", {"PublicKeyList": [], "NextToken": "page2"},
                              {"StartTime": documented[0][0] and dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC),
                               "EndTime": dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)})
            stub.add_response("list_public_keys", {"PublicKeyList": [{
                "Value": _der(key), "ValidityStartTime": dt.datetime(2026, 1, 1), "ValidityEndTime": dt.datetime(2027, 1, 1),
                "Fingerprint": _fp(key)}]},
                {"StartTime": dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC), "EndTime": dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC),
                 "NextToken": "page2"})
        stub.activate()
        clients.append((region, stub))
        return client

    report = _verify(s3, PublicKeys.from_aws(store, client_for))
    assert report.ok and report.key_calls == 2 and [r for r, _ in clients] == [REGION]
    clients[0][1].assert_no_pending_responses()
    cached = orjson.loads(store.get(CACHE))
    assert base64.b64decode(cached[REGION][_fp(key)]) == _der(key)
    again = _verify(s3, PublicKeys.from_aws(store, lambda region: pytest.fail("the cache should have served")))
    assert again.ok and again.key_calls == 0


def test_key_file_shapes():
    der = b"\x30\x03\x02\x01\x01"
    entry = {"Value": base64.b64encode(der).decode(), "Fingerprint": "ab", "ValidityStartTime": "x", "ValidityEndTime": "y"}
    assert parse_key_file(json.dumps({"us-east-1": {"PublicKeyList": [entry]}}))["us-east-1"]["ab"] == der
    assert parse_key_file(json.dumps({"PublicKeyList": [entry]}))["*"]["ab"] == der
    with pytest.raises(Exception, match="not a CloudTrail public key file"):
        parse_key_file(b"[1, 2]")


# -- synthetic archives: signed by synth, tampered by synth, verified through moto S3 -----------------

SYNTH = dict(seed=11, accounts=1, regions=("us-east-1", "eu-west-1"), days=1, events=4000, events_per_object=60,
             guardduty_findings=2)


def _synth_to_s3(s3, bucket: str, tamper=()):
    s3.create_bucket(Bucket=bucket)
    summary = generate_archive(S3Sink(s3, bucket), prefix="org", tamper=tamper, **SYNTH)
    keys = PublicKeys(parse_key_file(orjson.dumps(public_keys_document(SYNTH["seed"], SYNTH["regions"]))))
    return summary, S3Source(s3, f"s3://{bucket}/org"), keys


def test_an_untampered_synthetic_archive_is_fully_valid(s3):
    summary, source, keys = _synth_to_s3(s3, "synth-clean")
    # through the day after (the last digests are delivered just after midnight), which then ends early: allow a day
    report = verify(source, None, keys, VerifyOptions(filters=Filters(until=dt.date(2026, 11, 2)), max_gap=dt.timedelta(days=1)))
    assert report.ok, report.lines()
    assert report.digests_valid == len(summary.keys["digest"]) and report.digests_invalid == report.digests_missing == 0
    assert report.logs_valid == len(summary.keys["cloudtrail"])
    assert report.logs_not_listed == report.logs_without_digests == 0


@pytest.mark.parametrize("kind,expected", [
    ("modify", {"log_modified"}),
    ("delete", {"log_deleted"}),
    ("drop-digest", {"digest_missing", "log_not_listed"}),
    ("resign", {"digest_invalid", "chain_broken"}),
])
def test_every_tamper_kind_is_detected(s3, kind, expected):
    summary, source, keys = _synth_to_s3(s3, f"synth-{kind}", tamper=(kind,))
    (tampered,) = summary.tampered
    report = verify(source, None, keys, VerifyOptions(filters=Filters(until=UNTIL)))
    assert {p.kind for p in report.problems} == expected, report.lines()
    hit = [p for p in report.problems if p.uri.endswith(tampered["key"])]
    assert hit and not report.ok


def test_ingest_hashes_serve_verify_and_alerts_flow_into_the_alerts_table(tmp_path):
    src, lake = tmp_path / "src", tmp_path / "lake"
    summary = generate_archive(DirSink(src), tamper=("modify", "drop-digest"), **SYNTH)
    keys_file = tmp_path / "keys.json"
    keys_file.write_bytes(orjson.dumps(public_keys_document(SYNTH["seed"], SYNTH["regions"])))
    store = LocalStore(lake)
    ingest(LocalSource(src), store, IngestOptions(workers=1))
    con = duckdb.connect()
    from pipeline import views

    views.register(con, str(lake))
    rows = con.execute("SELECT count(*), sum(log_file_count), count(DISTINCT trail) FROM cloudtrail_digests").fetchone()
    assert rows[0] == len(summary.keys["digest"]) and rows[2] == 1
    report = verify(LocalSource(src), store, PublicKeys.from_file(str(keys_file)), VerifyOptions(filters=Filters(until=UNTIL)))
    assert report.hashes_read == 0 and report.hashes_from_ledger == report.logs
    assert {p.kind for p in report.problems} == {"log_modified", "digest_missing", "log_not_listed"}

    argv = ["verify", "--source", str(src), "--lake", str(lake), "--public-keys", str(keys_file), "--until", "2026-11-01",
            "--json"]
    assert cli.main(argv) == cli.EXIT_PARTIAL
    views.register(con, str(lake))
    got = dict(con.execute("SELECT rule_id, severity FROM alerts").fetchall())
    assert got == {"integrity_log_file_modified": "critical", "integrity_digest_chain_broken": "high",
                   "integrity_log_file_not_in_digest": "critical"}
    assert cli.main(argv) == cli.EXIT_PARTIAL  # a rerun finds the same alerts: no new versions
    assert con.execute("SELECT count(*) FROM alert_versions").fetchone()[0] == 3
    assert len(integrity_alerts.build_alerts(report, dt.datetime.now(dt.UTC))) == 3


def test_cli_verify_exits_0_on_a_clean_archive_and_synth_writes_the_key_file(tmp_path, capsys):
    src, keys_file = tmp_path / "src", tmp_path / "keys.json"
    assert cli.main(["synth", "--output", str(src), "--seed", "11", "--accounts", "1", "--regions", "us-east-1",
                     "--days", "1", "--events", "1500", "--public-keys-out", str(keys_file)]) == 0
    code = cli.main(["verify", "--source", str(src), "--lake", str(tmp_path / "lake"), "--public-keys", str(keys_file),
                     "--until", "2026-11-01"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "digest files valid" in out and "INVALID" not in out
    assert cli.main(["synth", "--output", str(src), "--tamper", "nope"]) == cli.EXIT_USAGE


def test_cli_verify_formats_list_the_problems(tmp_path, capsys):
    """--format jsonl|csv: one row per problem (RFC 3339 times); --format json and --json: the whole report."""
    import csv
    import io

    src, keys_file = tmp_path / "src", tmp_path / "keys.json"
    assert cli.main(["synth", "--output", str(src), "--seed", "11", "--accounts", "1", "--regions", "us-east-1",
                     "--days", "1", "--events", "1500", "--public-keys-out", str(keys_file), "--tamper", "modify"]) == 0
    base = ["verify", "--source", str(src), "--lake", str(tmp_path / "lake"), "--public-keys", str(keys_file),
            "--until", "2026-11-01", "--no-alerts"]
    capsys.readouterr()
    assert cli.main([*base, "--format", "csv"]) == cli.EXIT_PARTIAL
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["kind"] for r in rows] == ["log_modified"] and rows[0]["object"].endswith(".json.gz")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[0]["time"]) and rows[0]["account"]
    assert cli.main([*base, "--format", "jsonl"]) == cli.EXIT_PARTIAL
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) == rows[0]  # every field a string: the same in both
    assert cli.main([*base, "--json"]) == cli.EXIT_PARTIAL
    doc = json.loads(capsys.readouterr().out)
    assert doc["log_files"]["modified"] == 1 and doc["problems"] == [json.loads(line)]
