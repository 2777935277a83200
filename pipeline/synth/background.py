"""Benign background activity: the organisation model and the fast per-object record generator.

Records are built from templates compiled once per account and region: a template is a dict
in CloudTrail's key order whose per-event fields (time, ids, identity, source IP, user agent)
are filled in by a shallow copy. Nested objects are shared between records; serialisation does
not care, and nothing mutates them.
"""

from __future__ import annotations

import random
from bisect import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from pipeline.synth import actors as A
from pipeline.synth.catalog import GLOBAL_SERVICES, Api, denied, host_for, inventory, order_record
from pipeline.synth.catalog_more import build_apis
from pipeline.synth.records import tls_details

F_IDENT, F_IP, F_UA, F_REQ, F_S3REQ = 1, 2, 4, 8, 16
_VPCE_SERVICES = frozenset({"ssm", "logs", "kms", "s3", "ec2", "sts"})
_HUMAN = frozenset({"sso", "iam_user_console", "iam_user_key"})
_HMS: list[str] = []


def _hms_table() -> list[str]:
    if not _HMS:
        _HMS.extend(f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(86400))
    return _HMS


@dataclass
class Org:
    """Accounts (the first is the management account), their roles, and per-region models."""

    accounts: list[str]
    roles: dict[str, str]
    envs: dict[str, str]
    regions: tuple[str, ...]
    home: str
    actors: dict[str, list[A.Actor]] = field(default_factory=dict)
    inventories: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def management(self) -> str:
        return self.accounts[0]

    @property
    def security(self) -> str:
        return next((a for a in self.accounts if self.roles[a] == "security"), self.accounts[0])

    def workloads(self) -> list[str]:
        return [a for a in self.accounts if self.roles[a] == "workload"] or [self.accounts[-1]]

    def actor(self, account: str, name: str) -> A.Actor | None:
        return next((a for a in self.actors[account] if a.name == name), None)


def build_org(seed: int, n_accounts: int, regions: tuple[str, ...]) -> Org:
    rng = random.Random(f"soclake-synth:{seed}:org")
    accounts: list[str] = []
    while len(accounts) < n_accounts:
        acct = str(rng.randrange(10**11, 10**12))
        if acct not in accounts:
            accounts.append(acct)
    roles = {a: ("management" if i == 0 else "security" if i == 1 and n_accounts > 2 else "workload")
             for i, a in enumerate(accounts)}
    if n_accounts == 1:
        roles[accounts[0]] = "workload"  # a lone account does everything
    work_envs = iter(["prod", "staging", "dev", "sandbox", "shared", "data", "analytics", "edge"])
    envs = {a: {"management": "org", "security": "security"}.get(r) or next(work_envs, f"ws{i}")
            for i, (a, r) in enumerate(roles.items())}
    home = "us-east-1" if "us-east-1" in regions else regions[0]
    org = Org(accounts, roles, envs, tuple(regions), home)
    for a in accounts:
        for r in regions:
            org.inventories[(a, r)] = inventory(a, r, envs[a])
        org.actors[a] = A.org_actors(a, roles[a], org.inventories[(a, home)])
    return org


def _resource_arn(api: Api) -> str:
    resources = (api.extra or {}).get("resources") or [{}]
    return resources[0].get("ARN", "")


class _Session:
    __slots__ = ("ident", "ip", "ua", "console", "tl", "cw", "tot", "denied", "ndenied", "deny")


class StreamGenerator:
    """Generates the benign records of one account and region."""

    def __init__(self, org: Org, account: str, region: str) -> None:
        self.account, self.region = account, region
        home = region == org.home
        apis = build_apis(org.inventories[(account, region)])
        self.actors: list[A.Actor] = []
        self.compiled: list[tuple[list, list[float], float, list]] = []
        weights = []
        for actor in org.actors[account]:
            arn = actor.identity("", 0)["arn"] if actor.identity else ""
            entries: list[tuple[dict, int, float]] = []
            for key, w in actor.apis.items():
                variants = [v for v in apis.get(key, ()) if home or v.service not in GLOBAL_SERVICES]
                entries += [(*self._template(v, actor), w / len(variants)) for v in variants]
            for rec, w in actor.fixed:
                if home or rec["eventSource"].split(".")[0] not in GLOBAL_SERVICES:
                    entries.append((*self._fixed(rec), w))
            if not entries:
                continue
            refused = [self._template(denied(v, arn, _resource_arn(v)), actor)
                       for key in actor.denied for v in apis.get(key, ())[:2]
                       if home or v.service not in GLOBAL_SERVICES]
            self.actors.append(actor)
            self.compiled.append(([e[:2] for e in entries], list(accumulate(e[2] for e in entries)),
                                  sum(e[2] for e in entries), refused))
            weights.append(actor.weight * (1.0 if home or actor.kind not in _HUMAN else 0.35))
        self.actor_cw = list(accumulate(weights))
        self.actor_range = range(len(self.actors))

    def _template(self, api: Api, actor: A.Actor) -> tuple[dict, int]:
        fields: dict[str, Any] = {
            "eventVersion": api.version, "userIdentity": None, "eventTime": None, "eventSource": api.source,
            "eventName": api.name, "awsRegion": self.region, "sourceIPAddress": None, "userAgent": None,
            "requestParameters": api.request, "responseElements": api.response, "requestID": None,
            "eventID": None, "readOnly": api.read_only, "eventType": "AwsApiCall", "managementEvent": True,
            "recipientAccountId": self.account, "eventCategory": "Management",
        }
        fields.update(api.extra or {})
        if actor.vpce and api.service in _VPCE_SERVICES:
            fields["vpcEndpointId"] = f"vpce-0{api.service[:2].encode().hex()}{self.account[-6:]}{self.region[-1]}a"
            fields["vpcEndpointAccountId"] = self.account
        host = host_for(api, self.region)
        if host and not actor.invoked_by:
            fields["tlsDetails"] = tls_details(host)
        return order_record(fields), F_IDENT | F_IP | F_UA | (F_S3REQ if api.s3 else F_REQ)

    def _fixed(self, rec: dict) -> tuple[dict, int]:
        tmpl = dict(rec, eventTime=None, eventID=None, awsRegion=self.region)
        if "requestID" in tmpl:
            tmpl["requestID"] = None
            return tmpl, F_REQ
        return tmpl, 0

    def _session(self, k: int, rng: random.Random, t0: int, obj_no: int) -> _Session:
        actor, (tl, cw, tot, refused) = self.actors[k], self.compiled[k]
        s = _Session()
        created = datetime.fromtimestamp(t0 - rng.randrange(60, 3000), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        s.ident = actor.identity(created, obj_no) if actor.identity else None
        if actor.invoked_by and s.ident is not None:
            s.ident = dict(s.ident, invokedBy=actor.invoked_by)
        s.ip = actor.ips[rng.randrange(len(actor.ips))]
        s.ua, s.console = actor.uas[rng.randrange(len(actor.uas))]
        s.tl, s.cw, s.tot = tl, cw, tot
        s.denied, s.ndenied = refused, len(refused)
        s.deny = actor.deny_rate if refused else 0.0
        return s

    def records(self, rng: random.Random, n: int, t0: int, t1: int, obj_no: int, day0: int,
                days: list[str]) -> list[dict]:
        """``n`` records with times in ``[t0, t1)`` (epoch seconds), sorted by time.
        ``days[i]`` is the ``YYYY-MM-DD`` of the day starting at ``day0 + i * 86400``."""
        if n <= 0 or not self.actors:
            return []
        hms = _hms_table()
        rnd = rng.random
        sessions = [self._session(k, rng, t0, obj_no) for k in self.actor_range]
        picks = rng.choices(self.actor_range, cum_weights=self.actor_cw, k=n)
        span = t1 - t0
        secs = sorted([t0 + int(rnd() * span) for _ in range(n)])
        hx = rng.randbytes(32 * n).hex()
        out = []
        append = out.append
        for j in range(n):
            s = sessions[picks[j]]
            if s.deny and rnd() < s.deny:
                tm, fl = s.denied[int(rnd() * s.ndenied)]
            else:
                tm, fl = s.tl[bisect(s.cw, rnd() * s.tot)]
            r = tm.copy()
            sec = secs[j]
            r["eventTime"] = days[(sec - day0) // 86400] + hms[(sec - day0) % 86400]
            if fl & F_IDENT:
                r["userIdentity"] = s.ident
            if fl & F_IP:
                r["sourceIPAddress"] = s.ip
            if fl & F_UA:
                r["userAgent"] = s.ua
                if s.console:
                    r["sessionCredentialFromConsole"] = "true"
            k = j << 6
            if fl & F_REQ:
                h = hx[k:k + 32]
                r["requestID"] = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
            elif fl & F_S3REQ:
                r["requestID"] = hx[k:k + 16].upper()
            h = hx[k + 32:k + 64]
            r["eventID"] = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
            append(r)
        return out


def day_table(start: int, n_days: int) -> tuple[int, list[str]]:
    """Midnight (epoch) of ``start``'s day and the dates of the following ``n_days`` days."""
    day0 = start - start % 86400
    base = datetime.fromtimestamp(day0, tz=UTC)
    return day0, [(base + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(n_days)]
