"""``soclake status``: is the pipeline keeping up? What a scheduler, an alarm or a probe asks.

Per source (service x account x region): the newest object ingested (from the ledger: its
delivery time from the key, and when soclake ingested it) and the newest event in the lake;
the last ``ingest``, ``detect`` and ``forward`` runs and their outcome (``_state/runs/``);
per sink the alerts delivered, pending and parked (with ``--config``; else parked from the outbox
and pending as the last forward run left it); quarantined objects. A source is stale when its
newest event is older than ``--max-lag``: the command then exits 2, so a health check fails.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from pipeline import layout
from pipeline.lake.ledger import INGESTED, QUARANTINED, Ledger
from pipeline.ops import runs
from pipeline.ops.freshness import newest_events
from pipeline.tables import rfc3339, table_text

#: Services whose silence means a broken delivery (GuardDuty exports only when there are findings).
DEFAULT_LAG_SERVICES = ("cloudtrail",)
_CT_STAMP = re.compile(r"_(\d{8}T\d{4}Z)_")


@dataclass
class Source:
    service: str
    account: str
    region: str
    objects: int = 0
    quarantined: int = 0
    newest_object: str | None = None  # key of the newest delivered object
    newest_object_time: dt.datetime | None = None  # its delivery time (key timestamp, or its day for GuardDuty)
    last_ingested_at: dt.datetime | None = None  # when soclake ingested the newest object
    newest_event: dt.datetime | None = None
    lag: dt.timedelta | None = None
    stale: bool = False
    account_name: str | None = None  # from the enrichment cache (soclake enrich accounts)

    def to_dict(self) -> dict:
        iso = lambda t: rfc3339(t) if t else None  # noqa: E731
        return {"service": self.service, "account": self.account, "account_name": self.account_name,
                "region": self.region, "objects": self.objects,
                "quarantined": self.quarantined, "newest_object": self.newest_object,
                "newest_object_time": iso(self.newest_object_time), "last_ingested_at": iso(self.last_ingested_at),
                "newest_event": iso(self.newest_event),
                "lag_seconds": round(self.lag.total_seconds()) if self.lag is not None else None, "stale": self.stale}


@dataclass
class Status:
    lake: str
    now: dt.datetime
    max_lag: dt.timedelta | None
    sources: list[Source] = field(default_factory=list)
    runs: dict = field(default_factory=dict)
    sinks: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)

    @property
    def stale(self) -> list[Source]:
        return [s for s in self.sources if s.stale]

    @property
    def healthy(self) -> bool:
        return not self.stale

    def to_dict(self) -> dict:
        return {"lake": self.lake, "now": rfc3339(self.now),
                "max_lag_seconds": round(self.max_lag.total_seconds()) if self.max_lag else None,
                "healthy": self.healthy, "stale_sources": len(self.stale),
                "sources": [s.to_dict() for s in self.sources], "runs": self.runs, "sinks": self.sinks,
                "quarantined": self.quarantined}


def _delivered_at(obj: layout.LogObject) -> dt.datetime:
    m = _CT_STAMP.search(obj.key.rsplit("/", 1)[-1])
    if m:
        return dt.datetime.strptime(m[1], "%Y%m%dT%H%MZ").replace(tzinfo=dt.UTC)
    return dt.datetime.combine(obj.date, dt.time(), dt.UTC)


def _run_time(run_id: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(run_id.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _layout_key(uri: str) -> str:
    i = uri.find("AWSLogs/")
    return uri[i:] if i >= 0 else uri


def lake_status(lake: str, store, max_lag: dt.timedelta | None = None, config_path: str | None = None,
                lag_services=DEFAULT_LAG_SERVICES, now: dt.datetime | None = None) -> Status:
    now = now or dt.datetime.now(dt.UTC)
    st = Status(lake, now, max_lag)
    ledger = Ledger.load(store)
    sources: dict[tuple[str, str, str], Source] = {}
    for e in ledger.objects.values():
        if e.kind not in layout.EVENT_KINDS or e.status not in (INGESTED, QUARANTINED):
            continue
        obj = layout.classify(_layout_key(e.uri), e.size, e.etag)
        if not isinstance(obj, layout.LogObject):
            continue
        src = sources.setdefault((obj.kind, obj.account, obj.region), Source(obj.kind, obj.account, obj.region))
        src.objects += 1
        if e.status == QUARANTINED:
            src.quarantined += 1
            st.quarantined.append({"object": e.uri, "reason": e.reason, "run": e.run})
        at = _delivered_at(obj)
        if src.newest_object_time is None or at > src.newest_object_time:
            src.newest_object_time, src.newest_object, src.last_ingested_at = at, e.uri, _run_time(e.run)
    for key, newest in newest_events(lake).items():
        src = sources.setdefault(key, Source(*key))
        src.newest_event = newest
    names = _account_names(store)
    for src in sources.values():
        src.account_name = names.get(src.account)
        seen = src.newest_event
        src.lag = now - seen if seen else None
        if max_lag is not None and src.service in lag_services:
            src.stale = seen is None or src.lag > max_lag
    st.sources = sorted(sources.values(), key=lambda s: (s.service, s.account, s.region))
    st.runs = {kind: runs.load(store, kind) for kind in runs.KINDS}
    st.sinks = _sinks(lake, store, config_path, st.runs.get("forward", {}))
    return st


def _account_names(store) -> dict[str, str]:
    from pipeline.enrich.accounts import by_id, read_cache

    try:
        return {k: v["account_name"] for k, v in by_id(read_cache(store)).items() if v["account_name"]}
    except Exception:  # noqa: BLE001 - status reports health; a bad cache is not its failure
        return {}


def _sinks(lake: str, store, config_path: str | None, forward_runs: dict) -> list[dict]:
    if config_path:
        from pipeline.forward.run import status

        return [{**r, "parked": len(r["parked"])} for r in status(lake, store, config_path)]
    import orjson

    from pipeline.forward.outbox import PREFIX

    last = (forward_runs.get("last") or {}).get("sinks", {})
    out = []
    for rel in store.list(PREFIX):
        if not rel.endswith(".json"):
            continue
        doc = orjson.loads(store.get(rel))
        name = doc.get("sink") or rel[len(PREFIX):-5]
        out.append({"sink": name, "delivered": len(doc.get("delivered", {})), "parked": len(doc.get("parked", {})),
                    "pending": last.get(name, {}).get("left"), "pending_from": "last forward run"})
    return out


def _ago(t: dt.datetime | None, now: dt.datetime) -> str:
    """``3h ago`` (or ``in 5m`` for a time ahead of this machine's clock)."""
    if t is None:
        return "never"
    s = int((now - t).total_seconds())
    ahead, s = s < 0, abs(s)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= n or unit == "s":
            return f"in {s // n}{unit}" if ahead else f"{s // n}{unit} ago"
    return ""  # unreachable


#: The sources table: (key, header, formatter) for ``pipeline.tables``; times RFC 3339, lag as a span.
SOURCE_COLUMNS = [("service", "SOURCE"), ("account", "ACCOUNT"), ("region", "REGION"), ("objects", "OBJECTS"),
                  ("quarantined", "QUAR."), ("newest_object_time", "NEWEST OBJECT", rfc3339),
                  ("newest_event", "NEWEST EVENT", rfc3339), ("lag", "LAG", lambda v: _td(v) if v is not None else "-"),
                  ("state", "STATE"), ("account_name", "ACCOUNT NAME", lambda v: v or "-")]


def source_rows(st: Status) -> list[dict]:
    """One row per source, as ``--format jsonl|csv`` prints them (times RFC 3339, lag in seconds)."""
    return [{**s.to_dict(), "state": "STALE" if s.stale else "ok"} for s in st.sources]


def _second(t: dt.datetime) -> str:
    return rfc3339(t.replace(microsecond=0))


def format_status(st: Status) -> str:
    lines = [f"Lake {st.lake} at {_second(st.now)}" + (f" (max lag {_td(st.max_lag)})" if st.max_lag else "")]
    if st.sources:
        rows = [{**vars(s), "state": "STALE" if s.stale else "ok"} for s in st.sources]
        lines += ["  " + line for line in table_text(rows, SOURCE_COLUMNS).splitlines()]
    else:
        lines.append("  (no sources yet: nothing ingested)")
    lines.append("Runs:")
    for kind in runs.KINDS:
        doc = st.runs.get(kind) or {}
        last = doc.get("last")
        if not last:
            lines.append(f"  {kind:<8} never")
            continue
        ended = dt.datetime.fromisoformat(last["ended"])
        line = f"  {kind:<8} {last['outcome']:<8} {_second(ended)} ({_ago(ended, st.now)}, {last['seconds']:.1f} s)"
        if last["outcome"] != runs.OK and doc.get("last_ok"):
            line += f"; last ok {_second(dt.datetime.fromisoformat(doc['last_ok']['ended']))}"
        if last.get("error"):
            line += f": {last['error']}"
        lines.append(line)
    if st.sinks:
        lines.append("Sinks:")
        for s in st.sinks:
            pending = "?" if s.get("pending") is None else s["pending"]
            lines.append(f"  {s['sink']}: {s['delivered']} delivered, {pending} pending, {s['parked']} parked")
    if st.quarantined:
        lines.append(f"Quarantined objects: {len(st.quarantined)}")
        for q in st.quarantined[:20]:
            lines.append(f"  {q['object']}: {q['reason']}")
    if st.stale:
        lines.append(f"STALE: {len(st.stale)} source(s) with no event newer than {_td(st.max_lag)}")
    return "\n".join(lines)


def _td(td: dt.timedelta | None) -> str:
    if td is None:
        return "-"
    s = int(td.total_seconds())
    return f"{s // 3600}h{(s % 3600) // 60:02d}m" if s >= 3600 else f"{s // 60}m"
