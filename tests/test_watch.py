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
import orjson
import pytest

from pipeline import aws, views
from pipeline.lake import LocalStore
from pipeline.lake.lease import LEASE_PATH
from pipeline.synth.records import make_console_login, root
from pipeline.watch import Queue, Watcher, WatchOptions, parse_body
from pipeline.watch.messages import IGNORE, OBJECTS, UNKNOWN
from tests.archive import ct_bytes, ct_key, gd_bytes, gd_key, records_for

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
