"""Lifecycle changes (the lake's ``alert_events``) as alert-shaped messages: the ``status`` stream.

One message per change, so a SIEM's copy of an alert or incident can follow its status. Its id
is the event's id and its version the event's time: each change is delivered once per sink. It
has ``rule_id`` ``soclake_status``; the severity, title and ATT&CK of the alert or incident it
is about; ``dedup_key`` ``{kind, id}`` naming that target; and one evidence entry with the
change (action, status, owner, disposition, note, who, at). A sink's ``rules``/``exclude_rules``
apply to the rule of the alert concerned.
"""

from __future__ import annotations

import duckdb

from pipeline.detect.alerts import Alert, Evidence

STATUS_RULE = "soclake_status"

_SQL = """
SELECT e.*, coalesce(a.severity, i.severity) AS severity, coalesce(a.title, i.title) AS title,
       a.rule_id AS target_rule, coalesce(a.tactics, i.tactics) AS tactics,
       coalesce(a.techniques, i.techniques) AS techniques, coalesce(a.first_seen, i.first_seen) AS first_seen,
       coalesce(a.last_seen, i.last_seen) AS last_seen, a.account_id, a.actor
FROM alert_events e
LEFT JOIN alerts a ON e.kind = 'alert' AND a.id = e.id
LEFT JOIN incidents i ON e.kind = 'incident' AND i.id = e.id
WHERE coalesce(a.id, i.id) IS NOT NULL AND a.suppressed_by IS NULL
ORDER BY e.changed_at, e.event_id
"""


def status_messages(con: duckdb.DuckDBPyConnection) -> list[Alert]:
    """Every lifecycle change of a current (unsuppressed) alert or incident, oldest first."""
    return [status_message(r) for r in con.sql(_SQL).to_arrow_table().to_pylist()]


def status_message(r: dict) -> Alert:
    change = {k: r[k] for k in ("kind", "id", "action", "status", "owner", "disposition", "note", "who")}
    change["at"] = r["changed_at"].isoformat()
    if r["target_rule"]:
        change["rule_id"] = r["target_rule"]
    what = f"{r['status']}" + (f" ({r['disposition']})" if r["disposition"] else "")
    return Alert(
        id=r["event_id"], rule_id=STATUS_RULE, rule_version=1, severity=r["severity"],
        title=f"{r['kind']} {r['id'][:12]} {r['action']} by {r['who']} → {what}: {r['title']}"[:500],
        first_seen=r["first_seen"], last_seen=r["last_seen"], event_count=1, account_id=r["account_id"],
        actor=r["actor"], attack={"tactics": r["tactics"] or [], "techniques": r["techniques"] or []},
        practice="Lifecycle change of an alert or incident (soclake alert|incident ID ...)",
        runbook=f"soclake {r['kind']} {r['id']} --lake <lake> shows it with its history",
        dedup_key={"kind": r["kind"], "id": r["id"]}, window_start=r["first_seen"], window_end=r["last_seen"],
        evidence=[Evidence(event_time=r["changed_at"], fields=change)], detected_at=r["changed_at"],
    )
