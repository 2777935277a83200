"""Group alerts into incidents: the few things an analyst should open first.

Two alerts belong to one incident when they share an entity (principal, access key, instance;
the account only for alerts that name nothing narrower) and the later one starts within
``window`` of the incident's last activity. Linking is transitive, so an access key ties a
GuardDuty finding to the CloudTrail alerts of the calls signed with it, and those to the other
alerts of the same principal.

An incident is kept when its alerts come from at least two rules, or one of them is high or
critical: a lone low or medium alert (or a rule repeating itself on one entity, like several
port-probe findings on one instance) stays an alert. Its severity is the highest of its alerts, raised one
level when it spans three or more ATT&CK tactics, involves root, or joins a high GuardDuty
finding to CloudTrail alerts. Its id derives from its first alert (first detected, then first
seen), so reruns and late alerts keep the id, and a late alert extends the incident it belongs to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

RANK = ("info", "low", "medium", "high", "critical")
DEFAULT_WINDOW = dt.timedelta(hours=24)


@dataclass
class Incident:
    id: str
    title: str
    severity: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    alert_ids: list[str]
    rule_ids: list[str]
    tactics: list[str]
    techniques: list[str]
    entities: list[str]
    accounts: list[str]
    actors: list[str]
    timeline: list[dict] = field(default_factory=list)
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    status: str = "open"

    @property
    def alert_count(self) -> int:
        return len(self.alert_ids)


def _linkable(entities: list[str]) -> list[str]:
    narrow = [e for e in entities if not e.startswith("account:")]
    return narrow or entities


class _Groups:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, i: int) -> int:
        while self.parent.setdefault(i, i) != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
        return min(ra, rb)


def group_alerts(alerts: list[dict], window: dt.timedelta = DEFAULT_WINDOW) -> list[list[dict]]:
    """Alerts (rows of the alerts table) → groups, each in time order."""
    order = sorted(range(len(alerts)), key=lambda i: (alerts[i]["first_seen"], alerts[i]["id"]))
    groups = _Groups()
    last_of: dict[str, tuple[int, dt.datetime]] = {}  # entity → (an alert index, latest activity)
    group_last: dict[int, dt.datetime] = {}
    for i in order:
        a = alerts[i]
        root = groups.find(i)
        group_last[root] = a["last_seen"]
        for ent in _linkable(a.get("entities") or []):
            seen = last_of.get(ent)
            if seen is not None:
                other = groups.find(seen[0])
                if a["first_seen"] <= group_last.get(other, seen[1]) + window:
                    merged_last = max(group_last.get(other, seen[1]), group_last[groups.find(i)])
                    root = groups.union(other, i)
                    group_last[root] = merged_last
        root = groups.find(i)
        group_last[root] = max(group_last[root], a["last_seen"])
        for ent in _linkable(a.get("entities") or []):
            last_of[ent] = (i, group_last[root])
    out: dict[int, list[dict]] = {}
    for i in order:
        out.setdefault(groups.find(i), []).append(alerts[i])
    return list(out.values())


def _severity(members: list[dict]) -> str:
    level = max(RANK.index(m["severity"]) for m in members)
    tactics = {t for m in members for t in (m.get("tactics") or [])}
    root = any((m.get("actor") or "").endswith(":root") for m in members)
    gd_high = any(m["rule_id"].startswith("guardduty") and RANK.index(m["severity"]) >= 3 for m in members)
    others = any(not m["rule_id"].startswith("guardduty") for m in members)
    if len(tactics) >= 3 or root or (gd_high and others):
        level += 1
    return RANK[min(level, len(RANK) - 1)]


def build_incidents(alerts: list[dict], window: dt.timedelta = DEFAULT_WINDOW) -> list[Incident]:
    incidents = []
    for members in group_alerts(alerts, window):
        if len({m["rule_id"] for m in members}) < 2 and max(RANK.index(m["severity"]) for m in members) < RANK.index("high"):
            continue  # one rule's low/medium alerts (e.g. repeated findings on one instance) stay alerts
        anchor = min(members, key=lambda m: (m.get("first_detected_at") or m["detected_at"], m["first_seen"], m["id"]))
        top = max(members, key=lambda m: (RANK.index(m["severity"]), -m["first_seen"].timestamp()))
        more = len(members) - 1
        title = top["title"] + (f" (+{more} related alert{'s' if more > 1 else ''})" if more else "")
        uniq = lambda xs: list(dict.fromkeys(x for x in xs if x))  # noqa: E731
        incidents.append(Incident(
            id=hashlib.sha256(f"incident:{anchor['id']}".encode()).hexdigest()[:32],
            title=title, severity=_severity(members),
            first_seen=min(m["first_seen"] for m in members), last_seen=max(m["last_seen"] for m in members),
            alert_ids=[m["id"] for m in members], rule_ids=uniq(m["rule_id"] for m in members),
            tactics=uniq(t for m in members for t in (m.get("tactics") or [])),
            techniques=uniq(t for m in members for t in (m.get("techniques") or [])),
            entities=uniq(e for m in members for e in (m.get("entities") or [])),
            accounts=uniq(m.get("account_id") for m in members), actors=uniq(m.get("actor") for m in members),
            timeline=[{
                "alert_id": m["id"], "first_seen": m["first_seen"].isoformat(), "last_seen": m["last_seen"].isoformat(),
                "severity": m["severity"], "rule_id": m["rule_id"], "title": m["title"], "event_count": m["event_count"],
                "evidence": json.loads(m["evidence"]) if isinstance(m.get("evidence"), str) else (m.get("evidence") or []),
            } for m in members],
            created_at=min(m.get("first_detected_at") or m["detected_at"] for m in members),
            updated_at=max(m["detected_at"] for m in members),
        ))
    order = {s: i for i, s in enumerate(reversed(RANK))}
    return sorted(incidents, key=lambda x: (order[x.severity], x.first_seen))
