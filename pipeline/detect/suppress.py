"""Suppressions: known, accepted activity that should not page anyone, declared in a file
instead of by editing rules (docs/rules.md, "Suppressions").

A suppressed alert is still written to the lake's ``alerts`` table with ``suppressed_by`` set
(queryable, auditable), but it is not forwarded to sinks nor grouped into incidents. An entry
matches an alert when every matcher it gives matches (a matcher given as a list matches when any
of its items does). Matchers that look at several values of an alert (its principals, source
IPs, user agents) match only when *every* value matches and there is at least one: an alert that
mixes the accepted activity with something else is not hidden.
"""

from __future__ import annotations

import collections
import datetime as dt
import fnmatch
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.detect.alerts import Alert

#: Evidence fields read for ``user_agent`` (only rules whose query returns one of them).
USER_AGENT_FIELDS = ("userAgent", "user_agent")
Globs = list[str]


def _globs(v: Any) -> list[str] | None:
    if v is None:
        return None
    items = v if isinstance(v, list) else [v]
    if not items:
        raise ValueError("an empty list matches nothing: leave the key out instead")
    return [str(x) for x in items]


class Suppression(BaseModel):
    """One entry of a ``suppressions:`` list."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str | None = Field(None, description="a name for the entry (default: <file name>:<line>); alerts name it in suppressed_by")
    rule: Globs | None = Field(None, description="rule id or glob (iam_*), or a list of them")
    principal: Globs | None = Field(None, description="principal ARN glob: the alert's actor and the principals of its events")
    account: Globs | None = Field(None, description="account id (or glob)")
    region: Globs | None = Field(None, description="region (or glob, eu-*)")
    source_cidr: list[str] | None = Field(None, description="IPv4/IPv6 networks holding every source IP of the alert")
    user_agent: Globs | None = Field(None, description="user agent glob, matched against the userAgent evidence field")
    reason: str = Field(min_length=1, description="why this is accepted (shown in suppressed_by)")
    expires: dt.date | None = Field(None, description="last day (UTC) the entry applies; after it, it is ignored with a warning")

    @field_validator("rule", "principal", "region", "user_agent", "source_cidr", mode="before")
    @classmethod
    def _listify(cls, v):
        return _globs(v)

    @field_validator("account", mode="before")
    @classmethod
    def _accounts(cls, v):
        # YAML reads 111111111111 as a number: keep it an account id (12 digits, leading zeros)
        items = _globs([str(x).zfill(12) if isinstance(x, int) else x for x in (v if isinstance(v, list) else [v])]
                       if v is not None else None)
        return items

    @field_validator("source_cidr")
    @classmethod
    def _cidrs(cls, v):
        for c in v or []:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError:
                raise ValueError(f"{c!r} is not an IPv4 or IPv6 network (203.0.113.0/24, 2001:db8::/32)") from None
        return v

    @model_validator(mode="after")
    def _something(self):
        if not any((self.rule, self.principal, self.account, self.region, self.source_cidr, self.user_agent)):
            raise ValueError("a suppression needs at least one of rule, principal, account, region, source_cidr, "
                             "user_agent (an entry with none would hide every alert)")
        return self


def _any_glob(value: str | None, globs: list[str]) -> bool:
    return value is not None and any(fnmatch.fnmatchcase(value, g) for g in globs)


def _all(values: list[str], test) -> bool:
    return bool(values) and all(test(v) for v in values)


def _in_networks(ip: str, nets) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False  # a service name (e.g. cloudtrail.amazonaws.com) is no address in the network
    return any(addr.version == n.version and addr in n for n in nets)


def principals(alert: Alert) -> list[str]:
    """Who acted: the alert's actor and the principal entities of its events."""
    out = [alert.actor] if alert.actor else []
    out += [e.split(":", 1)[1] for e in alert.entities if e.startswith("principal:")]
    return list(dict.fromkeys(out))


def user_agents(alert: Alert) -> list[str]:
    return list(dict.fromkeys(str(e.fields[f]) for e in alert.evidence for f in USER_AGENT_FIELDS if e.fields.get(f)))


@dataclass
class Entry:
    """A loaded suppression with where it came from."""

    spec: Suppression
    where: str  # file:line
    nets: list = field(default_factory=list)

    @property
    def label(self) -> str:
        # unnamed entries are named by file name and line (no folder: the label is stored in the lake)
        return f"{self.spec.id or os.path.basename(self.where)}: {self.spec.reason}"

    def matches(self, a: Alert) -> bool:
        s = self.spec
        if s.rule and not _any_glob(a.rule_id, s.rule):
            return False
        if s.account and not _any_glob(a.account_id, s.account):
            return False
        if s.region and not _any_glob(a.region, s.region):
            return False
        if s.principal and not _all(principals(a), lambda v: _any_glob(v, s.principal)):
            return False
        if s.source_cidr and not _all(a.source_ips, lambda ip: _in_networks(ip, self.nets)):
            return False
        return not (s.user_agent and not _all(user_agents(a), lambda v: _any_glob(v, s.user_agent)))


@dataclass
class Suppressions:
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def apply(self, alerts: list[Alert]) -> collections.Counter:
        """Set ``suppressed_by`` on the alerts an entry matches (the first in file order);
        returns how many were suppressed per rule."""
        counts: collections.Counter = collections.Counter()
        for a in alerts:
            a.suppressed_by = next((e.label for e in self.entries if e.matches(a)), None)
            if a.suppressed_by:
                counts[a.rule_id] += 1
        return counts

    def check_rules(self, rule_ids: set[str]) -> list[str]:
        """Entries naming a rule id (not a glob) that no loaded rule has."""
        out = []
        for e in self.entries:
            for r in e.spec.rule or []:
                if not any(ch in r for ch in "*?[") and r not in rule_ids:
                    out.append(f"{e.where}: rule: no rule with id {r!r} (soclake rules list shows them)")
        return out


def build(items: list[tuple[Suppression, str]], today: dt.date) -> Suppressions:
    """Entries from validated specs; expired ones are dropped with one warning each."""
    out = Suppressions()
    for spec, where in items:
        if spec.expires is not None and spec.expires < today:
            name = f" {spec.id!r}" if spec.id else ""
            out.warnings.append(f"{where}: suppression{name} expired on {spec.expires.isoformat()}: ignored "
                                "(remove the entry or move its date)")
            continue
        nets = [ipaddress.ip_network(c, strict=False) for c in spec.source_cidr or []]
        out.entries.append(Entry(spec, where, nets))
    return out
