"""Elasticsearch / OpenSearch ``_bulk``: one index per day of the alert's first_seen, alert id as
document id, so a resend (or a newer version of the alert) overwrites: exactly one copy.

```yaml
- name: elastic
  type: elasticsearch
  url: https://es.example.com:9200
  index_prefix: soclake-alerts      # → soclake-alerts-2024.05.01
  api_key: {env: ES_API_KEY}        # the encoded key; or username + password: {env: ES_PASSWORD}
  format: soclake                   # or ocsf
```

Each item of the ``_bulk`` answer decides its alert: 200/201 delivered, 429/5xx retried, any other
status (e.g. 400 mapper_parsing_exception) parked with the error's type and reason. A request too
large for the cluster (413) is split in halves.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Literal

import urllib3
from pydantic import Field, field_validator, model_validator

from pipeline.detect.alerts import Alert
from pipeline.forward.base import SendResult, SinkConfig, TransientSinkError
from pipeline.forward.render import to_json, to_ocsf
from pipeline.forward.secrets import SecretRef
from pipeline.forward.sinks.http_common import HttpClient, check_url, is_transient_status

_BAD_INDEX_CHARS = set('\\/*?"<>| ,#:')


class ElasticsearchConfig(SinkConfig):
    type: Literal["elasticsearch"]
    url: str = Field(description="cluster URL, e.g. https://es.example.com:9200")
    index_prefix: str = "soclake-alerts"
    api_key: SecretRef | None = Field(None, description="encoded API key (base64 of id:key)")
    username: str | None = None
    password: SecretRef | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    format: Literal["soclake", "ocsf"] = "soclake"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)

    @field_validator("index_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or v != v.lower() or v[0] in "-_+." or _BAD_INDEX_CHARS & set(v):
            raise ValueError("index_prefix must be lowercase, without spaces or \\/*?\"<>|,#: and not start "
                             "with - _ + or .")
        return v

    @model_validator(mode="after")
    def _auth(self):
        if self.api_key and (self.username or self.password):
            raise ValueError("use either api_key or username + password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


def index_name(prefix: str, alert: Alert) -> str:
    """Day of the alert's dedup window: part of its id, so every version lands in one index."""
    return f"{prefix}-{alert.window_start.astimezone(dt.UTC):%Y.%m.%d}"


class ElasticsearchSink:
    max_batch = 500

    def __init__(self, cfg: ElasticsearchConfig):
        self.name, self.cfg = cfg.name, cfg
        self.url = cfg.url.rstrip("/") + "/_bulk"
        self.headers = {"Content-Type": "application/x-ndjson", "Accept": "application/json"}
        secrets: list[str] = []
        if cfg.api_key:
            key = cfg.api_key.resolve()
            self.headers["Authorization"] = f"ApiKey {key}"
            secrets.append(key)
        elif cfg.username:
            password = cfg.password.resolve()
            self.headers.update(urllib3.make_headers(basic_auth=f"{cfg.username}:{password}"))
            secrets += [password, self.headers["authorization"].split(" ", 1)[1]]
        self.http = HttpClient(cfg.url, timeout=cfg.retry.timeout, verify_tls=cfg.verify_tls, ca_file=cfg.ca_file,
                               secrets=secrets)

    def document(self, alert: Alert) -> dict:
        if self.cfg.format == "ocsf":
            return to_ocsf(alert)
        return {"@timestamp": alert.last_seen.astimezone(dt.UTC).isoformat(), **to_json(alert)}

    def body(self, alerts: list[Alert]) -> bytes:
        lines = []
        for a in alerts:
            lines.append(json.dumps({"index": {"_index": index_name(self.cfg.index_prefix, a), "_id": a.id}}))
            lines.append(json.dumps(self.document(a), separators=(",", ":")))
        return ("\n".join(lines) + "\n").encode()

    def send(self, alerts: list[Alert]) -> SendResult:
        if not alerts:
            return SendResult()
        resp = self.http.request("POST", self.url, self.body(alerts), self.headers)
        if resp.status == 413 and len(alerts) > 1:  # too large for http.max_content_length: halve it
            half = len(alerts) // 2
            return _merge(self.send(alerts[:half]), self.send(alerts[half:]))
        self.http.check(resp, _es_error(resp.json()))
        doc = resp.json()
        if not isinstance(doc, dict):
            raise TransientSinkError(f"{self.http.label}: _bulk answer is not JSON")
        items = doc.get("items")
        if not isinstance(items, list):
            if doc.get("errors") is False:
                return SendResult(delivered=[a.id for a in alerts])
            raise TransientSinkError(f"{self.http.label}: _bulk answer has no items")
        if len(items) != len(alerts):
            raise TransientSinkError(f"{self.http.label}: _bulk answered {len(items)} items for {len(alerts)}")
        res = SendResult(retry_after=resp.retry_after)
        for alert, item in zip(alerts, items):
            result = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
            status = result.get("status") if isinstance(result, dict) else None
            if not isinstance(status, int):
                res.retry[alert.id] = f"{self.http.label}: _bulk item without a status"
            elif 200 <= status < 300:
                res.delivered.append(alert.id)
            else:
                reason = f"{self.http.label}: HTTP {status}: {self.http.redact(_es_error(result) or 'error')}"
                (res.retry if is_transient_status(status) else res.rejected)[alert.id] = reason
        return res

    def close(self) -> None:
        self.http.close()


def _es_error(doc) -> str | None:
    """``type: reason`` of an Elasticsearch error object (top level or a bulk item), if any."""
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        cause = err.get("caused_by") if isinstance(err.get("caused_by"), dict) else {}
        text = f"{err.get('type', 'error')}: {err.get('reason', '')}".rstrip(": ")
        if cause.get("reason"):
            text += f" (caused by {cause.get('type', '')}: {cause['reason']})"
        return " ".join(text.split())[:400]
    if isinstance(err, str):
        return err[:400]
    return None


def _merge(a: SendResult, b: SendResult) -> SendResult:
    waits = [w for w in (a.retry_after, b.retry_after) if w is not None]
    return SendResult(delivered=a.delivered + b.delivered, retry={**a.retry, **b.retry},
                      rejected={**a.rejected, **b.rejected}, retry_after=max(waits) if waits else None)


SINK_TYPES = {"elasticsearch": (ElasticsearchConfig, ElasticsearchSink)}
