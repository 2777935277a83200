"""Saved hunts: strict validation with file:line errors, typed parameters, every catalogue hunt's own
tests (real normaliser, real SQL), and ``soclake hunt`` on a small real lake."""

import csv
import datetime as dt
import io
import json
import textwrap

import pytest

from pipeline.analyst import hunts
from pipeline.analyst.hunts import HuntError, load_hunts, resolve_params, run_hunt_test
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore
from pipeline.sources import LocalSource
from pipeline.synth import DirSink, generate_archive

CATALOGUE = load_hunts()

TYPED_HUNT = textwrap.dedent("""\
    id: typed
    title: Parameter types as DuckDB sees them
    description: one row showing the type each parameter is bound as
    parameters:
      - {name: since, type: timestamp, required: true, description: a time}
      - {name: span, type: duration, default: 2h, description: a duration}
      - {name: day, type: date, default: "2026-11-01", description: a date}
      - {name: n, type: int, default: 3, description: a number}
      - {name: who, type: string, description: a name}
      - {name: until, type: timestamp, description: "optional: NULL, yet typed"}
    query: |
      SELECT typeof($since) AS t_since, typeof($span) AS t_span, typeof($day) AS t_day, typeof($n) AS t_n,
             $since + $span AS later, $who IS NULL AS no_who, '$.not_a_param' AS literal, $until + $span AS no_until,
             (SELECT count(*) FROM cloudtrail WHERE event_time >= $since AND event_date >= $day) AS events
    tests:
      - name: types
        params: {since: "2026-11-01T09:00:00Z"}
        rows: 1
        expect:
          - {t_since: TIMESTAMP WITH TIME ZONE, t_span: INTERVAL, t_day: DATE, t_n: BIGINT, later: "2026-11-01T11:00:00Z", no_who: true, no_until: null, literal: "$.not_a_param", events: 1}
        events:
          - {eventTime: "2026-11-01T10:00:00Z"}
          - {eventTime: "2026-11-01T08:00:00Z"}
""")


def write(tmp_path, text, name="typed"):
    d = tmp_path / "hunts"
    d.mkdir(exist_ok=True)
    (d / f"{name}.yml").write_text(text)
    return d


def typed_hunt(tmp_path):
    return load_hunts([write(tmp_path, TYPED_HUNT)])[0]


# -- the catalogue -----------------------------------------------------------------------------


def test_catalogue_has_the_investigation_hunts():
    ids = {h.id for h in CATALOGUE}
    assert {"access_key_activity", "guardduty_finding_activity", "first_seen_api_calls", "console_signins_by_source",
            "who_changed_resource", "errors_by_principal"} <= ids
    assert all(h.tests and any(t.rows for t in h.tests) for h in CATALOGUE)


@pytest.mark.parametrize(
    "hunt, n", [(h, n) for h in CATALOGUE for n in range(len(h.tests))], ids=lambda v: v.id if hasattr(v, "id") else str(v)
)
def test_catalogue_hunt_tests_pass(hunt, n):
    problems = run_hunt_test(hunt, n)
    assert not problems, f"{hunt.id}: {hunt.tests[n].name}: " + "; ".join(problems)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.replace("title:", "titel:"), ":2: unknown key 'titel'"),
        (lambda t: t.replace("description: one row", "summary: one row"), "missing required key 'description'"),
        (lambda t: t.replace("type: duration", "type: interval"), ":6: parameters.1.type: Input should be 'string', 'int', 'timestamp', 'duration' or 'date'"),
        (lambda t: t.replace("default: 2h", "default: soon"), ":6: parameters.1: Value error, 'soon' is not a duration"),
        (lambda t: t.replace("default: 3,", "default: three,"), ":8: parameters.3: Value error, 'three' is not an integer"),
        (lambda t: t.replace("required: true,", "required: true, default: 2026-11-01,"), "a required parameter has no default"),
        (lambda t: t.replace("{name: n,", "{name: Count,"), "'Count': hunt ids and parameter names are lower_snake_case"),
        (lambda t: t.replace("typeof($n)", "typeof($m)"), ":11: query uses $m, not declared in parameters"),
        (lambda t: t.replace("$who IS NULL", "true"), ":11: parameter(s) who declared but never used in the query"),
        (lambda t: t.replace("id: typed", "id: other"), ":1: id 'other' must equal the file name ('typed')"),
        (lambda t: t.replace("FROM cloudtrail", "FROM cloudtrial"), ":11: query does not run: Catalog Error: Table with name cloudtrial does not exist"),
        (lambda t: t.replace("event_date >= $day", "event_day >= $day"), ':11: query does not run: Binder Error: Referenced column "event_day" not found'),
        (lambda t: t.replace('params: {since: "2026-11-01T09:00:00Z"}', "params: {}"), "test 'types': hunt typed needs 1 more parameter(s)"),
        (lambda t: t.replace('params: {since: "2026-11-01T09:00:00Z"}', 'params: {since: "2026-11-01T09:00:00Z", to: x}'),
         ":17: test 'types': hunt typed has no parameter 'to'"),
        (lambda t: t.replace("rows: 1", "rows: 0"), "expect describes 1 rows but rows is 0"),
        (lambda t: t.split("tests:")[0] + "tests: []\n", "tests: List should have at least 1 item"),
    ],
)
def test_broken_hunts_are_reported_with_file_and_line(tmp_path, mutate, message):
    with pytest.raises(HuntError) as e:
        load_hunts([write(tmp_path, mutate(TYPED_HUNT))])
    assert message in str(e.value)
    assert "typed.yml" in str(e.value)


def test_all_problems_are_reported_at_once_and_duplicates_are_errors(tmp_path):
    d = write(tmp_path, TYPED_HUNT.replace("title:", "titel:"))
    write(tmp_path, TYPED_HUNT.replace("id: typed", "id: second").replace("FROM cloudtrail", "FROM nowhere"), "second")
    with pytest.raises(HuntError) as e:
        load_hunts([d])
    assert "3 problem(s)" in str(e.value) and "unknown key 'titel'" in str(e.value) and "missing required key 'title'" in str(e.value) and "nowhere" in str(e.value)
    with pytest.raises(HuntError, match="duplicate hunt id 'access_key_activity'"):
        load_hunts([hunts.HUNTS_DIR, write(tmp_path, (hunts.HUNTS_DIR / "access_key_activity.yml").read_text(),
                                           "access_key_activity")])


def test_rule_loader_skips_the_hunts_folder():
    from pipeline.detect.rules import load_rules

    assert not {h.id for h in CATALOGUE} & {r.id for r in load_rules()}


# -- parameters --------------------------------------------------------------------------------


def test_parameters_are_bound_with_their_types(tmp_path):
    hunt = typed_hunt(tmp_path)
    assert run_hunt_test(hunt, 0) == []
    values = resolve_params(hunt, {"since": "2026-11-01", "span": "15m", "n": "-4", "who": "x"})
    assert values == {"since": dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "span": dt.timedelta(minutes=15),
                      "day": dt.date(2026, 11, 1), "n": -4, "who": "x", "until": None}
    assert resolve_params(hunt, {"since": "2026-11-01T09:30"})["since"] == dt.datetime(2026, 11, 1, 9, 30, tzinfo=dt.UTC)
    assert resolve_params(hunt, {"since": "2026-11-01T10:30+01:00"})["since"] == dt.datetime(2026, 11, 1, 9, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "given, message",
    [
        ({}, "hunt typed needs 1 more parameter(s):\n  --param since=…  (timestamp) a time"),
        ({"since": "yesterday"}, "hunt typed, parameter since (timestamp): 'yesterday' is not a time: use YYYY-MM-DD"),
        ({"since": "2026-11-01", "n": "1.5"}, "hunt typed, parameter n (int): '1.5' is not an integer"),
        ({"since": "2026-11-01", "span": "2 hours"}, "hunt typed, parameter span (duration): '2 hours' is not a duration"),
        ({"since": "2026-11-01", "day": "11/01/2026"}, "hunt typed, parameter day (date): '11/01/2026' is not a date"),
        ({"since": "2026-11-01", "sinse": "x"}, "hunt typed has no parameter 'sinse' (its parameters: since, span, day, n, who, until)"),
    ],
)
def test_bad_parameters_name_the_hunt_and_the_parameter(tmp_path, given, message):
    with pytest.raises(HuntError) as e:
        resolve_params(typed_hunt(tmp_path), given)
    assert message in str(e.value)


def test_a_failing_hunt_test_explains_itself(tmp_path):
    wrong = TYPED_HUNT.replace("t_n: BIGINT", "t_n: INTEGER").replace("events: 1}", "events: 2}")
    assert run_hunt_test(load_hunts([write(tmp_path, wrong)])[0], 0) == [
        "row 1 column t_n: expected 'INTEGER', got 'BIGINT'", "row 1 column events: expected 2, got 1"]
    fewer = TYPED_HUNT.replace("rows: 1", "rows: 2")
    assert run_hunt_test(load_hunts([write(tmp_path, fewer)])[0], 0) == ["expected 2 row(s), got 1"]


# -- soclake hunt on a real lake ---------------------------------------------------------------


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A small synthetic organisation with the leaked-access-key attack, ingested through the real pipeline."""
    root = tmp_path_factory.mktemp("hunts")
    summary = generate_archive(DirSink(root / "logs"), seed=3, accounts=2, days=1, events=4000,
                               guardduty_findings=5, scenarios=("leaked_access_key",))
    ingest(LocalSource(root / "logs"), LocalStore(root / "lake"), IngestOptions(workers=1))
    return str(root / "lake"), summary.scenarios[0]


def soclake(*argv):
    from pipeline.cli import parse_args

    args = parse_args(list(argv))
    return args.func(args)


def test_hunt_list_shows_every_hunt_and_its_parameters(capsys):
    assert soclake("hunt", "--list") == 0
    out = capsys.readouterr().out
    assert all(f"{h.id}: {h.title}" in out for h in CATALOGUE)
    assert "access_key     string    required" in out and "hours          int       default 24" in out


def test_access_key_hunt_on_a_lake(lake, capsys):
    path, attack = lake
    key, window = attack.details["access_key"], ["--param", f"since={attack.start}", "--param", f"until={attack.end}"]
    assert soclake("hunt", "access_key_activity", "--lake", path, "--param", f"access_key={key}", *window,
                   "--format", "jsonl") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    attacker = [r for r in rows if r["source_ip"] == attack.details["source_ip"]]
    assert {"iam:CreateUser", "iam:AttachUserPolicy", "iam:CreateAccessKey"} <= {r["api"] for r in attacker}
    assert all(r["actor"] == attack.actor for r in rows) and [r["event_time"] for r in rows] == sorted(r["event_time"] for r in rows)
    assert {r["event_id"] for r in attacker} <= set(attack.event_ids)

    assert soclake("hunt", "access_key_activity", "--lake", path, "--param", f"access_key={key}", *window,
                   "--format", "csv", "--columns", "api,source_ip", "--limit", "2") == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0] == ["api", "source_ip"] and len(table) == 3

    assert soclake("hunt", "access_key_activity", "--lake", path, "--param", f"access_key={key}", *window, "--limit", "3") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["event_time", "actor", "account_id"] and out[-1] == f"3 of {len(rows)} rows"


def test_guardduty_and_first_seen_hunts_find_the_attack(lake, capsys):
    from pipeline import views

    path, attack = lake
    con = views.connect(path)
    finding = con.execute("SELECT id FROM guardduty_latest WHERE access_key_id = ? ORDER BY first_seen LIMIT 1",
                          [attack.details["access_key"]]).fetchone()[0]
    assert soclake("hunt", "guardduty_finding_activity", "--lake", path, "--param", f"finding_id={finding}",
                   "--param", "hours=2", "--format", "jsonl") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "cloudtrail:StopLogging" in {r["api"] for r in rows} and {r["matched_by"] for r in rows} == {"access_key"}

    since = (dt.datetime.fromisoformat(attack.start.replace("Z", "+00:00")) - dt.timedelta(minutes=1)).isoformat()
    assert soclake("hunt", "first_seen_api_calls", "--lake", path, "--param", f"since={since}", "--param", "baseline_days=1",
                   "--param", f"principal={attack.actor}", "--format", "jsonl") == 0
    new = {r["api"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert {"iam:CreateUser", "iam:ListUsers", "cloudtrail:StopLogging"} <= set(new)
    assert new["iam:CreateUser"]["source_ip"] == attack.details["source_ip"]


def test_cli_errors_are_one_clear_line(lake):
    path, _ = lake
    with pytest.raises(HuntError, match="no hunt named 'first_seen' \\(did you mean first_seen_api_calls\\?\\)"):
        soclake("hunt", "first_seen", "--lake", path)
    with pytest.raises(HuntError, match="--param takes NAME=VALUE, got 'since'"):
        soclake("hunt", "first_seen_api_calls", "--lake", path, "--param", "since")
    with pytest.raises(HuntError, match="has no column 'nope' \\(its columns: first_seen, actor"):
        soclake("hunt", "first_seen_api_calls", "--lake", path, "--param", "since=2026-11-01", "--columns", "api,nope")


def test_hunts_test_and_validate_commands(tmp_path, capsys):
    assert soclake("hunts", "validate") == 0
    assert f"{len(CATALOGUE)} hunts valid" in capsys.readouterr().out
    assert soclake("hunts", "test", "errors_by_principal") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 passed, 0 failed"
    bad = write(tmp_path, TYPED_HUNT.replace("t_n: BIGINT", "t_n: INTEGER"))
    assert soclake("hunts", "test", "typed", "--hunts", str(bad)) == 1
    assert "FAIL  typed: types\n        row 1 column t_n: expected 'INTEGER', got 'BIGINT'" in capsys.readouterr().out


def test_documented_geoip_join_runs(lake, tmp_path, capsys):
    """docs/hunting.md: export console sign-ins as CSV, join an ip_geo(network, country, asn) table in DuckDB."""
    import duckdb

    path, _ = lake
    assert soclake("hunt", "console_signins_by_source", "--lake", path, "--format", "csv") == 0
    (tmp_path / "signins.csv").write_text(capsys.readouterr().out)
    doc = (hunts.DETECTIONS_DIR.parent / "docs" / "hunting.md").read_text()
    sql = doc.split("<!-- geoip-sql -->")[1].split("```sql")[1].split("```")[0]
    con = duckdb.connect()
    con.execute("CREATE TABLE ip_geo AS SELECT * FROM (VALUES ('0.0.0.0/1', 'Lowland', 'AS64500'), "
                "('128.0.0.0/1', 'Highland', 'AS64501')) t(network, country, asn)")
    rows = con.execute(sql.replace("signins.csv", str(tmp_path / "signins.csv"))).fetchall()
    assert rows and {r[0] for r in rows} <= {"Lowland", "Highland"}
