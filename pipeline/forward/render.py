"""Alert renderings shared by sinks: soclake JSON, OCSF Detection Finding (class 2004), ASFF."""

from __future__ import annotations

import datetime as dt

from pipeline import __version__
from pipeline.detect.alerts import Alert

SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
ASFF_LABEL = {"info": "INFORMATIONAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH", "critical": "CRITICAL"}
ASFF_NORMALIZED = {"info": 0, "low": 30, "medium": 50, "high": 70, "critical": 90}
#: ATT&CK tactic → ASFF finding type namespace/category.
ASFF_TYPES = {
    "TA0001": "TTPs/Initial Access", "TA0002": "TTPs/Execution", "TA0003": "TTPs/Persistence",
    "TA0004": "TTPs/Privilege Escalation", "TA0005": "TTPs/Defense Evasion", "TA0006": "TTPs/Credential Access",
    "TA0007": "TTPs/Discovery", "TA0008": "TTPs/Lateral Movement", "TA0009": "TTPs/Collection",
    "TA0010": "Effects/Data Exfiltration", "TA0011": "TTPs/Command and Control", "TA0040": "Effects/Data Destruction",
}


def to_json(alert: Alert) -> dict:
    """The soclake alert contract (schemas/alert.schema.json)."""
    return alert.model_dump(mode="json")


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def to_ocsf(alert: Alert) -> dict:
    """OCSF 1.1 Detection Finding (category 2 Findings, class 2004)."""
    activity = 1  # Create: an update of an alert is a new version under the same finding uid
    return {
        "category_uid": 2, "class_uid": 2004, "activity_id": activity, "type_uid": 2004 * 100 + activity,
        "severity_id": SEVERITY_ID[alert.severity], "severity": alert.severity.capitalize(),
        "status_id": 1, "status": "New", "time": _ms(alert.detected_at),
        "message": alert.title,
        "metadata": {"version": "1.1.0", "uid": alert.id,
                     "product": {"name": "soclake", "vendor_name": "soclake", "version": __version__}},
        "finding_info": {
            "uid": alert.id, "title": alert.title, "desc": alert.runbook,
            "first_seen_time": _ms(alert.first_seen), "last_seen_time": _ms(alert.last_seen),
            "analytic": {"uid": alert.rule_id, "name": alert.rule_id, "type_id": 1, "type": "Rule",
                         "version": str(alert.rule_version)},
            "attacks": [{"tactic": {"uid": t}} for t in alert.attack.tactics]
            + [{"technique": {"uid": t}} for t in alert.attack.techniques],
            "related_events": [{"uid": e.event_id or e.finding_id} for e in alert.evidence],
        },
        "cloud": {"provider": "AWS", "account": {"uid": alert.account_id, "type": "AWS Account"}, "region": alert.region},
        "actor": {"user": {"uid": alert.actor, "name": alert.actor}} if alert.actor else None,
        "src_endpoint": {"ip": alert.source_ips[0]} if alert.source_ips else None,
        "resources": [{"uid": r} for r in alert.resources],
        "count": alert.event_count,
        "unmapped": {"practice": alert.practice, "entities": alert.entities},
    }


def to_asff(alert: Alert, product_account: str, product_region: str) -> dict:
    """AWS Security Finding Format, imported into Security Hub with BatchImportFindings."""
    iso = lambda t: t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"  # noqa: E731
    types = [f"{ASFF_TYPES.get(t, 'Unusual Behaviors')}/{alert.rule_id}" for t in alert.attack.tactics] or [
        f"Unusual Behaviors/{alert.rule_id}"]
    resources = [{"Type": "Other", "Id": r[:512]} for r in alert.resources[:31]]
    if alert.account_id:
        resources.append({"Type": "AwsAccount", "Id": f"AWS::::Account:{alert.account_id}"})
    return {
        "SchemaVersion": "2018-10-08",
        "Id": alert.id,
        "ProductArn": f"arn:aws:securityhub:{product_region}:{product_account}:product/{product_account}/default",
        "GeneratorId": f"soclake/{alert.rule_id}",
        "AwsAccountId": alert.account_id or product_account,
        "Types": types[:50],
        "CreatedAt": iso(alert.detected_at), "UpdatedAt": iso(alert.detected_at),
        "FirstObservedAt": iso(alert.first_seen), "LastObservedAt": iso(alert.last_seen),
        "Severity": {"Label": ASFF_LABEL[alert.severity], "Normalized": ASFF_NORMALIZED[alert.severity]},
        "Title": alert.title[:256],
        "Description": (alert.practice + ": " + alert.title)[:1024],
        "Remediation": {"Recommendation": {"Text": alert.runbook[:512]}},
        "ProductFields": {"soclake/rule_id": alert.rule_id, "soclake/rule_version": str(alert.rule_version),
                          "soclake/event_count": str(alert.event_count), "soclake/actor": (alert.actor or "")[:1024]},
        "Resources": resources or [{"Type": "Other", "Id": "unknown"}],
        "Region": alert.region or product_region,
        "RecordState": "ACTIVE",
        "Workflow": {"Status": "NEW"},
    }
