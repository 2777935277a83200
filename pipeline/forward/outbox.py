"""Delivery state per sink, kept in the lake (``_state/outbox/<sink>.json``).

Alerts are durable in the lake before any delivery (the outbox is the alerts table itself);
this file records, per sink, which version of each alert was delivered and which were parked
(rejected for good, with the reason). It is saved after every batch, so a crash between a send
and the save means that batch is sent again: at-least-once, and idempotent where the
destination allows it (alert id as document id, ASFF Id, FIFO deduplication id).
"""

from __future__ import annotations

import datetime as dt

import orjson

from pipeline.detect.alerts import Alert
from pipeline.errors import LakeError

PREFIX = "_state/outbox/"


class Outbox:
    def __init__(self, store, sink: str):
        self.store, self.sink = store, sink
        self.delivered: dict[str, str] = {}  # alert id → detected_at of the delivered version
        self.parked: dict[str, dict] = {}  # alert id → {version, reason, at}

    @property
    def path(self) -> str:
        return f"{PREFIX}{self.sink}.json"

    @classmethod
    def load(cls, store, sink: str) -> Outbox:
        box = cls(store, sink)
        if not store.exists(box.path):  # a first delivery (an S3 store raises LakeError on a missing key)
            return box
        try:
            raw = store.get(box.path)
        except FileNotFoundError:  # every store says so for a missing file: nothing delivered yet
            return box
        except OSError as e:
            raise LakeError(f"cannot read outbox state {box.path}: {e}") from e
        try:
            doc = orjson.loads(raw)
            delivered, parked = doc.get("delivered", {}), doc.get("parked", {})
        except (orjson.JSONDecodeError, AttributeError):
            raise LakeError(f"outbox state {box.path} is unreadable; remove it to redeliver everything to {sink}") from None
        box.delivered, box.parked = delivered, parked
        return box

    def save(self) -> None:
        doc = {"sink": self.sink, "saved_at": dt.datetime.now(dt.UTC).isoformat(),
               "delivered": self.delivered, "parked": self.parked}
        self.store.put(self.path, orjson.dumps(doc))

    @staticmethod
    def version(alert: Alert) -> str:
        return alert.detected_at.isoformat()

    def pending(self, alert: Alert) -> bool:
        v = self.version(alert)
        if self.parked.get(alert.id, {}).get("version") == v:
            return False
        return self.delivered.get(alert.id) != v

    def mark_delivered(self, alerts: list[Alert]) -> None:
        for a in alerts:
            self.delivered[a.id] = self.version(a)
            self.parked.pop(a.id, None)

    def park(self, alert: Alert, reason: str) -> None:
        self.parked[alert.id] = {"version": self.version(alert), "reason": reason[:500],
                                 "at": dt.datetime.now(dt.UTC).isoformat()}
