"""Read incidents back from the lake and lay out one incident's timeline for a person."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa

from pipeline.correlate.lifecycle import history
from pipeline.errors import ConfigError
from pipeline.tables import rfc3339


def list_incidents(con: duckdb.DuckDBPyConnection, since=None, open_only: bool = False,
                   status: str | None = None, limit: int | None = None) -> list[dict]:
    """Incidents with their lifecycle status and owner (``open_only``: not closed; ``limit`` in the SQL)."""
    sql = ("SELECT i.id, i.severity, s.status, s.owner, s.disposition, i.title, i.first_seen, i.last_seen, "
           "i.alert_count, i.rule_ids, i.tactics, i.entities, i.accounts FROM incidents i JOIN incident_status s USING (id)")
    where, params = [], []
    if since is not None:
        where.append("i.last_seen >= ?")
        params.append(since)
    if open_only or status == "open":
        where.append("s.status <> 'closed'")
    elif status:
        where.append("s.status = ?")
        params.append(status)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += (" ORDER BY CASE i.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 "
            "WHEN 'low' THEN 3 ELSE 4 END, i.first_seen")
    if limit:
        sql += f" LIMIT {int(limit)}"
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, row)) for row in cur.fetchall()]
    known = account_names(con)
    for r in rows:  # the accounts as a person knows them (enrichment; docs/enrichment.md)
        r["account_names"] = [known.get(a) or a for a in r["accounts"] or []]
    return rows


def account_names(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """account id → name from the lake's account cache (empty when there is none)."""
    try:
        return dict(con.execute("SELECT account_id, account_name FROM accounts WHERE account_name IS NOT NULL").fetchall())
    except duckdb.Error:
        return {}


def lookup_evidence(con: duckdb.DuckDBPyConnection, ids: list[str]) -> tuple[dict, dict]:
    """CloudTrail events and GuardDuty findings by id: (events, findings)."""
    events, findings = {}, {}
    if ids:
        con.register("_tl_ids", pa.table({"id": ids}))
        cur = con.execute(
            "SELECT eventID, event_time, eventSource, eventName, actor, sourceIPAddress, errorCode, account_id, region "
            "FROM cloudtrail WHERE eventID IN (SELECT id FROM _tl_ids)")
        cols = [d[0] for d in cur.description]
        events = {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}
        cur = con.execute(
            "SELECT id, event_time, type, severity, title, resource_type, access_key_id, instance_id, remote_ip "
            "FROM guardduty_latest WHERE id IN (SELECT id FROM _tl_ids)")
        cols = [d[0] for d in cur.description]
        findings = {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}
        con.unregister("_tl_ids")
    return events, findings


def evidence_items(evidence: list[dict], events: dict, findings: dict) -> list[dict]:
    items = []
    for e in evidence:
        key = e.get("event_id") or e.get("finding_id")
        if key in events:
            items.append({"kind": "event", **events[key]})
        elif key in findings:
            items.append({"kind": "finding", **findings[key]})
    return sorted(items, key=lambda x: x["event_time"])


def format_event(e: dict) -> str:
    t = rfc3339(e["event_time"])
    if e["kind"] == "event":
        err = f"  ({e['errorCode']})" if e.get("errorCode") else ""
        return f"      {t}  {e['eventSource'].split('.')[0]}:{e['eventName']}{err}  by {e['actor']}  from {e['sourceIPAddress']}"
    return f"      {t}  GuardDuty {e['type']} (severity {e['severity']}) {e.get('access_key_id') or e.get('instance_id') or ''}"


def format_history(history: list[dict]) -> list[str]:
    if not history:
        return ["History: no changes yet (status new)"]
    lines = ["History:"]
    for h in history:
        extra = [f"owner {h['owner']}" if h["owner"] else "", h["disposition"] or ""]
        extra = ", ".join(x for x in extra if x)
        lines.append(f"  {rfc3339(h['changed_at'])}  {h['who']:<12} {h['action']:<7} → {h['status']}"
                     + (f" ({extra})" if extra else "") + (f": {h['note']}" if h["note"] else ""))
    return lines


def incident_timeline(con: duckdb.DuckDBPyConnection, incident_id: str) -> dict:
    rows = con.execute("SELECT * FROM incidents WHERE starts_with(id, ?)", [incident_id]).fetchall()
    names = [d[0] for d in con.description]
    if not rows:
        raise ConfigError(f"no incident with id {incident_id!r} (soclake incidents lists them)")
    if len(rows) > 1:
        raise ConfigError(f"{incident_id!r} matches {len(rows)} incidents: give more of the id")
    inc = dict(zip(names, rows[0]))
    timeline = json.loads(inc["timeline"])
    ids = sorted({e.get("event_id") or e.get("finding_id") for a in timeline for e in a["evidence"]} - {None})
    events, findings = lookup_evidence(con, ids)
    for a in timeline:
        a["events"] = evidence_items(a["evidence"], events, findings)
    state = con.execute("SELECT status, owner, disposition FROM incident_status WHERE id = ?", [inc["id"]]).fetchall()
    inc["status"], inc["owner"], inc["disposition"] = state[0] if state else ("new", None, None)
    inc["history"] = history(con, "incident", inc["id"])
    inc["timeline"] = timeline
    known = account_names(con)
    inc["account_names"] = [known.get(a) or a for a in inc.get("accounts") or []]
    return inc


def _named(inc: dict) -> list[str]:
    """``111111111111 (prod-payments)`` for each account the enrichment cache names."""
    names = inc.get("account_names") or inc["accounts"]
    return [a if n == a else f"{a} ({n})" for a, n in zip(inc["accounts"], names)]


def format_timeline(inc: dict) -> str:
    lines = [
        f"Incident {inc['id']}  [{inc['severity'].upper()}]  {status_line(inc)}",
        f"  {inc['title']}",
        f"  {rfc3339(inc['first_seen'])} → {rfc3339(inc['last_seen'])}, "
        f"{inc['alert_count']} alerts from {len(inc['rule_ids'])} rules",
        f"  tactics: {', '.join(inc['tactics']) or '-'}   techniques: {', '.join(inc['techniques']) or '-'}",
        f"  entities: {', '.join(inc['entities'])}",
        *([f"  accounts: {', '.join(_named(inc))}"] if inc.get("accounts") else []),
        "",
    ]
    for a in inc["timeline"]:
        lines.append(f"{rfc3339(a['first_seen'])}  {a['severity'].upper():<8} {a['rule_id']}: {a['title']}")
        lines += [format_event(e) for e in a["events"]]
        hidden = a["event_count"] - len(a["events"])
        if hidden > 0:
            lines.append(f"      … {hidden} more event(s) (alert {a['alert_id'][:12]})")
    return "\n".join(lines + ["", *format_history(inc.get("history", []))])


def status_line(row: dict) -> str:
    out = row.get("status") or "new"
    if row.get("disposition"):
        out += f" ({row['disposition']})"
    return out + (f", owner {row['owner']}" if row.get("owner") else "")
