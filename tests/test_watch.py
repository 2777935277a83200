"""Continuous mode on the moto server: real S3 event notifications to a real SQS queue (with a
redrive policy to a dead-letter queue), `soclake watch` ingesting exactly what they name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import boto3
import pytest

from pipeline import aws, views
from pipeline.lake import LocalStore
from pipeline.lake.lease import LEASE_PATH
from pipeline.synth.records import make_console_login, root
from pipeline.watch import Queue, Watcher, WatchOptions, parse_body
from pipeline.watch.messages import IGNORE, OBJECTS, UNKNOWN
from tests.archive import ct_bytes, ct_key, records_for

PY = [sys.executable, "-m", "pipeline"]


@pytest.fixture
def sqs(moto_endpoint):
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")


def make_queue(sqs, name: str, visibility: int = 30, max_receives: int = 2) -> tuple[str, str]:
    """A queue with a redrive policy to its own DLQ; returns (queue url, dlq url)."""
    dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)})
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": policy})["QueueUrl"]
    return url, dlq


@pytest.fixture
def wired(s3, sqs, bucket):
    """A bucket whose ObjectCreated notifications go to a fresh queue (with a DLQ); returns a namespace."""
    url, dlq = make_queue(sqs, bucket + "-q")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    return type("Wired", (), {"bucket": bucket, "queue": url, "dlq": dlq})


def depth(sqs, url) -> int:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def lake_counts(lake) -> tuple[int, int]:
    con = views.connect(str(lake))
    return con.execute("SELECT count(*), count(DISTINCT eventID) FROM cloudtrail").fetchone()


def watcher(sqs, s3_client, url, lake, **opts) -> Watcher:
    o = WatchOptions(**{"max_wait": 0.5, "once": True, **opts})
    return Watcher(Queue(sqs, url), s3_client, LocalStore(lake), str(lake), [], o)


# -- messages ------------------------------------------------------------------------------------------
def test_message_shapes_s3_eventbridge_sns_and_test_events():
    s3_event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                             "s3": {"bucket": {"name": "b"}, "object": {"key": "AWSLogs%2F1%2Fa+b%2Bc.json.gz"}}}]}
    assert parse_body(json.dumps(s3_event)).objects == [("b", "AWSLogs/1/a b+c.json.gz")]
    eb = {"version": "0", "source": "aws.s3", "detail-type": "Object Created",
          "detail": {"bucket": {"name": "b"}, "object": {"key": "AWSLogs/1/x.json.gz", "etag": "e"}}}
    assert parse_body(json.dumps(eb)).objects == [("b", "AWSLogs/1/x.json.gz")]
    sns = {"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": json.dumps(s3_event)}
    assert parse_body(json.dumps(sns)).kind == OBJECTS
    assert parse_body(json.dumps({"Type": "Notification", "Message": json.dumps(eb)})).objects == [("b", "AWSLogs/1/x.json.gz")]
    test = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}
    assert parse_body(json.dumps(test)).kind == IGNORE
    assert parse_body(json.dumps({"Type": "Notification", "Message": json.dumps(test)})).kind == IGNORE
    removed = {"Records": [{**s3_event["Records"][0], "eventName": "ObjectRemoved:Delete"}]}
    assert parse_body(json.dumps(removed)).kind == IGNORE
    assert parse_body(json.dumps({**eb, "detail-type": "Object Deleted"})).kind == IGNORE
    assert parse_body("not json").kind == UNKNOWN
    assert parse_body(json.dumps({"hello": 1})).kind == UNKNOWN


# -- end to end ------------------------------------------------------------------------------------------
def test_put_objects_then_watch_once_lands_rows_and_alert_in_jsonl_sink(s3, sqs, wired, moto_endpoint, tmp_path):
    """PutObject → S3 notification → SQS → `soclake watch --once` → lake rows and a root console login alert."""
    login = make_console_login(identity=root("111111111111"), ip="198.51.100.7", event_time="2026-11-01T10:30:00Z")
    s3.put_object(Bucket=wired.bucket, Key=ct_key(uniq="login", hhmm="1035"), Body=ct_bytes([login]))
    s3.put_object(Bucket=wired.bucket, Key=ct_key(uniq="busy", hhmm="1040"), Body=ct_bytes(records_for(40, tag="busy")))
    s3.put_object(Bucket=wired.bucket, Key="README.txt", Body=b"not a log")  # outside the layout: acknowledged
    sink = tmp_path / "alerts.jsonl"
    cfg = tmp_path / "soclake.yml"
    cfg.write_text(f"sinks:\n  - {{name: file, type: jsonl, path: {sink}}}\n")
    lake = tmp_path / "lake"
    t0 = time.monotonic()
    done = subprocess.run(PY + ["watch", "--queue", wired.queue, "--lake", str(lake), "--config", str(cfg), "--once",
                                "--max-wait", "1", "--endpoint-url", moto_endpoint, "--json"],
                          capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["objects"]["ingested"] == 2 and summary["events"] == {"cloudtrail": 41}
    assert summary["messages"]["ignored"] == 1  # s3:TestEvent, sent when the notification was configured
    assert summary["dead_letter_queue"]["depth"] == 0
    assert lake_counts(lake) == (41, 41)
    alerts = [json.loads(line) for line in sink.read_text().splitlines()]
    assert any(a["rule_id"] == "root_console_login" for a in alerts), alerts
    assert depth(sqs, wired.queue) == 0  # every message acknowledged
    assert took < 30, f"watch --once took {took:.1f} s"


# -- exactly once under at-least-once delivery --------------------------------------------------------
def test_duplicate_and_redelivered_messages_add_nothing(s3, sqs, wired, aws_settings, tmp_path):
    keys = [ct_key(uniq=f"d{i}", hhmm=f"11{i:02d}") for i in range(3)]
    for i, k in enumerate(keys):
        s3.put_object(Bucket=wired.bucket, Key=k, Body=ct_bytes(records_for(10, tag=f"d{i}")))
    bodies = []
    for m in sqs.receive_message(QueueUrl=wired.queue, MaxNumberOfMessages=10)["Messages"]:
        bodies.append(m["Body"])
        sqs.send_message(QueueUrl=wired.queue, MessageBody=m["Body"])  # the same notification, twice in one batch
        sqs.change_message_visibility(QueueUrl=wired.queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    lake = tmp_path / "lake"
    client = aws.s3_client(aws_settings)
    first = watcher(sqs, client, wired.queue, lake).run()
    assert first.objects["ingested"] == 3 and lake_counts(lake) == (30, 30)
    assert depth(sqs, wired.queue) == 0
    for body in bodies:  # redelivered later (another consumer's visibility lapsed, an SQS duplicate…)
        sqs.send_message(QueueUrl=wired.queue, MessageBody=body)
    again = watcher(sqs, client, wired.queue, lake).run()
    assert again.objects["ingested"] == 0 and again.objects["already_ingested"] >= 3
    assert again.messages["deleted"] == again.messages["received"] and depth(sqs, wired.queue) == 0
    assert lake_counts(lake) == (30, 30)


def test_poison_object_is_quarantined_and_its_message_not_retried(s3, sqs, wired, aws_settings, tmp_path):
    s3.put_object(Bucket=wired.bucket, Key=ct_key(uniq="poison"), Body=b"\x1f\x8b not really gzip")
    s3.put_object(Bucket=wired.bucket, Key=ct_key(uniq="fine", hhmm="1100"), Body=ct_bytes(records_for(5, tag="fine")))
    lake = tmp_path / "lake"
    s = watcher(sqs, aws.s3_client(aws_settings), wired.queue, lake).run()
    assert s.objects["quarantined"] == 1 and "poison" in s.quarantined[0]["object"]
    assert s.objects["ingested"] == 1 and lake_counts(lake) == (5, 5)
    assert depth(sqs, wired.queue) == 0 and depth(sqs, wired.dlq) == 0  # settled: in quarantine, not in the queue


class _Unreadable:
    """An S3 client whose GetObject is denied for some keys (an SSE-KMS object without kms:Decrypt)."""

    def __init__(self, client, bad: str, delay: float = 0.0):
        self.client, self.bad, self.delay = client, bad, delay

    def get_object(self, **kw):
        from botocore.exceptions import ClientError

        time.sleep(self.delay)
        if self.bad and self.bad in kw["Key"]:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "kms:Decrypt denied"}}, "GetObject")
        return self.client.get_object(**kw)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_failing_object_returns_its_message_then_dead_letter_queue(s3, sqs, bucket, aws_settings, tmp_path):
    url, dlq = make_queue(sqs, bucket + "-q1", visibility=1, max_receives=2)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    s3.put_object(Bucket=bucket, Key=ct_key(uniq="denied"), Body=ct_bytes(records_for(3, tag="denied")))
    s3.put_object(Bucket=bucket, Key=ct_key(uniq="ok", hhmm="1100"), Body=ct_bytes(records_for(4, tag="ok")))
    lake = tmp_path / "lake"
    client = _Unreadable(aws.s3_client(aws_settings), "_denied.")
    first = watcher(sqs, client, url, lake).run()
    assert first.objects["failed"] == 1 and first.messages["left_for_retry"] == 1 and not first.ok
    assert lake_counts(lake) == (4, 4)
    for _ in range(3):  # visibility lapses; the message comes back until maxReceiveCount, then SQS moves it
        time.sleep(1.3)
        s = watcher(sqs, client, url, lake).run()
    assert depth(sqs, url) == 0 and depth(sqs, dlq) == 1
    assert s.dlq["depth"] == 1 and s.dlq["max_receive_count"] == 2  # the run summary reports the DLQ
    [m] = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert "denied" in m["Body"]
    assert lake_counts(lake) == (4, 4)


def test_visibility_is_extended_while_a_long_batch_runs(s3, sqs, bucket, aws_settings, tmp_path):
    url, _ = make_queue(sqs, bucket + "-q2", visibility=1, max_receives=5)
    for i in range(2):
        key = ct_key(uniq=f"slow{i}", hhmm=f"12{i:02d}")
        s3.put_object(Bucket=bucket, Key=key, Body=ct_bytes(records_for(3, tag=f"slow{i}")))
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": [{
            "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]}))
    seen = []
    w = watcher(sqs, _Unreadable(aws.s3_client(aws_settings), "", delay=1.5), url, tmp_path / "lake")
    t = threading.Thread(target=lambda: seen.append(w.run()))
    t.start()
    stolen = 0
    time.sleep(0.5)
    while t.is_alive():  # another consumer of the queue: must get nothing while the batch is in flight
        stolen += len(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []))
        time.sleep(0.2)
    t.join()
    assert stolen == 0
    assert seen[0].objects["ingested"] == 2 and seen[0].messages["deleted"] == 2 and depth(sqs, url) == 0


# -- stopping: a signal, a crash -------------------------------------------------------------------------
TRIALS = int(os.environ.get("SOCLAKE_SOAK_TRIALS", "2"))


def _fill(s3, bucket, n, events=100, tag="c"):
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=ct_key(uniq=f"{tag}{i}", hhmm=f"{10 + i // 60:02d}{i % 60:02d}"),
                      Body=ct_bytes(records_for(events, hour=10 + i % 10, tag=f"{tag}{i}")))


def _start_watch(queue, lake, endpoint, *more):
    cmd = PY + ["watch", "--queue", queue, "--lake", str(lake), "--max-wait", "0.2", "--endpoint-url", endpoint, *more]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def _wait_for(lines, proc, text, timeout=120):
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} in {lines}"
        time.sleep(0.05)


def test_kill_9_mid_batch_then_restart_ingests_every_object_exactly_once(s3, sqs, bucket, aws_settings, moto_endpoint, tmp_path):
    import random

    rng = random.Random(int(os.environ.get("SOCLAKE_SOAK_SEED", str(int(time.time())))))
    for trial in range(TRIALS):
        url, _ = make_queue(sqs, f"{bucket}-k{trial}", visibility=2, max_receives=100)
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
        n = 24
        _fill(s3, bucket, n, tag=f"k{trial}x")
        lake = tmp_path / f"lake{trial}"
        proc, lines = _start_watch(url, lake, moto_endpoint, "--max-objects", "4")
        _wait_for(lines, proc, "batch 1:")
        time.sleep(rng.uniform(0, 2.5))
        alive = proc.poll() is None
        os.killpg(proc.pid, 9)
        proc.wait(30)
        assert alive, "the watcher finished before the kill"
        assert lake_counts(lake)[0] == lake_counts(lake)[1]  # between crash and restart: never a row twice
        client = aws.s3_client(aws_settings)
        deadline = time.monotonic() + 60
        while True:  # restart (at least once: it takes over the dead watcher's lease); what the dead
            # watcher held comes back when its visibility lapses
            assert time.monotonic() < deadline
            watcher(sqs, client, url, lake, max_objects=1000, max_wait=2.5).run()
            if not depth(sqs, url):
                break
        assert lake_counts(lake) == (n * 100, n * 100)
        assert not LocalStore(lake).exists(LEASE_PATH)
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
        for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=o["Key"])


def test_sigterm_finishes_the_batch_and_releases_the_lease(s3, sqs, wired, moto_endpoint, tmp_path):
    _fill(s3, wired.bucket, 6, events=50, tag="t")
    lake = tmp_path / "lake"
    proc, lines = _start_watch(wired.queue, lake, moto_endpoint, "--max-objects", "2")
    _wait_for(lines, proc, "batch 1:")
    proc.send_signal(15)
    t0 = time.monotonic()
    assert proc.wait(60) == 0, proc.stderr.read()[-3000:]
    assert time.monotonic() - t0 < 30
    assert "finishing the current batch" in proc.stderr.read()
    assert any("(signal)" in line for line in lines), lines
    assert not LocalStore(lake).exists(LEASE_PATH)
    total, distinct = lake_counts(lake)
    assert total == distinct and total % 50 == 0 and total >= 100  # whole batches only
    con = views.connect(str(lake))
    ingested = {r[0] for r in con.execute("SELECT DISTINCT source_object FROM cloudtrail").fetchall()}
    assert depth(sqs, wired.queue) == 6 - len(ingested)  # what was not ingested is still queued (the test event was acknowledged)


def test_a_late_object_is_detected_although_detection_had_moved_past_it(s3, sqs, wired, aws_settings, tmp_path):
    """Detection after a batch reaches back to the batch's oldest object, not only --lookback before its last stop."""
    from pipeline.detect.rules import DETECTIONS_DIR, load_rule_file

    rule, problems = load_rule_file(DETECTIONS_DIR / "cloudtrail" / "root_console_login.yml")
    assert not problems
    rules = [rule]
    lake = tmp_path / "lake"
    client = aws.s3_client(aws_settings)
    s3.put_object(Bucket=wired.bucket, Key=ct_key(day="2026-11-03", uniq="now"), Body=ct_bytes(records_for(3, day="2026-11-03")))
    w = watcher(sqs, client, wired.queue, lake)
    w.rules = rules
    w.run()
    login = make_console_login(identity=root("111111111111"), ip="198.51.100.9", event_time="2026-11-01T08:00:00Z")
    s3.put_object(Bucket=wired.bucket, Key=ct_key(day="2026-11-01", hhmm="0805", uniq="late"), Body=ct_bytes([login]))
    w = watcher(sqs, client, wired.queue, lake)
    w.rules = rules
    s = w.run()
    assert s.objects["ingested"] == 1 and s.alerts_new == 1
