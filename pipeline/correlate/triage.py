"""The analyst's view of alerts: the queue (``soclake alerts``) and one alert with its evidence
and history (``soclake alert ID``). Read-only; changes go through :mod:`pipeline.correlate.lifecycle`."""

from __future__ import annotations

import datetime as dt
import json

import duckdb

from pipeline.correlate.lifecycle import history, resolve
from pipeline.correlate.timeline import evidence_items, format_event, format_history, lookup_evidence, status_line
from pipeline.tables import rfc3339

RANK = ("info", "low", "medium", "high", "critical")
_COLUMNS = ("a.id, s.status, s.owner, s.disposition, a.severity, a.rule_id, a.title, a.first_seen, a.last_seen, "
            "a.event_count, a.account_id, a.actor, a.suppressed_by, a.account_name, a.account_ou, a.src_ip_class, "
            "a.src_asn, a.src_as_org, a.src_country")


def list_alerts(con: duckdb.DuckDBPyConnection, *, status: str | None = None, severity: str | None = None,
                rule: str | None = None, since: dt.datetime | None = None, limit: int | None = None,
                suppressed: bool = False) -> list[dict]:
    """Current alerts with their status, newest activity first.

    ``status`` ``open`` means not closed; ``severity`` is a minimum (high: high and critical);
    ``rule`` is a rule id or glob (iam_*); ``since`` keeps alerts active since then."""
    where, params = [], []
    if status == "open":
        where.append("s.status <> 'closed'")
    elif status:
        where.append("s.status = ?")
        params.append(status)
    if severity:
        where.append("list_position(?, a.severity) >= ?")
        params += [list(RANK), RANK.index(severity) + 1]
    if rule:
        where.append("a.rule_id GLOB ?")
        params.append(rule)
    if since is not None:
        where.append("a.last_seen >= ?")
        params.append(since)
    if not suppressed:
        where.append("a.suppressed_by IS NULL")
    sql = f"SELECT {_COLUMNS} FROM alerts a JOIN alert_status s USING (id)"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY a.last_seen DESC, a.id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def account_line(a: dict) -> str:
    """``111111111111 (prod-payments, Root/Prod)`` when enrichment named the account."""
    extra = ", ".join(x for x in (a.get("account_name"), a.get("account_ou")) if x)
    return f"{a['account_id'] or '-'}" + (f" ({extra})" if extra else "")


def source_line(a: dict) -> str:
    """`` — first: public, AS64500 Example Hosting, GB`` from the enrichment of the alert's naming row."""
    asn = f"AS{a['src_asn']} {a.get('src_as_org') or ''}".strip() if a.get("src_asn") else a.get("src_as_org")
    parts = [x for x in (a.get("src_ip_class"), asn, a.get("src_country")) if x]
    return f" — first: {', '.join(parts)}" if parts else ""


def alert_detail(con: duckdb.DuckDBPyConnection, given_id: str) -> dict:
    """One alert (a unique id prefix): its newest version, status, evidence read back from the lake, history."""
    alert_id = resolve(con, "alert", given_id)
    cur = con.execute("SELECT a.*, s.status, s.owner, s.disposition FROM alerts a JOIN alert_status s USING (id) "
                      "WHERE id = ?", [alert_id])
    names = [d[0] for d in cur.description]
    row = dict(zip(names, cur.fetchall()[0]))
    row.pop("event_date", None)
    row["evidence"] = json.loads(row["evidence"] or "[]")
    row["dedup_key"] = json.loads(row["dedup_key"] or "{}")
    ids = sorted({e.get("event_id") or e.get("finding_id") for e in row["evidence"]} - {None})
    events, findings = lookup_evidence(con, ids)
    row["events"] = evidence_items(row["evidence"], events, findings)
    row["incidents"] = [r[0] for r in con.execute(
        "SELECT id FROM incidents WHERE list_contains(alert_ids, ?) ORDER BY id", [alert_id]).fetchall()]
    row["history"] = history(con, "alert", alert_id)
    return row


def format_alert(a: dict) -> str:
    lines = [
        f"Alert {a['id']}  [{a['severity'].upper()}]  {status_line(a)}",
        f"  {a['title']}",
        f"  rule {a['rule_id']} (version {a['rule_version']}); {a['event_count']} event(s) "
        f"{rfc3339(a['first_seen'])} → {rfc3339(a['last_seen'])}",
        f"  account {account_line(a)}  region {a['region'] or '-'}  actor {a['actor'] or '-'}",
        f"  source IPs: {', '.join(a['source_ips'] or []) or '-'}{source_line(a)}",
        f"  tactics: {', '.join(a['tactics'] or []) or '-'}   techniques: {', '.join(a['techniques'] or []) or '-'}",
    ]
    if a.get("suppressed_by"):
        lines.append(f"  suppressed by {a['suppressed_by']}")
    if a["incidents"]:
        lines.append(f"  incident: {', '.join(i[:12] for i in a['incidents'])} (soclake incident ID)")
    lines += ["", "Runbook:", *("  " + x for x in (a["runbook"] or "-").strip().splitlines()), "", "Evidence:"]
    lines += [format_event(e) for e in a["events"]]
    shown = {e.get("eventID") or e.get("id") for e in a["events"]}
    for e in a["evidence"]:  # what the lake no longer holds (or never did): the alert's own copy
        key = e.get("event_id") or e.get("finding_id")
        if key not in shown:
            lines.append(f"      {key or '-'}  {json.dumps(e.get('fields') or {}, default=str)[:160]}")
    hidden = a["event_count"] - len(a["evidence"])
    if hidden > 0:
        lines.append(f"      … {hidden} more event(s) not kept as evidence")
    return "\n".join(lines + ["", *format_history(a["history"])])
