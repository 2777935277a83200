"""Verification results → alerts in the lake's ``alerts`` table (then incidents and sinks, like any alert).

One alert per rule, account/region/trail and UTC day, listing the objects behind it as evidence.
Ids are deterministic (rule id + dedup key + day): a rerun of ``verify`` finds the same alerts
again, and an alert that gains objects becomes a new version, never a second alert.
"""

from __future__ import annotations

import collections
import datetime as dt
from dataclasses import dataclass

from pipeline.detect.alerts import MAX_EVIDENCE, Alert, AlertAttack, Evidence, alert_id
from pipeline.integrity import verify as v

PRACTICE = "Centralise and protect your CloudTrail logs: log file validation on, and every digest verified"


@dataclass(frozen=True)
class IntegrityRule:
    id: str
    title: str
    severity: str
    description: str
    tactics: tuple[str, ...]
    techniques: tuple[str, ...]
    runbook: str
    version: int = 1


RULES = {
    "modified": IntegrityRule(
        "integrity_log_file_modified", "CloudTrail log file modified after delivery", "critical",
        "A log file's SHA-256 differs from the hash its signed digest file lists: its content changed after CloudTrail delivered it.",
        ("TA0005", "TA0040"), ("T1070", "T1565.001"),
        "Treat the account as compromised: the evidence was edited. Compare the file with the lake's copy "
        "(soclake query on source_object), find who wrote to the bucket (S3 data events, bucket policy changes), "
        "lock the bucket (Object Lock, deny s3:PutObject except CloudTrail) and preserve a copy."),
    "deleted": IntegrityRule(
        "integrity_log_file_deleted", "CloudTrail log file deleted", "high",
        "A log file listed in a signed digest file is no longer in the bucket.",
        ("TA0005",), ("T1070",),
        "Check lifecycle rules and retention first (an expiry rule deletes old files legitimately). Otherwise find "
        "the DeleteObject caller (S3 data events, or the lake's copy of the events around it) and restore from "
        "versioning or the lake."),
    "chain": IntegrityRule(
        "integrity_digest_chain_broken", "CloudTrail digest chain broken", "high",
        "A digest file fails its signature, is missing from the chain, or does not link to the digest before it.",
        ("TA0005",), ("T1070", "T1565.001"),
        "An invalid signature means a digest was forged or edited (critical); a missing one was deleted. Find who "
        "wrote to or deleted from CloudTrail-Digest/ and verify the surrounding hours' log files against the lake."),
    "gap": IntegrityRule(
        "integrity_digest_gap", "CloudTrail digests stopped arriving", "medium",
        "No digest file for longer than the allowed gap: the trail stopped logging, log file validation was turned "
        "off, digests were deleted, or delivery to the bucket is failing.",
        ("TA0005",), ("T1562.008",),
        "Look for StopLogging, UpdateTrail or DeleteTrail in the lake around the gap's start, and the trail's "
        "delivery errors (aws cloudtrail get-trail-status)."),
    "not_listed": IntegrityRule(
        "integrity_log_file_not_in_digest", "CloudTrail log file not covered by any digest", "critical",
        "A log file sits in the trail's folders but no digest lists it, although later digests exist: it was put "
        "there after delivery (fabricated evidence) or the digest that listed it is gone.",
        ("TA0005", "TA0040"), ("T1565.001", "T1070"),
        "Someone is editing the evidence: the file was not delivered by CloudTrail. Find who wrote it (S3 data "
        "events, the object's owner and upload time), do not trust its events, and lock the bucket."),
}
KIND_RULE = {v.LOG_MODIFIED: "modified", v.LOG_DELETED: "deleted", v.DIGEST_INVALID: "chain", v.DIGEST_MISSING: "chain",
             v.CHAIN_BROKEN: "chain", v.GAP: "gap", v.LOG_NOT_LISTED: "not_listed"}
_DAY = dt.timedelta(days=1)


def build_alerts(report: v.VerifyReport, detected_at: dt.datetime) -> list[Alert]:
    groups: dict[tuple, list[v.Problem]] = collections.defaultdict(list)
    for p in report.problems:
        day = dt.datetime.combine(p.time.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
        groups[(KIND_RULE[p.kind], p.account, p.region, p.trail, day)].append(p)
    out = []
    for (name, account, region, trail, day), problems in sorted(groups.items()):
        rule = RULES[name]
        severity = "critical" if any(p.kind == v.DIGEST_INVALID for p in problems) else rule.severity
        key = {"account_id": account, "region": region, "trail": trail}
        objects = list(dict.fromkeys(p.uri for p in problems))
        out.append(Alert(
            id=alert_id(rule.id, key, day), rule_id=rule.id, rule_version=rule.version,
            title=f"{rule.title}: {len(problems)} in {account} {region}" + (f" (trail {trail})" if trail else ""),
            severity=severity, first_seen=min(p.time for p in problems), last_seen=max(p.time for p in problems),
            event_count=len(problems), account_id=account, region=region, actor=None, resources=objects[:20],
            attack=AlertAttack(tactics=list(rule.tactics), techniques=list(rule.techniques)),
            practice=PRACTICE, runbook=rule.runbook, dedup_key=key, window_start=day, window_end=day + _DAY,
            evidence=[Evidence(event_time=p.time, fields={"object": p.uri, "problem": p.kind, "detail": p.detail})
                      for p in problems[:MAX_EVIDENCE]],
            entities=[f"account:{account}"] + ([f"trail:{trail}"] if trail else []), detected_at=detected_at,
        ))
    return out


def write_alerts(lake: str, store, report: v.VerifyReport) -> tuple[list[Alert], list[Alert]]:
    """Write the report's alerts as new or updated versions; returns (new, updated)."""
    import duckdb

    from pipeline.detect import alert_store
    from pipeline.lake.ledger import new_run_id

    alerts = build_alerts(report, dt.datetime.now(dt.UTC))
    if not alerts:
        return [], []
    con = duckdb.connect()
    try:
        alert_store.register_alerts_view(con, lake)
        known = alert_store.existing(con, [a.id for a in alerts])
    finally:
        con.close()
    return alert_store.write_alerts(store, alerts, known, "verify-" + new_run_id())
