"""Who and what an alert involves, looked up from its evidence, whatever columns its rule returned.

Incidents group alerts by these entities, so a GuardDuty finding on an access key and the
CloudTrail alerts of calls signed with that key land in one incident even though one names
the user "alice" and the other "arn:aws:iam::111111111111:user/alice".
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipeline.detect.alerts import Alert


def _add(out: list[str], kind: str, value) -> None:
    if value and str(value) not in ("", "None") and f"{kind}:{value}" not in out:
        out.append(f"{kind}:{value}")


def attach_entities(con: duckdb.DuckDBPyConnection, alerts: list[Alert], candidates: str | None = None) -> None:
    """Fill ``alert.entities`` from the window tables ``cloudtrail`` and ``guardduty``.

    ``candidates`` (the shared scan's table: copies of lake rows) is looked in first: only the
    evidence ids neither it nor ``guardduty`` holds are looked up in ``cloudtrail`` (the lake).
    """
    ids = sorted({i for a in alerts for e in a.evidence for i in (e.event_id, e.finding_id) if i})
    ct, gd = {}, {}
    if ids:
        con.register("_evidence_ids", pa.table({"id": ids}))
        for row in con.execute(
            "SELECT DISTINCT id, access_key_id, instance_id, actor FROM guardduty WHERE id IN (SELECT id FROM _evidence_ids)"
        ).fetchall():
            gd[row[0]] = row[1:]
        sources = ([candidates] if candidates else []) + ["cloudtrail"]
        for i, source in enumerate(sources):
            if i:  # only what the earlier sources did not hold
                left = [x for x in ids if x not in ct and x not in gd]
                if not left:
                    break
                con.register("_evidence_ids", pa.table({"id": left}))
            try:
                rows = con.execute(
                    f"SELECT eventID, actor, userIdentity.accessKeyId, userIdentity.type FROM {source} "
                    "WHERE eventID IN (SELECT id FROM _evidence_ids)"
                ).fetchall()
            except duckdb.BinderException:  # a candidates table without these fields: the lake has them
                if source != candidates:
                    raise
                continue
            for row in rows:
                ct[row[0]] = row[1:]
        con.unregister("_evidence_ids")
    for a in alerts:
        ents: list[str] = []
        for e in a.evidence:
            for i in (e.event_id, e.finding_id):
                if i in ct:
                    actor, key, typ = ct[i]
                    if typ != "AWSService":
                        _add(ents, "principal", actor)
                    _add(ents, "access_key", key)
                if i in gd:
                    key, instance, _ = gd[i]
                    _add(ents, "access_key", key)
                    _add(ents, "instance", instance)
        if not ents and a.actor:
            _add(ents, "principal", a.actor)
        for r in a.resources:
            if r.startswith("i-"):
                _add(ents, "instance", r)
        a.entities = ents or ([f"account:{a.account_id}"] if a.account_id else [])
