"""Generic webhook with a payload template: Slack, Microsoft Teams, PagerDuty Events API v2, or JSON.

```yaml
- name: slack
  type: webhook
  template: slack
  url: {env: SLACK_WEBHOOK_URL}       # the URL is a credential: a secret reference (a plain string works too)
- name: pagerduty
  type: webhook
  template: pagerduty                 # url defaults to the Events API v2 endpoint
  routing_key: {env: PD_ROUTING_KEY}
  min_severity: high
- name: soar
  type: webhook
  template: json                      # the soclake alert JSON (format: ocsf for OCSF)
  url: https://soar.example.com/hooks/soclake
  headers: {Authorization: {env: SOAR_AUTH}}
  batch: true                         # a JSON array of up to batch_size alerts per request
```

One request per alert (a JSON array per batch with ``template: json`` and ``batch: true``). 2xx is
delivered; 408/429/5xx and no answer are retried (``Retry-After`` honoured) and the rest of the
batch waits for the next attempt; any other status parks the alert with an excerpt of the answer.
The URL and header values never appear in a message: the endpoint is named by scheme and host.
PagerDuty deduplicates on ``dedup_key`` (the alert id), so a resend updates the same incident.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Literal

from pydantic import Field, model_validator

from pipeline.detect.alerts import Alert
from pipeline.errors import ConfigError
from pipeline.forward.base import SendResult, SinkConfig, TransientSinkError
from pipeline.forward.render import to_json, to_ocsf
from pipeline.forward.secrets import SecretRef
from pipeline.forward.sinks.http_common import HttpClient, Response, check_url, resolve

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
PD_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info", "info": "info"}
SLACK_EMOJI = {"critical": ":red_circle:", "high": ":large_orange_circle:", "medium": ":large_yellow_circle:",
               "low": ":large_blue_circle:", "info": ":white_circle:"}
_SECRET_HEADER_WORDS = ("auth", "token", "key", "secret", "signature", "cookie")
TEAMS_COLOR = {"critical": "8B0000", "high": "D9534F", "medium": "F0AD4E", "low": "5BC0DE", "info": "AAAAAA"}


class WebhookConfig(SinkConfig):
    type: Literal["webhook"]
    url: str | SecretRef | None = Field(None, description="required except for pagerduty (Events API v2 default)")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, str | SecretRef] = Field(default_factory=dict)
    template: Literal["json", "slack", "teams", "pagerduty"] = "json"
    teams_card: Literal["adaptive", "messagecard"] = "adaptive"
    routing_key: SecretRef | None = Field(None, description="PagerDuty integration (routing) key")
    format: Literal["soclake", "ocsf"] = Field("soclake", description="json template: the rendering")
    batch: bool = Field(False, description="json template: a JSON array of alerts per request")
    verify_tls: bool = True
    ca_file: str | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.template == "pagerduty":
            if self.routing_key is None:
                raise ValueError("template pagerduty needs routing_key (a secret reference)")
            if self.url is None:
                self.url = PAGERDUTY_URL
        elif self.routing_key is not None:
            raise ValueError("routing_key is for template pagerduty only")
        if self.url is None:
            raise ValueError(f"template {self.template} needs url")
        if isinstance(self.url, str):
            check_url(self.url)
        if self.batch and self.template != "json":
            raise ValueError("batch is for template json only")
        return self


def _facts(a: Alert) -> list[tuple[str, str]]:
    facts = [("Severity", a.severity), ("Rule", f"{a.rule_id} (v{a.rule_version})"), ("Account", a.account_id),
             ("Region", a.region), ("Actor", a.actor), ("Events", str(a.event_count)),
             ("First seen", a.first_seen.isoformat()), ("Last seen", a.last_seen.isoformat()),
             ("Source IPs", ", ".join(a.source_ips[:5])), ("ATT&CK", ", ".join(a.attack.tactics + a.attack.techniques))]
    return [(k, v) for k, v in facts if v]


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _mrkdwn(text: str) -> str:
    """Slack escaping: alert text is data (an actor name must not become <!channel> or a link)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(a: Alert) -> dict:
    title = f"[{a.severity.upper()}] {a.title}"
    return {
        "text": _cut(_mrkdwn(title), 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(f"{SLACK_EMOJI[a.severity]} {title}", 150),
                                        "emoji": True}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": _cut(f"*{k}*\n{_mrkdwn(v)}", 2000)}
                                           for k, v in _facts(a)[:10]]},
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut("*Runbook*\n" + _mrkdwn(a.runbook), 3000)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"soclake alert `{a.id}` · {a.practice} · "
                                                                        f"detected {a.detected_at.isoformat()}"}]},
        ],
    }


def teams_payload(a: Alert, card: str) -> dict:
    title = f"[{a.severity.upper()}] {a.title}"
    if card == "messagecard":
        return {"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": _cut(title, 200),
                "themeColor": TEAMS_COLOR[a.severity], "title": title,
                "sections": [{"facts": [{"name": k, "value": v} for k, v in _facts(a)], "text": a.runbook},
                             {"text": f"soclake alert {a.id}"}]}
    content = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
        "body": [
            {"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": True, "text": title,
             "color": "Attention" if a.severity in ("high", "critical") else "Default"},
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(a)]},
            {"type": "TextBlock", "wrap": True, "text": a.runbook},
            {"type": "TextBlock", "wrap": True, "isSubtle": True, "size": "Small", "text": f"soclake alert {a.id}"},
        ],
    }
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "contentUrl": None, "content": content}]}


def pagerduty_payload(a: Alert, routing_key: str) -> dict:
    source = "/".join(x for x in (a.account_id, a.region) if x) or "soclake"
    return {
        "routing_key": routing_key, "event_action": "trigger", "dedup_key": a.id, "client": "soclake",
        "payload": {
            "summary": _cut(a.title, 1024), "source": source, "severity": PD_SEVERITY[a.severity],
            "timestamp": a.last_seen.isoformat(), "class": a.rule_id, "group": a.practice,
            "component": a.resources[0] if a.resources else (a.actor or "aws"),
            "custom_details": {
                "alert_id": a.id, "rule_id": a.rule_id, "rule_version": a.rule_version, "severity": a.severity,
                "event_count": a.event_count, "first_seen": a.first_seen.isoformat(),
                "last_seen": a.last_seen.isoformat(), "account_id": a.account_id, "region": a.region, "actor": a.actor,
                "source_ips": a.source_ips, "resources": a.resources, "attack": a.attack.model_dump(),
                "entities": a.entities, "runbook": a.runbook, "detected_at": a.detected_at.isoformat(),
            },
        },
    }


class WebhookSink:
    def __init__(self, cfg: WebhookConfig):
        self.name, self.cfg = cfg.name, cfg
        self.url = check_url(resolve(cfg.url), "url (from its secret reference)", ConfigError)
        self.routing_key = resolve(cfg.routing_key)
        self.max_batch = 100 if cfg.batch else 1
        headers = {k: resolve(v) for k, v in cfg.headers.items()}
        self.headers = {"Content-Type": "application/json", **headers}
        path = urllib.parse.urlsplit(self.url)
        secrets = [self.url, path.path, path.query, self.routing_key]
        secrets += [v for k, v in headers.items()
                    if isinstance(cfg.headers[k], SecretRef) or any(w in k.lower() for w in _SECRET_HEADER_WORDS)]
        self.http = HttpClient(self.url, timeout=cfg.retry.timeout, verify_tls=cfg.verify_tls, ca_file=cfg.ca_file,
                               secrets=secrets)

    def payload(self, alert: Alert):
        t = self.cfg.template
        if t == "slack":
            return slack_payload(alert)
        if t == "teams":
            return teams_payload(alert, self.cfg.teams_card)
        if t == "pagerduty":
            return pagerduty_payload(alert, self.routing_key)
        return to_ocsf(alert) if self.cfg.format == "ocsf" else to_json(alert)

    def _post(self, doc) -> Response:
        body = json.dumps(doc, separators=(",", ":")).encode()
        return self.http.request(self.cfg.method, self.url, body, self.headers)

    def send(self, alerts: list[Alert]) -> SendResult:
        if not alerts:
            return SendResult()
        if self.cfg.batch:
            self.http.check(self._post([self.payload(a) for a in alerts]))
            return SendResult(delivered=[a.id for a in alerts])
        res = SendResult()
        for n, alert in enumerate(alerts):
            try:
                resp = self._post(self.payload(alert))
                if resp.ok:
                    res.delivered.append(alert.id)
                    continue
                err = self.http.failure(resp)
            except TransientSinkError as e:
                err = e
            if isinstance(err, TransientSinkError):  # the rest waits: do not hammer a busy or down receiver
                res.retry.update({a.id: str(err) for a in alerts[n:]})
                res.retry_after = err.retry_after
                break
            res.rejected[alert.id] = str(err)
        return res

    def close(self) -> None:
        self.http.close()


SINK_TYPES = {"webhook": (WebhookConfig, WebhookSink)}
