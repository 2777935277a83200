"""Splunk HTTP Event Collector (``/services/collector/event``), with optional indexer acknowledgement.

```yaml
- name: splunk
  type: splunk_hec
  url: https://splunk.example.com:8088
  token: {env: SPLUNK_HEC_TOKEN}
  index: security            # optional: the token's default index otherwise
  ack: true                  # wait until the indexers confirm the events are written
```

One request carries a batch of concatenated JSON event objects (gzipped by default). HEC is not
idempotent (it has no document id), so delivery is at least once: a batch whose answer was lost,
or whose indexing acknowledgement never came, is sent again. ``fields.alert_id`` carries the
alert id, so searches can deduplicate (``| dedup alert_id``).

A batch refused as invalid data (400 with codes 5, 6, 12, 13 or 15) is sent again one alert per
request to find the bad one, which is parked with HEC's reason; the others are delivered.
"""

from __future__ import annotations

import gzip as gziplib
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Literal

from pydantic import Field, field_validator

from pipeline.detect.alerts import Alert
from pipeline.forward.base import PermanentSinkError, SendResult, SinkConfig, TransientSinkError
from pipeline.forward.render import to_json
from pipeline.forward.secrets import SecretRef
from pipeline.forward.sinks.http_common import HttpClient, Response, check_url

#: HEC status codes that blame the data of one event rather than the request as a whole.
DATA_CODES = {5, 6, 12, 13, 15}
COLLECTOR = "/services/collector"


class SplunkHecConfig(SinkConfig):
    type: Literal["splunk_hec"]
    url: str = Field(description="HEC base URL, e.g. https://splunk.example.com:8088")
    token: SecretRef
    index: str | None = None
    sourcetype: str = "soclake:alert"
    source: str | None = "soclake"
    host: str | None = None
    gzip: bool = True
    ack: bool = Field(False, description="indexer acknowledgement: a batch counts as delivered once indexed")
    ack_timeout: float = Field(60.0, gt=0, description="seconds to wait for the acknowledgement of a batch")
    ack_poll_interval: float = Field(1.0, gt=0, description="seconds between polls of /services/collector/ack")
    verify_tls: bool = True
    ca_file: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)


def hec_base(url: str) -> str:
    """The collector's base URL: accepts the base or the full ``…/services/collector[/event]`` URL."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    for suffix in (COLLECTOR + "/event/1.0", COLLECTOR + "/event", COLLECTOR):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _code(resp: Response) -> tuple[int | None, str]:
    body = resp.json()
    if isinstance(body, dict):
        code = body.get("code")
        return (code if isinstance(code, int) else None), str(body.get("text") or "")
    return None, ""


class SplunkHecSink:
    max_batch = 100

    def __init__(self, cfg: SplunkHecConfig, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.name, self.cfg = cfg.name, cfg
        self.sleep, self.clock = sleep, clock
        token = cfg.token.resolve()
        base = hec_base(cfg.url)
        self.event_url, self.ack_url = base + COLLECTOR + "/event", base + COLLECTOR + "/ack"
        self.channel = str(uuid.uuid4())
        self.headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
        if cfg.ack:
            self.headers["X-Splunk-Request-Channel"] = self.channel
        self.http = HttpClient(cfg.url, timeout=cfg.retry.timeout, verify_tls=cfg.verify_tls, ca_file=cfg.ca_file,
                               secrets=[token])

    # -- rendering -------------------------------------------------------------------------------

    def event(self, alert: Alert) -> dict:
        ev: dict = {"time": round(alert.last_seen.timestamp(), 3), "event": to_json(alert)}
        for key in ("index", "sourcetype", "source", "host"):
            value = getattr(self.cfg, key)
            if value:
                ev[key] = value
        ev["fields"] = {"alert_id": alert.id, "rule_id": alert.rule_id, "severity": alert.severity}
        return ev

    def body(self, alerts: list[Alert]) -> tuple[bytes, dict[str, str]]:
        raw = "".join(json.dumps(self.event(a), separators=(",", ":")) for a in alerts).encode()
        headers = dict(self.headers)
        if self.cfg.gzip:
            raw = gziplib.compress(raw, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        return raw, headers

    # -- sending ---------------------------------------------------------------------------------

    def _post(self, alerts: list[Alert]) -> Response:
        body, headers = self.body(alerts)
        return self.http.request("POST", self.event_url, body, headers)

    def _detail(self, resp: Response) -> str | None:
        code, text = _code(resp)
        return f"{text} (code {code})" if text and code is not None else None

    def send(self, alerts: list[Alert]) -> SendResult:
        if not alerts:
            return SendResult()
        resp = self._post(alerts)
        if resp.status == 200:
            return self._settle({self._ack_id(resp): alerts})
        code, _ = _code(resp)
        if resp.status == 400 and code in DATA_CODES:
            if len(alerts) == 1:
                return SendResult(rejected={alerts[0].id: str(self.http.failure(resp, self._detail(resp)))})
            return self._one_by_one(alerts)
        raise self.http.failure(resp, self._detail(resp))

    def _one_by_one(self, alerts: list[Alert]) -> SendResult:
        """Isolate the events HEC refuses: each alert in its own request."""
        res, accepted = SendResult(), {}
        for n, alert in enumerate(alerts):
            try:
                resp = self._post([alert])
            except TransientSinkError as e:
                for a in alerts[n:]:
                    res.retry[a.id] = str(e)
                break
            if resp.status == 200:
                accepted.setdefault(self._ack_id(resp), []).append(alert)
                continue
            err = self.http.failure(resp, self._detail(resp))
            if isinstance(err, TransientSinkError):
                for a in alerts[n:]:
                    res.retry[a.id] = str(err)
                res.retry_after = err.retry_after
                break
            res.rejected[alert.id] = str(err)
        settled = self._settle(accepted)
        res.delivered += settled.delivered
        res.retry.update(settled.retry)
        return res

    def _ack_id(self, resp: Response) -> int | None:
        if not self.cfg.ack:
            return None
        body = resp.json()
        ack = body.get("ackId") if isinstance(body, dict) else None
        return ack if isinstance(ack, int) else None

    def _settle(self, accepted: dict[int | None, list[Alert]]) -> SendResult:
        """Accepted events are delivered; with ``ack`` on, once the indexers acknowledge them."""
        res = SendResult()
        # No ackId (ack off, or the token has acknowledgement disabled): accepted means delivered.
        res.delivered += [a.id for a in accepted.pop(None, [])]
        if not accepted:
            return res
        acked, last_error = self._await_acks(set(accepted))
        for ack_id, batch in accepted.items():
            if ack_id in acked:
                res.delivered += [a.id for a in batch]
            else:
                reason = f"{self.http.label}: no indexer acknowledgement within {self.cfg.ack_timeout:g}s"
                if last_error:
                    reason += f" (last poll: {last_error})"
                res.retry.update({a.id: reason for a in batch})
        return res

    def _await_acks(self, waiting: set[int]) -> tuple[set[int], str | None]:
        """Poll ``/services/collector/ack`` until every id is acknowledged or ``ack_timeout`` passes."""
        done: set[int] = set()
        last_error = None
        deadline = self.clock() + self.cfg.ack_timeout
        while True:
            body = json.dumps({"acks": sorted(waiting - done)}).encode()
            try:
                resp = self.http.check(self.http.request("POST", self.ack_url, body, self.headers))
            except PermanentSinkError as e:  # e.g. acknowledgement disabled for this token: resend later
                return done, str(e)
            except TransientSinkError as e:
                last_error = str(e)
            else:
                doc = resp.json()
                acks = doc.get("acks") if isinstance(doc, dict) else None
                if isinstance(acks, dict):
                    done |= {int(k) for k, v in acks.items() if v is True and str(k).isdigit()}
                else:
                    last_error = f"{self.http.label}: unreadable acknowledgement answer"
            if done >= waiting or self.clock() >= deadline:
                return done, last_error
            self.sleep(self.cfg.ack_poll_interval)

    def close(self) -> None:
        self.http.close()


SINK_TYPES = {"splunk_hec": (SplunkHecConfig, SplunkHecSink)}
