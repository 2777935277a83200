"""Run detection rules over the lake, window by window, and keep the alerts table current.

One scan per window: the window's rows of each table are read from Parquet once (partition
pruning on event_date, row-group statistics on event_time) into DuckDB temp tables named like
the views (``cloudtrail``, ``guardduty``, ``guardduty_latest``), and every rule's SQL runs
against those in memory. ``scan="per-rule"`` instead points the names at filtered views over
the Parquet files, so each rule scans the lake itself (what ``make bench`` compares).

Incremental by default: the lake remembers how far detection has evaluated (``_state/detect.json``)
and each run re-evaluates ``lookback`` before that point, so records CloudTrail delivers late are
still seen; deterministic alert ids make the overlap harmless.
"""

from __future__ import annotations

import collections
import datetime as dt
import re
import time
from dataclasses import dataclass, field

import duckdb

from pipeline import views
from pipeline.detect import alert_store
from pipeline.detect.alerts import Alert, build_alerts
from pipeline.detect.entities import attach_entities
from pipeline.detect.rules import Rule
from pipeline.errors import ConfigError

DEFAULT_LOOKBACK = dt.timedelta(hours=3)
DEFAULT_CHUNK = dt.timedelta(days=1)
TABLES = ("cloudtrail", "guardduty")


@dataclass
class DetectOptions:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    lookback: dt.timedelta = DEFAULT_LOOKBACK
    chunk: dt.timedelta = DEFAULT_CHUNK
    scan: str = "shared"  # or "per-rule"
    incremental: bool = True
    incident_window: dt.timedelta = dt.timedelta(hours=24)


@dataclass
class DetectReport:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    rules: int = 0
    matches: int = 0
    new: list[Alert] = field(default_factory=list)
    updated: list[Alert] = field(default_factory=list)
    unchanged: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    incidents: list = field(default_factory=list)
    scan_seconds: float = 0.0
    rules_seconds: float = 0.0
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def by_severity(self) -> collections.Counter:
        return collections.Counter(a.severity for a in self.new + self.updated)

    def by_rule(self) -> collections.Counter:
        return collections.Counter(a.rule_id for a in self.new + self.updated)

    def to_dict(self) -> dict:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "rules": self.rules, "matches": self.matches,
            "alerts_new": len(self.new), "alerts_updated": len(self.updated), "alerts_unchanged": self.unchanged,
            "by_severity": dict(self.by_severity()), "by_rule": dict(self.by_rule()),
            "errors": [{"rule": r, "error": e} for r, e in self.errors],
            "incidents": [{"id": i.id, "severity": i.severity, "title": i.title, "alerts": i.alert_count}
                          for i in self.incidents],
            "scan_seconds": round(self.scan_seconds, 3), "rules_seconds": round(self.rules_seconds, 3),
            "elapsed_s": round(self.elapsed, 3),
            "alerts": [a.model_dump(mode="json", include={"id", "rule_id", "severity", "title", "first_seen", "event_count"})
                       for a in self.new + self.updated],
        }


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SELECT_FROM = re.compile(r"SELECT\s(.*?)\sFROM\s+(\w+)", re.IGNORECASE | re.DOTALL)
_STAR = re.compile(r"(^|,)\s*\*\s*(,|$|EXCLUDE|REPLACE)", re.IGNORECASE)
_BASE = {"cloudtrail", "guardduty", "guardduty_latest"}
# plus what the engine itself reads: entity lookup (pipeline/detect/entities.py)
_ALWAYS = {"event_time", "event_date", "ingested_at", "id", "account_id", "region", "eventID", "actor", "userIdentity",
           "access_key_id", "instance_id"}


def columns_used(rules: list[Rule]) -> dict[str, list[str]] | None:
    """Per table, the columns any rule's SQL names (a safe over-approximation by identifier).

    The shared scan copies only these into memory: JSON columns nobody reads are most of a row.
    None (all columns) when a rule selects ``*``.
    """
    from pipeline import schema

    words: set[str] = set()
    for r in rules:
        for select_list, table in _SELECT_FROM.findall(r.query):
            if table.lower() in _BASE and _STAR.search(select_list):
                return None  # SELECT * straight from a table: every column
        if "COLUMNS(" in r.query.upper():
            return None
        words.update(_WORD.findall(r.query))
    return {t: [c for c in schema.arrow_schema(t).names if c in words or c in _ALWAYS] for t in TABLES}


def load_window(con: duckdb.DuckDBPyConnection, start: dt.datetime, end: dt.datetime, scan: str = "shared",
                prefix: str = "lake_", columns: dict[str, list[str]] | None = None) -> None:
    """Point ``cloudtrail``/``guardduty``/``guardduty_latest`` at the rows of [start, end)."""
    kind = "TEMP TABLE" if scan == "shared" else "TEMP VIEW"
    for t in TABLES:
        select = "*" if columns is None or scan != "shared" else ", ".join(f'"{c}"' for c in columns[t])
        con.execute("DROP VIEW IF EXISTS guardduty_latest")
        kinds = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?", [t]).fetchall()
        for (k,) in kinds:
            con.execute(f"DROP {'VIEW' if k == 'VIEW' else 'TABLE'} {t}")
        con.execute(
            f"CREATE {kind} {t} AS SELECT {select} FROM {prefix}{t} WHERE event_date BETWEEN "
            f"CAST('{start.date()}' AS DATE) AND CAST('{end.date()}' AS DATE) "
            f"AND event_time >= CAST('{start.isoformat()}' AS TIMESTAMPTZ) AND event_time < CAST('{end.isoformat()}' AS TIMESTAMPTZ)"
        )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW guardduty_latest AS SELECT * FROM guardduty "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY event_time DESC, ingested_at DESC) = 1"
    )


def run_rules(con: duckdb.DuckDBPyConnection, rules: list[Rule], detected_at: dt.datetime,
              report: DetectReport | None = None) -> list[Alert]:
    """Run every rule against what :func:`load_window` loaded; a failing rule is reported, not fatal."""
    alerts = []
    for rule in rules:
        try:
            rows = con.sql(rule.query).to_arrow_table().to_pylist()
        except duckdb.Error as e:
            if report is None:
                raise
            report.errors.append((rule.id, str(e).strip().splitlines()[0]))
            continue
        if report is not None:
            report.matches += len(rows)
        alerts.extend(build_alerts(rule, rows, detected_at))
    return alerts


def load_context(rules: list[Rule]) -> dt.timedelta:
    """How much history before a chunk its rules need: their correlation timespans, and their
    dedup windows up to a day (longer windows, like a finding id's 30 days, only dedup: the id
    is the same whichever chunk finds it)."""
    from pipeline.detect.rules_base import parse_duration

    spans = [min(r.dedup.delta, dt.timedelta(days=1)) for r in rules]
    spans += [parse_duration(r.correlation.timespan) for r in rules if r.correlation is not None]
    return max(spans, default=dt.timedelta(hours=1))


def _data_range(con, prefix: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    lo = hi = None
    for t in TABLES:
        a, b = con.execute(f"SELECT min(event_time), max(event_time) FROM {prefix}{t}").fetchone()
        if a is not None:
            lo = a if lo is None else min(lo, a)
            hi = b if hi is None else max(hi, b)
    return lo, hi


def _merge(alerts: list[Alert]) -> list[Alert]:
    """Chunks overlap by their context: keep the fullest version of each alert id."""
    best: dict[str, Alert] = {}
    for a in alerts:
        cur = best.get(a.id)
        if cur is None or (a.event_count, a.last_seen) > (cur.event_count, cur.last_seen):
            best[a.id] = a
    return sorted(best.values(), key=lambda a: (a.first_seen, a.rule_id))


def detect(lake: str, store, rules: list[Rule], opts: DetectOptions | None = None, run_id: str = "") -> DetectReport:
    from pipeline.lake.ledger import new_run_id

    opts = opts or DetectOptions()
    run_id = run_id or new_run_id()
    t0 = time.perf_counter()
    report = DetectReport(rules=len(rules))
    con = duckdb.connect()
    views.register(con, lake, prefix="lake_")
    lo, hi = _data_range(con, "lake_")
    if lo is None:
        report.elapsed = time.perf_counter() - t0
        return report
    state = alert_store.load_state(store) if opts.incremental else {}
    if opts.since is not None:
        since = opts.since
    elif state.get("evaluated_until"):
        since = dt.datetime.fromisoformat(state["evaluated_until"]) - opts.lookback
    else:
        since = lo
    until = opts.until or hi + dt.timedelta(microseconds=1)
    if until <= since:
        raise ConfigError(f"empty window: --until {until.isoformat()} is not after --since {since.isoformat()}")
    report.since, report.until = since, until
    context = load_context(rules)
    needed = columns_used(rules)
    detected_at = dt.datetime.now(dt.UTC)
    found: list[Alert] = []
    start = since
    while start < until:
        end = min(start + opts.chunk, until)
        s = time.perf_counter()
        load_window(con, start - context, end, opts.scan, columns=needed)
        report.scan_seconds += time.perf_counter() - s
        s = time.perf_counter()
        chunk_alerts = run_rules(con, rules, detected_at, report)
        attach_entities(con, chunk_alerts)
        found += chunk_alerts
        report.rules_seconds += time.perf_counter() - s
        start = end
    alerts = _merge(found)
    known = alert_store.existing(con, [a.id for a in alerts], prefix="lake_")
    report.new, report.updated = alert_store.write_alerts(store, alerts, known, run_id)
    report.unchanged = len(alerts) - len(report.new) - len(report.updated)
    from pipeline.correlate.store import rebuild
    from pipeline.detect.alert_store import register_alerts_view

    register_alerts_view(con, lake, prefix="lake_")  # now including what this run wrote
    report.incidents = rebuild(con, store, "lake_alerts", opts.incident_window)
    if opts.incremental and opts.until is None:
        alert_store.save_state(store, {**state, "evaluated_until": until.isoformat(), "run": run_id})
    report.elapsed = time.perf_counter() - t0
    return report
