"""Incidents as alert-shaped messages, so every sink (and rendering) can deliver them.

An incident message has ``rule_id`` ``soclake_incident``, the incident's id, title, severity,
first/last seen, ATT&CK tactics, entities, and one evidence entry per alert in its timeline.
Its version is the incident's ``updated_at``: when a late alert extends an incident, the
incident is delivered again (an update under the same id).
"""

from __future__ import annotations

import json

from pipeline.detect.alerts import Alert, Evidence

INCIDENT_RULE = "soclake_incident"


def incident_message(row: dict) -> Alert:
    timeline = json.loads(row["timeline"]) if isinstance(row["timeline"], str) else row["timeline"]
    one = lambda xs: xs[0] if xs and len(xs) == 1 else None  # noqa: E731
    return Alert(
        id=row["id"], rule_id=INCIDENT_RULE, rule_version=1, title=row["title"], severity=row["severity"],
        first_seen=row["first_seen"], last_seen=row["last_seen"], event_count=max(1, row["alert_count"]),
        account_id=one(row["accounts"]), actor=one(row["actors"]), resources=list(row["entities"] or [])[:20],
        attack={"tactics": row["tactics"] or [], "techniques": row["techniques"] or []},
        practice="Incident: alerts grouped by the principal, access key or instance they share",
        runbook=f"Open the timeline: soclake incident {row['id']} --lake <lake>",
        dedup_key={"incident": row["id"]}, window_start=row["first_seen"], window_end=row["last_seen"],
        evidence=[Evidence(fields={"alert_id": a["alert_id"], "rule_id": a["rule_id"], "severity": a["severity"],
                                   "title": a["title"]}) for a in timeline[:20]],
        entities=list(row["entities"] or []), detected_at=row["updated_at"],
    )
