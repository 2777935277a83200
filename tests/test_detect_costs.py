"""What a detection run does not need to pay for: footers read again, the digests table, a
second pass over the lake for alert entities."""

import datetime as dt
import os
import sys
import threading

import duckdb
import pytest

from pipeline.detect.alerts import Alert, Evidence
from pipeline.detect.engine import CAND_ROW_GROUP, DetectOptions, detect, session
from pipeline.detect.entities import attach_entities
from pipeline.detect.rules import load_rules
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore
from pipeline.sources import LocalSource
from pipeline.synth import DirSink, generate_archive

UTC = dt.UTC


def test_the_session_keeps_parquet_footers():
    con, tmp = session(DetectOptions())
    try:
        assert con.execute("SELECT current_setting('parquet_metadata_cache')").fetchone()[0] is True
    finally:
        con.close()


def test_the_session_keeps_everything_in_its_own_folder(tmp_path):
    """The session's own database is in memory; the candidates' database file and DuckDB's spill
    are in the run's folder, which detect removes."""
    con, tmp = session(DetectOptions(temp_dir=str(tmp_path)))
    try:
        assert con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()[0] is None
        cand = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = '_cand'").fetchone()[0]
        assert os.path.dirname(cand) == tmp and tmp.startswith(str(tmp_path))
        assert con.execute("SELECT current_setting('temp_directory')").fetchone()[0].startswith(tmp)
    finally:
        con.close()


def test_the_candidates_have_small_row_groups(tmp_path):
    """Each scan thread fills whole row groups (written as it goes, linked at the end, not copied
    under one lock), and rules read them in parallel, skipping those their filters exclude."""
    con, tmp = session(DetectOptions(temp_dir=str(tmp_path)))
    try:
        con.execute("CREATE TABLE _cand.main.t AS SELECT range AS i FROM range(100000)")
        groups = con.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('_cand.main.t')").fetchone()[0]
        assert groups == -(-100000 // CAND_ROW_GROUP) > 1
    finally:
        con.close()


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("costs")
    generate_archive(DirSink(root / "src"), seed=7, accounts=1, days=1, events=400, guardduty_findings=3,
                     scenarios=("all",))
    lake = root / "lake"
    assert ingest(LocalSource(str(root / "src")), LocalStore(lake), IngestOptions(workers=1)).ok
    return lake


def test_detection_does_not_read_the_digests_table(small_lake):
    """Registering a lake view reads every file's footer; the digests of a long archive are
    thousands of files no rule reads. A broken one must not even be noticed."""
    bad = small_lake / "cloudtrail_digests" / "event_date=2026-11-01" / "account_id=111111111111" / "region=us-east-1"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "broken.parquet").write_bytes(b"not parquet")
    report = detect(str(small_lake), LocalStore(small_lake), load_rules(),
                    DetectOptions(incremental=False, dry_run=True))
    assert report.ok and report.rows_scanned > 0


def _alert(*event_ids):
    return Alert.model_construct(evidence=[Evidence(event_id=i) for i in event_ids], actor=None, resources=[],
                                 account_id="111111111111", entities=[])


def test_entities_come_from_the_candidates_and_only_the_rest_from_the_lake():
    con = duckdb.connect()
    con.execute("CREATE TABLE cand AS SELECT 'e1' AS eventID, 'alice' AS actor, "
                "{'accessKeyId': 'AKIA1', 'type': 'IAMUser'} AS userIdentity")
    con.execute("CREATE TABLE lake AS SELECT * FROM (VALUES ('e1', 'alice', {'accessKeyId': 'AKIA1', 'type': 'IAMUser'}),"
                " ('e2', 'bob', {'accessKeyId': 'AKIA2', 'type': 'IAMUser'})) t(eventID, actor, userIdentity)")
    con.execute("CREATE TABLE guardduty (id VARCHAR, access_key_id VARCHAR, instance_id VARCHAR, actor VARCHAR)")
    # the lake: read only for ids the candidates do not hold (here it fails if read at all)
    con.execute("CREATE VIEW cloudtrail AS SELECT * FROM lake WHERE error('the lake was read')")
    a = _alert("e1")
    attach_entities(con, [a], candidates="cand")
    assert a.entities == ["principal:alice", "access_key:AKIA1"]
    con.execute("CREATE OR REPLACE VIEW cloudtrail AS SELECT * FROM lake")
    b = _alert("e1", "e2")
    attach_entities(con, [b], candidates="cand")
    assert b.entities == ["principal:alice", "access_key:AKIA1", "principal:bob", "access_key:AKIA2"]
    # a candidates table without the fields: everything from the lake
    con.execute("CREATE TABLE narrow AS SELECT 'e1' AS eventID")
    c = _alert("e1", "e2")
    attach_entities(con, [c], candidates="narrow")
    assert c.entities == b.entities


def test_planning_takes_the_range_and_day_counts_from_one_pass(small_lake, monkeypatch):
    con = duckdb.connect()
    from pipeline import views
    from pipeline.detect import engine, planner

    views.register(con, str(small_lake), prefix="lake_", ocsf_views=False, tables=engine.TABLES)
    tables = ["lake_cloudtrail", "lake_guardduty"]
    stats = planner.day_stats(con, tables)
    lo, hi = planner.data_range(stats)
    q = " UNION ALL ".join(f"SELECT event_time FROM {t}" for t in tables)
    assert (lo, hi) == con.execute(f"SELECT min(event_time), max(event_time) FROM ({q})").fetchone()
    start, end = lo + dt.timedelta(hours=5), hi
    assert planner.data_counts(con, tables, start, end, stats=stats) == planner.data_counts(con, tables, start, end)
    seen = []
    real = engine.data_counts
    monkeypatch.setattr(engine, "data_counts", lambda *a: seen.append(a[-1]) or real(*a))
    detect(str(small_lake), LocalStore(small_lake), load_rules(), DetectOptions(incremental=False, dry_run=True))
    assert seen and all(s is not None for s in seen)  # detect hands its day statistics to the planner


def test_a_small_range_is_read_from_the_lake_once(small_lake):
    """A few hundred rows: the rules that need every row read the in-memory copy of the range."""
    report = detect(str(small_lake), LocalStore(small_lake), load_rules(), DetectOptions(incremental=False, dry_run=True))
    modes = {c.rule_id: c.mode for c in report.rule_costs}
    assert modes["cloudtrail_logging_gap"] == "copy"
    assert "lake" not in modes.values()


_GAP_REFERENCE = """
WITH b AS (
  SELECT account_id, region, time_bucket(INTERVAL 12 HOUR, event_time) AS h,
         min(event_time) AS first_t, max(event_time) AS last_t,
         arg_min(eventID, struct_pack(t := event_time, id := eventID)) AS first_id,
         arg_max(eventID, struct_pack(t := event_time, id := eventID)) AS last_id
  FROM cloudtrail GROUP BY account_id, region, h
), ev AS (SELECT *, lag(last_t) OVER (PARTITION BY account_id, region ORDER BY h) AS prev_time FROM b
), newest AS (SELECT max(last_t) AS table_last FROM b
), gaps AS (
  SELECT first_id AS eventID, first_t AS event_time, account_id, region, prev_time AS last_event_before,
         first_t - prev_time AS gap_interval, 'resumed' AS status
  FROM ev WHERE first_t - prev_time > INTERVAL 12 HOUR
), silent AS (
  SELECT arg_max(last_id, struct_pack(t := last_t, id := last_id)) AS eventID, max(last_t) AS event_time, account_id,
         region, max(last_t) AS last_event_before, any_value(table_last) - max(last_t) AS gap_interval,
         'no events since' AS status
  FROM ev, newest GROUP BY account_id, region HAVING any_value(table_last) - max(last_t) > INTERVAL 12 HOUR
)
SELECT eventID, event_time, account_id, region, last_event_before, status, epoch(gap_interval) AS gap_seconds
FROM (SELECT * FROM gaps UNION ALL BY NAME SELECT * FROM silent)
"""


def test_logging_gap_names_the_same_events_as_the_one_pass_formulation():
    """The rule reads eventIDs only where a gap is; among events of the same second it names the
    first id where logging resumed and the last where it stopped, as the (time, id) order did."""
    import random

    rule = next(r for r in load_rules() if r.id == "cloudtrail_logging_gap")
    assert "${" not in rule.query and "arg_min" not in rule.query
    rnd = random.Random(4)
    rows = []
    for account in ("111111111111", "222222222222"):
        for region in ("us-east-1", "eu-west-1"):
            t = dt.datetime(2026, 11, 1, tzinfo=UTC) + dt.timedelta(hours=rnd.randint(0, 30))
            for _ in range(300):
                t += dt.timedelta(seconds=rnd.choice([0, 0, 1, 60, 3600, 14 * 3600, 20 * 3600]))
                rows.append((account, region, t, f"{rnd.randint(0, 99999):05d}-{len(rows)}"))
    con = duckdb.connect()
    con.execute("CREATE TABLE cloudtrail (account_id VARCHAR, region VARCHAR, event_time TIMESTAMPTZ, eventID VARCHAR)")
    con.executemany("INSERT INTO cloudtrail VALUES (?, ?, ?, ?)", rows)
    cols = "eventID, event_time, account_id, region, last_event_before, status, gap_seconds"
    got = con.execute(f"SELECT {cols} FROM ({rule.query}) ORDER BY ALL").fetchall()
    want = con.execute(f"SELECT {cols} FROM ({_GAP_REFERENCE}) ORDER BY ALL").fetchall()
    ties = con.execute(f"SELECT count(*) FROM ({_GAP_REFERENCE}) f WHERE (SELECT count(*) FROM cloudtrail c "
                       "WHERE c.account_id = f.account_id AND c.region = f.region AND c.event_time = f.event_time) > 1"
                       ).fetchone()[0]
    assert len(want) > 20 and ties >= 5  # gaps whose event shares its second with others
    assert got == want


def test_one_window_runs_the_correlations_with_the_other_rules(small_lake, monkeypatch):
    from pipeline.detect import engine

    calls = []
    real = engine._run_many
    monkeypatch.setattr(engine, "_run_many", lambda con, rules, *a, **k: calls.append({r.id for r in rules}) or
                        real(con, rules, *a, **k))
    report = detect(str(small_lake), LocalStore(small_lake), load_rules(), DetectOptions(incremental=False, dry_run=True))
    assert report.windows == 1 and len(calls) == 1  # one pool: no second round for the correlations
    windowed = {c.rule_id for c in report.rule_costs if c.mode == "windowed"}
    assert windowed and windowed <= calls[0]


def test_the_planning_pass_also_gives_the_names_that_decide_skipped_rules(small_lake, monkeypatch):
    """The eventNames per day come with the day statistics: no second pass over the lake to find
    the rules that cannot match, and the same rules are skipped."""
    con = duckdb.connect()
    from pipeline import views
    from pipeline.detect import engine, planner

    views.register(con, str(small_lake), prefix="lake_", ocsf_views=False, tables=engine.TABLES)
    stats = planner.day_stats(con, ["lake_cloudtrail", "lake_guardduty"], names_from="lake_cloudtrail")
    lo, hi = planner.data_range(stats)
    names = {n for (n,) in con.execute("SELECT DISTINCT eventName FROM lake_cloudtrail").fetchall()}
    assert planner.day_names(stats, lo, hi) == names
    plain = planner.day_stats(con, ["lake_cloudtrail", "lake_guardduty"])
    assert {d: s[:3] for d, s in stats.items()} == {d: s[:3] for d, s in plain.items()}
    assert planner.day_names(plain, lo, hi) is None  # without names: the engine reads them itself
    given, real = [], engine._absent
    monkeypatch.setattr(engine, "_absent", lambda *a: given.append(a[-1]) or real(*a))
    report = detect(str(small_lake), LocalStore(small_lake), load_rules(), DetectOptions(incremental=False, dry_run=True))
    assert given and given[0] is not None and names <= given[0]
    skipped = {c.rule_id for c in report.rule_costs if c.mode == "skipped"}
    rules = load_rules()
    shapes = {r.id: engine._shape(r) for r in rules}
    assert skipped == real(con, "lake_cloudtrail", lo, hi + dt.timedelta(microseconds=1),
                           [r for r in rules if shapes[r.id] is not None and shapes[r.id].prefilters.get("cloudtrail", []) is not None],
                           shapes) and skipped


def test_the_rules_that_need_every_row_run_beside_the_shared_scan(small_lake, monkeypatch):
    """They do not read the candidates: the scan is not waited for (here it waits for them)."""
    from pipeline.detect import engine

    done = threading.Event()
    real_run, real_scan = engine._run, engine._scan_window

    def run(con, rule, *a, **k):
        out = real_run(con, rule, *a, **k)
        if rule.id == "cloudtrail_logging_gap":
            done.set()
        return out

    def scan(*a, **k):
        assert done.wait(60), "the lake rules waited for the shared scan"
        return real_scan(*a, **k)

    monkeypatch.setattr(engine, "_run", run)
    monkeypatch.setattr(engine, "_scan_window", scan)
    report = detect(str(small_lake), LocalStore(small_lake), load_rules(), DetectOptions(incremental=False, dry_run=True))
    assert report.ok and done.is_set() and report.candidates > 0
    modes = {c.rule_id: c.mode for c in report.rule_costs}
    assert modes["cloudtrail_logging_gap"] == "copy"


def test_rule_queries_are_bound_once(small_lake, monkeypatch):
    """``con.sql(q)`` parses and binds a query to describe the relation, then again to run it: the
    rules (and the fused query of the simple ones) go through ``execute``, with the same rows."""
    from pipeline.detect import engine

    seen = []
    real = duckdb.DuckDBPyConnection.sql

    def spy(self, q, **k):
        if sys._getframe(1).f_code.co_filename == engine.__file__:  # the engine's own queries
            seen.append(q)
        return real(self, q, **k)

    monkeypatch.setattr(duckdb.DuckDBPyConnection, "sql", spy)
    report = detect(str(small_lake), LocalStore(small_lake), load_rules(), DetectOptions(incremental=False, dry_run=True))
    assert report.ok and report.new and report.matches
    assert seen == []


def test_existing_alerts_are_read_from_their_window_days_only(small_lake, tmp_path):
    """Every version of an alert lies in its window_start's date partition (the id is made of it):
    the run reads only those partitions, with the same answer as reading them all."""
    import shutil

    from pipeline import views
    from pipeline.detect import alert_store

    lake = tmp_path / "lake"
    shutil.copytree(small_lake, lake)
    report = detect(str(lake), LocalStore(lake), load_rules(), DetectOptions(incremental=False))
    assert report.new
    con = duckdb.connect()
    views.register(con, str(lake), prefix="lake_", ocsf_views=False, tables=("cloudtrail", "guardduty"))
    ids = [a.id for a in report.new]
    everything = alert_store.existing(con, ids, prefix="lake_")
    assert set(everything) == set(ids)
    days = {a.window_start.date() for a in report.new}
    assert alert_store.existing(con, ids, prefix="lake_", days=days) == everything
    assert alert_store.existing(con, ids, prefix="lake_", days={dt.date(2001, 1, 1)}) == {}
    some = [a for a in report.new if a.window_start.date() == min(days)]
    assert set(alert_store.existing(con, [a.id for a in some], prefix="lake_", days={min(days)})) == {a.id for a in some}
