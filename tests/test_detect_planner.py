"""Detection planned from the data: windows sized by rows, one shared scan, and alerts that do
not depend on how the run was cut (checked against a plain evaluate-everything-at-once run)."""

import datetime as dt

import duckdb
import pytest

from pipeline.detect import engine
from pipeline.detect.engine import DetectOptions, candidate_columns, detect
from pipeline.detect.planner import plan_windows
from pipeline.detect.rules import load_rules
from pipeline.detect.sqlshape import analyse, fused_sql, simple_select
from pipeline.detect.testing import _events, _findings
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore
from pipeline.sources import LocalSource
from pipeline.synth import DirSink, generate_archive
from tests.archive import ct_bytes, ct_key, gd_bytes, gd_key

UTC = dt.UTC
CATALOGUE = [r for r in load_rules() if r.enabled]
CORRELATIONS = {r.id for r in CATALOGUE if r.correlation is not None}


def _t(h: int, day: int = 1) -> dt.datetime:
    return dt.datetime(2026, 11, day, h, tzinfo=UTC)


def test_windows_pack_sparse_hours_split_heavy_ones_and_tile_the_range():
    counts = {_t(1): 5, _t(2): 5, _t(3, day=20): 5, _t(4, day=20): 100, _t(5, day=20): 1}
    start, end = _t(0), _t(0, day=28)
    wins = plan_windows(counts, start, end, budget_rows=12)
    assert wins[0].start == start and wins[-1].end == end
    assert all(a.end == b.start for a, b in zip(wins, wins[1:]))  # no gap, no overlap
    assert [w.rows for w in wins] == [10, 5, 100, 1]  # 19 empty days cost nothing; the heavy hour stands alone
    assert wins[1].start == _t(3, day=20)
    assert sum(w.rows for w in wins) == sum(counts.values())
    assert plan_windows({}, start, end) == [plan_windows({}, start, end)[0]] and plan_windows({}, end, start) == []


def test_sql_shape_comes_from_the_parser_ctes_aliases_and_stars():
    shape = analyse("""
        WITH x AS (SELECT c.eventID, c.event_time, c.requestParameters->>'$.a' AS a FROM cloudtrail c
                   WHERE c.eventName = 'PutBucketPolicy' AND c.errorCode IS NULL)
        SELECT x.*, count(*) OVER (PARTITION BY a) AS n FROM x""")
    assert shape.tables == {"cloudtrail"} and shape.stateful
    assert shape.columns["cloudtrail"] == {"eventID", "event_time", "requestParameters", "eventName", "errorCode"}
    assert shape.prefilter("cloudtrail") == "(((eventName = 'PutBucketPolicy') AND (errorCode IS NULL)))"
    assert shape.event_names("cloudtrail") == {"PutBucketPolicy"}
    star = analyse("SELECT * FROM cloudtrail WHERE eventName IN ('A', 'B') OR eventName = 'C'")
    assert star.columns["cloudtrail"] is None and not star.stateful and star.event_names("cloudtrail") == {"A", "B", "C"}
    joined = analyse("SELECT g.id, c.eventID FROM guardduty g JOIN cloudtrail c ON c.eventID = g.id")
    assert joined.prefilter("cloudtrail") is None  # a join reads every row: the rule reads the lake itself


def _shift(text: str, delta: dt.timedelta) -> str:
    return (dt.datetime.fromisoformat(text.replace("Z", "+00:00")) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shift_finding(f: dict, delta: dt.timedelta) -> dict:
    f = {**f, "updatedAt": _shift(f["updatedAt"], delta), "createdAt": _shift(f["createdAt"], delta)}
    svc = dict(f.get("service") or {})
    for k in ("eventFirstSeen", "eventLastSeen"):
        if isinstance(svc.get(k), str):
            svc[k] = _shift(svc[k], delta)
    return {**f, "service": svc}


@pytest.fixture(scope="module")
def sparse_lake(tmp_path_factory):
    """Every catalogue rule's alerting test cases, each moved to its own day between 2020 and
    2024 (a few hundred events over four years, each day its own partition)."""
    root = tmp_path_factory.mktemp("sparse")
    sink = root / "src"
    day0 = dt.datetime(2020, 3, 1, tzinfo=UTC)
    n = 0
    for rule in CATALOGUE:
        for i, test in enumerate(rule.tests):
            if not test.alerts:
                continue
            # 58 minutes on: a case's events around 10:00 now cross 11:00, where the planner may cut
            delta = (day0 + dt.timedelta(days=5 * n, minutes=58)) - dt.datetime(2026, 11, 1, tzinfo=UTC)
            n += 1
            events = _events(rule, i, test)
            for e in events:
                e["eventTime"] = _shift(e["eventTime"], delta)
            findings = [_shift_finding(f, delta) for f in _findings(rule, i, test)]
            day = (dt.datetime(2026, 11, 2, tzinfo=UTC) + delta).date().isoformat()
            if events:
                key = ct_key(day=day, hhmm="2359", uniq=f"T{n:04d}")
                (sink / key).parent.mkdir(parents=True, exist_ok=True)
                (sink / key).write_bytes(ct_bytes(events))
            if findings:
                key = gd_key(day=day, uniq=f"0b1c2d3e-0000-4000-8000-{n:012d}")
                (sink / key).parent.mkdir(parents=True, exist_ok=True)
                (sink / key).write_bytes(gd_bytes(findings))
    lake = root / "lake"
    report = ingest(LocalSource(str(sink)), LocalStore(lake), IngestOptions(workers=1))
    assert report.ok and not report.unrecognised and n > 40
    return lake


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate_archive(DirSink(root / "src"), seed=5, accounts=2, days=2, events=6000, guardduty_findings=20,
                     scenarios=("all",))
    lake = root / "lake"
    assert ingest(LocalSource(str(root / "src")), LocalStore(lake), IngestOptions(workers=1)).ok
    return lake


def _alerts(lake, **opts):
    report = detect(str(lake), LocalStore(lake), CATALOGUE, DetectOptions(incremental=False, dry_run=True, **opts))
    assert report.ok, report.errors
    return report, {a.id: (a.rule_id, a.event_count, a.first_seen, a.last_seen, a.title, a.severity,
                           [(e.event_id, e.finding_id) for e in a.evidence], a.entities) for a in report.new}


@pytest.mark.parametrize("copy", [True, False], ids=["copied-range", "from-the-lake"])
@pytest.mark.parametrize("lake_name, budget", [("sparse_lake", 7), ("demo_lake", 400)])
def test_planned_run_equals_the_evaluate_everything_at_once_reference(lake_name, budget, copy, request, monkeypatch):
    lake = request.getfixturevalue(lake_name)
    _, reference = _alerts(lake, scan="per-rule")
    if not copy:  # as on a large lake: the shared scan and the wide rules read the lake's files
        monkeypatch.setattr(engine, "COPY_ROWS", 0)
    planned_report, planned = _alerts(lake)
    wide = {c.mode for c in planned_report.rule_costs if c.rule_id in ("cloudtrail_logging_gap", "guardduty_finding_with_key_activity")}
    assert wide == ({"copy"} if copy else {"lake"})
    cut_report, cut = _alerts(lake, budget_rows=budget)  # small windows: sequences straddle the cuts
    assert cut_report.windows > 10 and cut_report.windows > planned_report.windows
    assert planned == reference
    assert cut == reference
    rules = {v[0] for v in reference.values()}
    assert len(reference) > 20
    if lake_name == "sparse_lake":  # every rule's alerting cases are in there
        assert rules >= {r.id for r in CATALOGUE if any(t.alerts for t in r.tests)}
        # sequences whose events fall on both sides of a cut are still one alert with all their events
        cuts = [w.start for w in cut_report.plan]
        straddling = [v for v in cut.values() if v[0] in CORRELATIONS and any(v[2] < c <= v[3] for c in cuts)]
        assert len(straddling) >= 2
        assert max(v[1] for v in straddling if v[0] == "console_bruteforce_then_success") >= 10


def test_empty_years_cost_nothing(sparse_lake, demo_lake):
    default, _ = _alerts(demo_lake)
    wide, _ = _alerts(demo_lake, since=dt.datetime(2010, 1, 1, tzinfo=UTC), until=dt.datetime(2030, 1, 1, tzinfo=UTC))
    assert (wide.windows, wide.rows_scanned) == (default.windows, default.rows_scanned) == (1, default.rows_scanned)
    sparse, _ = _alerts(sparse_lake)
    assert sparse.windows == 1  # four years of scattered days: one window, not 1,500 days


def test_rule_costs_are_reported_per_rule(demo_lake):
    report, _ = _alerts(demo_lake)
    costs = {c.rule_id: c for c in report.rule_costs}
    assert set(costs) == {r.id for r in CATALOGUE}
    assert {c.mode for c in costs.values()} == {"shared", "fused", "windowed", "copy", "skipped"}  # a small range: copied
    # a rule is skipped only when none of the eventNames it reads is among the candidates
    present = {e["eventName"] for e in _lake_events(demo_lake)}
    for c in costs.values():
        shape = analyse(next(r for r in CATALOGUE if r.id == c.rule_id).query)
        names = shape.event_names("cloudtrail") if shape.tables == {"cloudtrail"} else None
        assert (c.mode == "skipped") == (c.mode in ("shared", "fused", "windowed", "skipped") and names is not None
                                         and not names & present and c.rule_id not in _ROWS_FROM_NOTHING), c
    assert sum(c.rows for c in costs.values()) == report.matches > 0
    assert report.candidates < report.rows_scanned  # the shared scan kept only rows some rule can use
    d = report.to_dict()
    assert d["rule_costs"][0]["seconds"] >= d["rule_costs"][-1]["seconds"]


def test_a_rule_whose_where_fails_on_the_data_is_reported_and_the_others_still_alert(demo_lake, tmp_path):
    broken = CATALOGUE[0].model_copy(update={
        "id": "broken_cast", "query": "SELECT eventID, event_time FROM cloudtrail WHERE CAST(sourceIPAddress AS INTEGER) > 0"})
    report = detect(str(demo_lake), LocalStore(demo_lake), CATALOGUE + [broken],
                    DetectOptions(incremental=False, dry_run=True))
    assert [r for r, _ in report.errors] == ["broken_cast"] and "Conversion Error" in report.errors[0][1]
    assert len(report.new) == len(_alerts(demo_lake)[1])


def test_expressions_are_printed_by_duckdb_not_cut_from_the_text():
    # the parse tree's offsets of a postfix operator point at the operator: slicing the text
    # would give "IS NOT NULL" without its operand
    sel = simple_select("SELECT eventID, c.requestParameters->>'$.x' IS NOT NULL AS has_x FROM cloudtrail c "
                        "WHERE c.eventName = 'X' AND c.errorCode IS NULL")
    assert sel is not None and sel.names == ("eventID", "has_x")
    sql = fused_sql([sel])
    con = duckdb.connect()
    con.execute("CREATE TABLE cloudtrail AS SELECT 'e1' AS eventID, 'X' AS eventName, NULL AS errorCode, "
                "'{\"x\": 1}'::JSON AS requestParameters UNION ALL SELECT 'e2', 'Y', NULL, NULL")
    assert con.sql(sql).fetchall() == [({"eventID": "e1", "has_x": True},)]
    assert analyse("SELECT eventID FROM cloudtrail WHERE errorCode IS NOT NULL").prefilter("cloudtrail") == \
        "((errorCode IS NOT NULL))"
    # more than one output row per input row, or rows depending on others: not a simple select
    for sql in ("SELECT count(*) AS n FROM cloudtrail WHERE eventName = 'X'",
                "WITH a AS (SELECT * FROM cloudtrail) SELECT eventID FROM a WHERE eventName = 'X'",
                "SELECT DISTINCT eventID FROM cloudtrail WHERE eventName = 'X'",
                "SELECT * FROM cloudtrail WHERE eventName = 'X'",
                "SELECT lower(eventName) FROM cloudtrail WHERE eventName = 'X'"):  # unnamed expression
        assert simple_select(sql) is None, sql


def test_the_shared_scan_copies_only_the_struct_fields_rules_read():
    shapes = [analyse("SELECT eventID FROM cloudtrail t WHERE t.userIdentity.type = 'Root' "
                       "AND userIdentity.sessionContext.sessionIssuer.arn IS NOT NULL")]
    select = candidate_columns({"eventID", "userIdentity"}, shapes)
    assert 'struct_pack("type" := "userIdentity"."type", "sessionContext" := struct_pack("sessionIssuer" := ' \
           'struct_pack("arn" := "userIdentity"."sessionContext"."sessionIssuer"."arn"))) AS "userIdentity"' in select
    # a rule that reads the whole struct gets the whole struct
    shapes.append(analyse("SELECT to_json(userIdentity) AS who FROM cloudtrail WHERE eventName = 'X'"))
    assert candidate_columns({"eventID", "userIdentity"}, shapes) == '"userIdentity", "eventID"'


def test_a_simple_rule_failing_on_the_data_is_reported_and_the_other_simple_rules_still_alert(demo_lake):
    broken = CATALOGUE[0].model_copy(update={
        "id": "broken_select", "correlation": None,
        "query": "SELECT eventID, event_time, CAST(sourceIPAddress AS INTEGER) AS n FROM cloudtrail "
                 "WHERE eventName = 'ConsoleLogin'"})
    assert simple_select(broken.query) is not None
    report = detect(str(demo_lake), LocalStore(demo_lake), CATALOGUE + [broken],
                    DetectOptions(incremental=False, dry_run=True))
    assert [r for r, _ in report.errors] == ["broken_select"] and "Conversion Error" in report.errors[0][1]
    assert len(report.new) == len(_alerts(demo_lake)[1])


_ROWS_FROM_NOTHING = {r.id for r in CATALOGUE if not analyse(r.query).needs_rows
                      and (r.correlation is None or any(st.query for st in r.correlation.stages))}


def _lake_events(lake) -> list[dict]:
    con = duckdb.connect()
    return [{"eventName": n} for (n,) in con.execute(
        f"SELECT DISTINCT eventName FROM read_parquet('{lake}/cloudtrail/**/*.parquet')").fetchall()]


def test_a_rule_that_returns_rows_from_no_input_is_never_skipped(demo_lake):
    # count(*) without GROUP BY answers one row over nothing: skipping it would lose that row
    rows_from_nothing = CATALOGUE[0].model_copy(update={
        "id": "count_of_nothing", "correlation": None, "dedup": CATALOGUE[0].dedup.model_copy(update={"keys": []}),
        "query": "SELECT count(*) AS n, TIMESTAMPTZ '2026-11-01 00:00:00+00' AS event_time FROM cloudtrail "
                 "WHERE eventName = 'NoSuchEventAnywhere'"})
    assert not analyse(rows_from_nothing.query).needs_rows
    report = detect(str(demo_lake), LocalStore(demo_lake), CATALOGUE + [rows_from_nothing],
                    DetectOptions(incremental=False, dry_run=True))
    cost = next(c for c in report.rule_costs if c.rule_id == "count_of_nothing")
    assert cost.mode == "fused" or cost.mode == "shared"
    assert cost.rows == 1
