"""The alert contract (a pydantic model; ``schemas/alert.schema.json`` is generated from it) and
how a rule's output rows become alerts.

Alert ids are deterministic: sha256 of rule id, the dedup key values and the dedup window the
match falls in (tumbling windows aligned to the epoch). Reruns, overlapping windows and late
data therefore find the same id again and update that alert instead of raising another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["info", "low", "medium", "high", "critical"]
MAX_EVIDENCE = 20
#: Output columns with a meaning of their own; every other column is evidence.
STANDARD = {
    "event_time", "first_seen", "last_seen", "event_count", "account_id", "region", "actor", "severity",
    "sourceIPAddress", "source_ip", "remote_ip", "resources", "resource", "eventID", "event_ids", "finding_id", "finding_ids",
}
#: Columns enrichment adds to every row (pipeline/enrich/apply.py): they stay in the evidence and
#: the alert takes those of the row that names it.
ENRICHED = ("account_name", "account_ou", "src_ip_class", "src_asn", "src_as_org", "src_country")
#: Names an ``alert_title`` may use besides the query's own columns.
TEMPLATE_FIELDS = {"rule_id", "event_count", "account_id", "region", "actor", "severity", "first_seen", "last_seen",
                   *ENRICHED}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_RANK = ("info", "low", "medium", "high", "critical")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Evidence(Strict):
    """One event or finding behind an alert, with a few of its fields."""

    event_id: str | None = Field(None, description="CloudTrail eventID")
    finding_id: str | None = Field(None, description="GuardDuty finding id")
    event_time: dt.datetime | None = None
    fields: dict[str, Any] = Field(default_factory=dict, description="other columns the rule returned")


class AlertAttack(Strict):
    tactics: list[str]
    techniques: list[str]


class Alert(Strict):
    """One alert: a rule's matches for one dedup key within one dedup window."""

    id: str = Field(description="deterministic: sha256(rule id, dedup key values, window start)[:32]")
    rule_id: str
    rule_version: int
    title: str
    severity: Severity
    first_seen: dt.datetime
    last_seen: dt.datetime
    event_count: int = Field(ge=1)
    account_id: str | None = None
    region: str | None = None
    actor: str | None = None
    source_ips: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    attack: AlertAttack
    practice: str
    runbook: str
    dedup_key: dict[str, Any] = Field(default_factory=dict)
    window_start: dt.datetime = Field(description="start of the dedup window the alert belongs to")
    window_end: dt.datetime
    evidence: list[Evidence] = Field(default_factory=list, description=f"up to {MAX_EVIDENCE} events or findings")
    entities: list[str] = Field(default_factory=list, description="who and what the evidence involves, e.g. "
                                "principal:<arn>, access_key:<id>, instance:<id>; incidents group alerts by these")
    detected_at: dt.datetime = Field(description="when this version of the alert was produced")
    suppressed_by: str | None = Field(None, description="the suppression entry that matched ('<id>: <reason>'): the "
                                      "alert is kept in the lake but not forwarded nor grouped into incidents")
    account_name: str | None = Field(None, description="the account's name (enrichment: AWS Organizations or a CSV, "
                                     "cached in the lake; NULL when unknown)")
    account_ou: str | None = Field(None, description="the account's OU path, e.g. Root/Prod/Payments (enrichment)")
    src_ip_class: str | None = Field(None, description="class of the source address: aws (AWS's own addresses and "
                                     "service principals), private, loopback, link_local, reserved, public, hostname")
    src_asn: int | None = Field(None, description="autonomous system number of the source address (IP database)")
    src_as_org: str | None = Field(None, description="organisation of that autonomous system (IP database)")
    src_country: str | None = Field(None, description="ISO 3166 country code of the source address (IP database)")


def _utc(v) -> dt.datetime | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(v)).astimezone(dt.UTC)


def _jsonable(v):
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, (dt.date,)):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, str) and len(v) > 300:
        return v[:300] + "…"
    return v


def alert_id(rule_id: str, key: dict, window_start: dt.datetime) -> str:
    raw = json.dumps([rule_id, sorted((k, str(v)) for k, v in key.items()), window_start.isoformat()])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class _Fmt(dict):
    def __missing__(self, key):
        return "?"


def render_title(template: str, values: dict) -> str:
    return template.format_map(_Fmt({k: ("?" if v is None else v) for k, v in values.items()}))


def _row_order(row: dict) -> tuple:
    t = _utc(row.get("last_seen") or row.get("event_time"))
    ids = row.get("event_ids") or row.get("finding_ids") or ()
    return (t.isoformat() if t else "", str(row.get("eventID") or row.get("finding_id") or ""), str(list(ids)),
            json.dumps(row, default=str, sort_keys=True))


def build_alerts(rule, rows: list[dict], detected_at: dt.datetime) -> list[Alert]:
    """Group a rule's output rows by (dedup key, window) into alerts."""
    width = rule.dedup.delta
    groups: dict[tuple, list[dict]] = {}
    # A stable order (time, then event/finding ids) makes the evidence, the naming row and the
    # title the same whichever order DuckDB's threads or the run's windows produced the rows in.
    for row in sorted(rows, key=_row_order):
        t = _utc(row.get("last_seen") or row.get("event_time"))
        if t is None:
            continue
        start = _EPOCH + ((t - _EPOCH) // width) * width
        key = tuple(str(row.get(k)) for k in rule.dedup.keys)
        groups.setdefault((key, start), []).append(row)
    out = []
    for (_, start), grp in groups.items():
        out.append(_alert(rule, grp, start, start + width, detected_at))
    return out


def _alert(rule, rows: list[dict], start, end, detected_at) -> Alert:
    first = min(_utc(r.get("first_seen") or r.get("event_time")) for r in rows)
    last = max(_utc(r.get("last_seen") or r.get("event_time")) for r in rows)
    listed = [i for r in rows for i in (r.get("event_ids") or r.get("finding_ids") or ())]
    if listed:  # overlapping group rows (sliding windows) share events: count each once
        count = max(len(set(listed)), max(int(r.get("event_count") or 0) for r in rows))
    else:
        count = sum(int(r.get("event_count") or 1) for r in rows)
    # The fullest match names the alert (sliding windows yield several overlapping ones);
    # among equals, the most severe row, then the earliest.
    head = max(rows, key=lambda r: (int(r.get("event_count") or 1),
                                    _RANK.index(r["severity"]) if r.get("severity") in _RANK else -1))
    ips, resources, evidence = [], [], []
    for r in rows:
        for col in ("sourceIPAddress", "source_ip", "remote_ip"):
            if r.get(col) and r[col] not in ips:
                ips.append(str(r[col]))
        res = r.get("resources") if r.get("resources") is not None else r.get("resource")
        for item in res if isinstance(res, list) else ([res] if res else []):
            if isinstance(item, dict):
                item = item.get("ARN") or json.dumps(item, default=str)
            if item and str(item) not in resources:
                resources.append(str(item))
        fields = {k: _jsonable(v) for k, v in r.items() if k not in STANDARD and v is not None}
        ids = r.get("event_ids") or r.get("finding_ids")
        if ids:
            kind = "event_id" if r.get("event_ids") else "finding_id"
            have = {e.event_id or e.finding_id for e in evidence}
            for i in [i for i in ids if str(i) not in have][: MAX_EVIDENCE - len(evidence)]:
                evidence.append(Evidence(**{kind: str(i)}, event_time=_utc(r.get("last_seen")), fields=fields))
        elif len(evidence) < MAX_EVIDENCE:
            evidence.append(Evidence(event_id=r.get("eventID"), finding_id=r.get("finding_id"),
                                     event_time=_utc(r.get("event_time") or r.get("last_seen")), fields=fields))
    # A query may set severity per row; the alert takes the highest of its rows.
    ranked = [r.get("severity") for r in rows if r.get("severity") in _RANK]
    severity = max(ranked, key=_RANK.index) if ranked else rule.severity
    key = {k: _jsonable(head.get(k)) for k in rule.dedup.keys}
    values = {**getattr(rule, "values", {}), **head, "rule_id": rule.id, "event_count": count, "severity": severity,
              "first_seen": first.isoformat(), "last_seen": last.isoformat()}
    if head.get("account_id") and head.get("account_name"):  # titles name the account as a person knows it
        values["account_id"] = f"{head['account_id']} ({head['account_name']})"
    return Alert(
        id=alert_id(rule.id, key, start), rule_id=rule.id, rule_version=rule.version,
        title=render_title(rule.alert_title, values), severity=severity, first_seen=first, last_seen=last,
        event_count=count, account_id=head.get("account_id"), region=head.get("region"), actor=head.get("actor"),
        source_ips=ips[:20], resources=resources[:20],
        attack=AlertAttack(tactics=list(rule.attack.tactics), techniques=list(rule.attack.techniques)),
        practice=rule.practice, runbook=rule.runbook, dedup_key=key, window_start=start, window_end=end,
        evidence=evidence, detected_at=detected_at, **{k: head.get(k) for k in ENRICHED},
    )


def alert_json_schema() -> dict:
    schema = Alert.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
