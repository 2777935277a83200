"""The alert-level data of ``soclake report``: every alert with its status, owner, incident and
canonical actor, the top actors counted once each, and the ATT&CK coverage of the catalogue.

Kept apart from ``report.collect`` (the totals and time series) because this part is per alert
and joins several views: ``alerts`` with ``alert_status`` (the lifecycle), ``incidents`` (which
alerts belong to one) and ``guardduty_latest`` (who a finding's access key belongs to).
"""

from __future__ import annotations

import json

import pyarrow as pa

from pipeline.analyst.principals import canonical_actors
from pipeline.detect.coverage import attack_table, coverage

_ALERTS = (
    "SELECT a.id, a.rule_id, a.title, a.severity, a.first_seen, a.last_seen, a.event_count, a.account_id, a.region, "
    "a.actor, a.resources, a.entities, a.tactics, a.techniques, a.runbook, CAST(a.dedup_key AS VARCHAR) AS dedup_key, "
    "list_filter(json_extract_string(a.evidence, '$[*].finding_id'), lambda x: x IS NOT NULL) AS finding_ids, "
    "{enriched}, s.status, s.owner, s.disposition FROM alerts a LEFT JOIN alert_status s USING (id)"
)
#: What enrichment adds to an alert (docs/enrichment.md); the src_* columns describe its first source address.
ENRICHED = ("account_name", "account_ou", "src_ip_class", "src_asn", "src_as_org", "src_country")


def _enriched(con) -> str:
    """The enrichment columns the lake's alerts have; NULL for those an older lake lacks."""
    have = {r[0] for r in con.execute("DESCRIBE alerts").fetchall()}
    cols = [f"a.{c}" if c in have else f"NULL AS {c}" for c in ENRICHED]
    return ", ".join([*cols, "a.source_ips[1] AS source_ip" if "source_ips" in have else "NULL AS source_ip"])


def alerts(con, where: str, params: list) -> list[dict]:
    """Every alert in the window, oldest first, with ``incident`` (an id or None), ``actor_key``
    (its actor spelled once for all sources) and ``account_name`` (the alert's own, else the
    lake's account cache)."""
    from pipeline.correlate.timeline import account_names

    sql = _ALERTS.format(enriched=_enriched(con))
    cur = con.execute(f"{sql}{where.replace('last_seen', 'a.last_seen')} ORDER BY a.first_seen, a.id", params)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    member = dict(con.execute("SELECT unnest(alert_ids), id FROM incidents").fetchall()) if rows else {}
    known = account_names(con) if rows else {}
    for r in rows:
        key = json.loads(r.pop("dedup_key") or "{}")
        fid = key.get("finding_id") if isinstance(key, dict) else None
        r["finding_ids"] = list(dict.fromkeys([*(r["finding_ids"] or ()), *([fid] if isinstance(fid, str) else [])]))
        r["dedup_values"] = [str(v) for v in key.values()] if isinstance(key, dict) else []
        r["incident"] = member.get(r["id"])
        r["status"] = r["status"] or "new"
        r["account_name"] = r["account_name"] or known.get(r["account_id"])
    canon = canonical_actors(rows, _findings(con, sorted({f for r in rows for f in r["finding_ids"]})))
    for r in rows:
        r["actor_key"] = canon.get(r["id"])
    return rows


def _findings(con, ids: list[str]) -> dict[str, tuple]:
    if not ids:
        return {}
    con.register("_report_finding_ids", pa.table({"id": ids}))
    try:
        rows = con.execute(
            "SELECT id, user_type, user_name, principal_id, access_key_id, account_id, partition FROM guardduty_latest "
            "WHERE id IN (SELECT id FROM _report_finding_ids)").fetchall()
    finally:
        con.unregister("_report_finding_ids")
    return {r[0]: r[1:] for r in rows}


def top_actors(rows: list[dict], limit: int = 10) -> list[tuple[str, dict[str, int]]]:
    """The ``limit`` actors with the most alerts, each spelling of one principal counted as one."""
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        if r["actor_key"]:
            parts = counts.setdefault(r["actor_key"], {})
            parts[r["severity"]] = parts.get(r["severity"], 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    return ranked[:limit]


def attack_coverage(rules, rows: list[dict]) -> dict:
    """The catalogue's tactics x techniques (``detect.coverage``) with the alerts of this report
    per technique, and the names from ``schemas/attack.yml``."""
    table = attack_table()
    fired: dict[str, int] = {}
    for r in rows:
        for t in r["techniques"] or ():
            fired[t] = fired.get(t, 0) + 1
    tactics = []
    for tactic, techs in coverage(rules).items():
        tactics.append({"id": tactic, "name": table.tactic_name(tactic), "techniques": [
            {"id": t, "name": table.technique_name(t) if t != "-" else "(no technique)", "rules": ids,
             "alerts": fired.get(t, 0) if t != "-" else 0} for t, ids in techs.items()]})
    covered = {t["id"] for tac in tactics for t in tac["techniques"] if t["id"] != "-"}
    return {"version": table.version, "tactics": tactics, "techniques": len(covered),
            "rules": sum(1 for r in rules if r.enabled), "all_tactics": len(table.tactics)}


def technique_names(ids) -> list[tuple[str, str]]:
    """(id, name) of each ATT&CK technique id, in order."""
    table = attack_table()
    return [(t, table.technique_name(t)) for t in ids or ()]
