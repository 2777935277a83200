"""What a queue message says: which S3 objects were created (or that there is nothing to do).

Accepted bodies (docs/continuous.md shows each):

* an S3 event notification, ``{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
  "s3": {"bucket": {"name": …}, "object": {"key": …}}}]}``; keys arrive URL-encoded (spaces as
  ``+``) and are decoded;
* the EventBridge ``Object Created`` event (``"source": "aws.s3"``, ``detail.bucket.name``,
  ``detail.object.key``, keys as they are), also with a raw-message-delivery-off SNS envelope;
* either of them wrapped by SNS (``{"Type": "Notification", "Message": "<the JSON above>"}``);
* ``s3:TestEvent`` (sent when a notification is configured), other S3 events (removals,
  restores…) and SNS subscription confirmations: nothing to ingest, acknowledged.

Anything else is :data:`UNKNOWN`: the watcher leaves it on the queue, so after the queue's
``maxReceiveCount`` it lands in the dead-letter queue for someone to look at, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_plus

import orjson

OBJECTS, IGNORE, UNKNOWN = "objects", "ignore", "unknown"


@dataclass
class Parsed:
    kind: str  # OBJECTS, IGNORE or UNKNOWN
    objects: list[tuple[str, str]] = field(default_factory=list)  # (bucket, key)
    reason: str = ""


def parse_body(body: str | bytes, depth: int = 0) -> Parsed:
    """The objects a message names (or why it names none)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Parsed(UNKNOWN, reason="body is not JSON")
    if not isinstance(doc, dict):
        return Parsed(UNKNOWN, reason="body is not a JSON object")
    if doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str) and depth < 2:
        return parse_body(doc["Message"], depth + 1)  # SNS envelope
    if doc.get("Type") in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return Parsed(IGNORE, reason=f"SNS {doc['Type']}")
    if doc.get("Event") == "s3:TestEvent":
        return Parsed(IGNORE, reason="s3:TestEvent")
    if isinstance(doc.get("Records"), list):
        return _s3_notification(doc["Records"])
    if doc.get("source") == "aws.s3" and "detail-type" in doc:
        return _eventbridge(doc)
    return Parsed(UNKNOWN, reason="neither an S3 event notification nor an EventBridge S3 event")


def _s3_notification(records: list) -> Parsed:
    out: list[tuple[str, str]] = []
    others = []
    for r in records:
        if not isinstance(r, dict) or r.get("eventSource") != "aws:s3":
            return Parsed(UNKNOWN, reason="a record is not an S3 event")
        name = str(r.get("eventName", ""))
        if not name.startswith("ObjectCreated:"):
            others.append(name)
            continue
        try:
            bucket = r["s3"]["bucket"]["name"]
            key = unquote_plus(r["s3"]["object"]["key"])
        except (KeyError, TypeError):
            return Parsed(UNKNOWN, reason=f"{name} record names no bucket or key")
        out.append((bucket, key))
    if out:
        return Parsed(OBJECTS, out)
    return Parsed(IGNORE, reason="S3 event(s) other than ObjectCreated: " + ", ".join(sorted(set(others))))


def _eventbridge(doc: dict) -> Parsed:
    if doc["detail-type"] != "Object Created":
        return Parsed(IGNORE, reason=f"EventBridge S3 {doc['detail-type']!r}")
    try:
        return Parsed(OBJECTS, [(doc["detail"]["bucket"]["name"], doc["detail"]["object"]["key"])])
    except (KeyError, TypeError):
        return Parsed(UNKNOWN, reason="EventBridge Object Created names no bucket or key")
