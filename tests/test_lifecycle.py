"""Alert and incident lifecycle: changes stored as events in the lake, the status views, the
commands (list, show, change, id prefixes), status surviving detect reruns, a closed alert that
grows reopened, the ``status`` forwarding stream, and suppressions proposed from false positives."""

import datetime as dt
import json
import re
import textwrap

import pytest

from pipeline import views
from pipeline.cli import main
from pipeline.correlate import lifecycle
from pipeline.detect.engine import DetectOptions, detect
from pipeline.detect.rule_config import load_tuning, tune
from pipeline.detect.rules import load_rules
from pipeline.forward.run import forward
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore
from pipeline.sources import LocalSource
from pipeline.synth.records import make_console_login
from tests.archive import ct_bytes, ct_key
from tests.test_suppressions import LOGIN_RULE

ALICE, BOB, CAROL = (f"arn:aws:iam::111111111111:user/{n}" for n in ("alice", "bob", "carol"))


def login(user, minute, event_id, ip="203.0.113.5"):
    return make_console_login(user, "111111111111", ip=ip, event_time=f"2026-11-01T10:{minute:02d}:00Z", eventID=event_id)


@pytest.fixture
def rules(tmp_path):
    d = tmp_path / "rules" / "cloudtrail"
    d.mkdir(parents=True)
    (d / "test_login.yml").write_text(LOGIN_RULE.format(id="test_login"))
    return [r for r in load_rules([d.parent]) if r.id == "test_login"]


@pytest.fixture
def lake(archive, tmp_path, rules, monkeypatch):
    """Three alerts (one per user's sign-ins in the 10:00 hour), each its own (high) incident."""
    monkeypatch.setenv("USER", "analyst1")
    archive.put(ct_key(uniq="a"), ct_bytes([login("alice", 5, "e1"), login("bob", 6, "e2", "198.51.100.7"),
                                            login("carol", 7, "e3")]))
    path = tmp_path / "lake"
    ingest(LocalSource(archive.root), LocalStore(path), IngestOptions(workers=1))
    detect(str(path), LocalStore(path), rules)
    return path


def alert_ids(lake) -> dict[str, str]:
    """actor name → alert id"""
    rows = views.connect(str(lake)).execute("SELECT actor, id FROM alerts").fetchall()
    return {actor.rsplit("/", 1)[1]: i for actor, i in rows}


def status(lake, kind="alert") -> dict[str, tuple]:
    con = views.connect(str(lake))
    return {r[0]: r[1:] for r in con.execute(f"SELECT id, status, owner, disposition FROM {kind}_status").fetchall()}


def cli(lake, *argv) -> int:
    """The exit code of ``soclake ARGV --lake LAKE`` (argparse's usage errors exit 64 by SystemExit)."""
    try:
        return main([*argv, "--lake", str(lake)])
    except SystemExit as e:
        return e.code


def test_changes_are_events_in_the_lake_and_the_view_gives_the_current_state(lake, capsys):
    ids = alert_ids(lake)
    assert set(status(lake).values()) == {("new", None, None)}  # no events: new
    a = ids["alice"]
    assert cli(lake, "alert", a[:8], "ack") == 0
    assert cli(lake, "alert", a[:8], "assign", "bob.analyst") == 0
    assert cli(lake, "alert", a, "start", "--by", "carla") == 0
    assert cli(lake, "alert", a, "note", "called alice: it was her") == 0
    assert cli(lake, "alert", a, "close", "--disposition", "benign", "--note", "travel") == 0
    assert status(lake)[a] == ("closed", "bob.analyst", "benign")
    assert (lake / "alert_events").is_dir() and len(list((lake / "alert_events").glob("*.parquet"))) == 5
    con = views.connect(str(lake))
    hist = lifecycle.history(con, "alert", a)
    assert [(h["who"], h["action"], h["status"]) for h in hist] == [
        ("analyst1", "ack", "acknowledged"), ("analyst1", "assign", "acknowledged"), ("carla", "start", "in_progress"),
        ("analyst1", "note", "in_progress"), ("analyst1", "close", "closed")]
    assert hist[3]["note"] == "called alice: it was her" and hist[4]["note"] == "travel"
    assert cli(lake, "alert", a, "reopen") == 0  # by a person: it has been looked at
    assert status(lake)[a] == ("acknowledged", "bob.analyst", None)
    capsys.readouterr()
    assert cli(lake, "alert", a[:10]) == 0
    out = capsys.readouterr().out
    assert f"Alert {a}" in out and "acknowledged, owner bob.analyst" in out
    assert "signin:ConsoleLogin" in out and "from 203.0.113.5" in out  # the evidence, read back from the lake
    assert "History:" in out and "close   → closed (owner bob.analyst, benign): travel" in out


def test_unknown_ambiguous_and_senseless_changes_are_refused(lake, capsys):
    a = alert_ids(lake)["alice"]
    assert cli(lake, "alert", "zzzz", "ack") == 1
    assert "no alert with id 'zzzz'" in capsys.readouterr().err
    assert cli(lake, "alert", "", "ack") == 1  # every id starts with ''
    assert "matches more than one alert" in capsys.readouterr().err
    assert cli(lake, "alert", a, "close") == 64
    assert "close needs --disposition" in capsys.readouterr().err
    assert cli(lake, "alert", a, "ack", "someone") == 64
    assert cli(lake, "alert", a, "assign") == 64
    assert cli(lake, "alert", a, "--note", "x") == 64  # a note without an action
    assert cli(lake, "alert", a, "reopen") == 1
    assert "is not closed" in capsys.readouterr().err
    assert cli(lake, "alert", a, "close", "--disposition", "duplicate") == 0
    assert cli(lake, "alert", a, "ack") == 1
    assert "closed (duplicate): reopen it first" in capsys.readouterr().err
    assert cli(lake, "alert", a, "close", "--disposition", "maybe") == 64
    assert len(list((lake / "alert_events").glob("*.parquet"))) == 1  # only the one change that made sense


def test_a_rerun_keeps_the_status_and_a_closed_alert_that_grows_is_reopened(lake, archive, rules):
    ids = alert_ids(lake)
    assert cli(lake, "alert", ids["alice"], "assign", "dana") == 0
    assert cli(lake, "alert", ids["bob"], "close", "--disposition", "benign") == 0
    assert cli(lake, "alert", ids["carol"], "close", "--disposition", "true_positive") == 0
    con = views.connect(str(lake))
    incident_of = dict(con.execute("SELECT alert_ids[1], id FROM incidents").fetchall())
    for who in ("alice", "carol"):  # alice's incident changes (her alert grows), carol's does not
        assert cli(lake, "incident", incident_of[ids[who]], "close", "--disposition", "true_positive") == 0
    # late sign-ins of alice and bob in the same hour: both alerts get a new version; carol's does not
    archive.put(ct_key(uniq="b", hhmm="1030"), ct_bytes([login("alice", 30, "e4"), login("bob", 31, "e5")]))
    ingest(LocalSource(archive.root), LocalStore(lake), IngestOptions(workers=1))
    report = detect(str(lake), LocalStore(lake), rules)
    assert sorted(a.id for a in report.updated) == sorted([ids["alice"], ids["bob"]])
    assert report.reopened == [ids["bob"]] and report.to_dict()["alerts_reopened"] == [ids["bob"]]
    st = status(lake)
    assert st[ids["alice"]] == ("acknowledged", "dana", None)  # survives the new version
    assert st[ids["bob"]] == ("new", "analyst1", None)  # back in the queue
    assert st[ids["carol"]] == ("closed", "analyst1", "true_positive")
    [last] = lifecycle.history(views.connect(str(lake)), "alert", ids["bob"])[-1:]
    assert (last["who"], last["action"]) == ("soclake", "reopen")
    assert "grew after it was closed as benign (1 → 2 events" in last["note"]
    assert report.reopened_incidents == [incident_of[ids["alice"]]]
    assert status(lake, "incident")[incident_of[ids["alice"]]] == ("new", "analyst1", None)
    assert status(lake, "incident")[incident_of[ids["carol"]]] == ("closed", "analyst1", "true_positive")
    [last] = lifecycle.history(views.connect(str(lake)), "incident", incident_of[ids["alice"]])[-1:]
    assert "changed after it was closed as true_positive (1 alert," in last["note"]
    # a rerun with nothing new changes nothing and reopens nothing
    again = detect(str(lake), LocalStore(lake), rules, DetectOptions(incremental=False))
    assert (again.reopened, again.reopened_incidents) == ([], [])


def test_alerts_lists_with_filters(lake, capsys):
    ids = alert_ids(lake)
    assert cli(lake, "alert", ids["alice"], "ack") == 0
    assert cli(lake, "alert", ids["bob"], "close", "--disposition", "benign") == 0
    capsys.readouterr()

    def listed(*flags):
        assert cli(lake, "alerts", "--json", *flags) == 0
        return sorted(r["actor"].rsplit("/", 1)[1] for r in json.loads(capsys.readouterr().out))

    assert listed() == ["alice", "bob", "carol"]
    assert listed("--status", "new") == ["carol"]
    assert listed("--status", "acknowledged") == ["alice"]
    assert listed("--open") == listed("--status", "open") == ["alice", "carol"]
    assert listed("--severity", "high") == ["alice", "bob", "carol"]
    assert listed("--severity", "critical") == []
    assert listed("--rule", "test_*") == listed("--rule", "test_login") == ["alice", "bob", "carol"]
    assert listed("--rule", "other") == []
    assert listed("--since", "2026-11-01T10:06:30Z") == ["carol"]
    assert listed("--since", "24h") == []  # the sign-ins are from 2026-11-01
    assert len(listed("--limit", "2")) == 2
    assert cli(lake, "alerts", "--status", "closed") == 0
    out = capsys.readouterr().out
    assert ids["bob"][:12] in out and "closed" in out and "1 alerts" in out
    assert cli(lake, "alerts", "--since", "yesterday") == 64


def test_incidents_have_the_same_lifecycle_and_open_means_not_closed(lake, capsys):
    con = views.connect(str(lake))
    incidents = [r[0] for r in con.execute("SELECT id FROM incidents ORDER BY id").fetchall()]
    assert len(incidents) == 3
    first, second = incidents[:2]
    assert cli(lake, "incident", first[:10], "close", "--disposition", "false_positive") == 0
    assert cli(lake, "incident", second, "assign", "erin") == 0
    assert status(lake, "incident")[first] == ("closed", "analyst1", "false_positive")
    capsys.readouterr()
    assert cli(lake, "incidents", "--open", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["id"] for r in rows) == sorted(incidents[1:])
    assert {r["id"]: r["owner"] for r in rows}[second] == "erin"
    assert cli(lake, "incidents", "--status", "closed") == 0
    assert "closed (false_positive), owner analyst1" in capsys.readouterr().out
    assert cli(lake, "incident", second) == 0
    out = capsys.readouterr().out
    assert "acknowledged, owner erin" in out and "assign  → acknowledged (owner erin)" in out
    assert cli(lake, "incident", first, "--suppress") == 64  # --suppress is for alerts only
    # an incident's event is no alert's
    assert set(status(lake).values()) == {("new", None, None)}


def test_the_status_stream_delivers_each_change_once(lake, tmp_path):
    ids = alert_ids(lake)
    out = tmp_path / "siem.jsonl"
    config = tmp_path / "sinks.yml"
    config.write_text(f"sinks:\n  - {{name: siem, type: jsonl, path: {out}, streams: [alerts, status]}}\n"
                      f"  - {{name: other, type: jsonl, path: {tmp_path / 'other.jsonl'}, rules: [nothing_*],"
                      " streams: [status]}\n")
    assert cli(lake, "alert", ids["alice"], "ack") == 0
    assert cli(lake, "alert", ids["alice"], "close", "--disposition", "benign", "--note", "her phone") == 0
    siem, other = forward(str(lake), LocalStore(lake), str(config))
    assert (siem.delivered, other.delivered) == (5, 0)  # the rules filter applies to the alert's rule
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    changes = [x for x in lines if x["rule_id"] == "soclake_status"]
    assert [x["evidence"][0]["fields"]["action"] for x in changes] == ["ack", "close"]
    close = changes[1]
    assert close["dedup_key"] == {"kind": "alert", "id": ids["alice"]} and close["severity"] == "high"
    assert {k: close["evidence"][0]["fields"][k] for k in ("status", "disposition", "note", "who", "rule_id")} == {
        "status": "closed", "disposition": "benign", "note": "her phone", "who": "analyst1", "rule_id": "test_login"}
    [again, _] = forward(str(lake), LocalStore(lake), str(config))
    assert again.pending == 0  # delivered once
    assert cli(lake, "alert", ids["bob"], "note", "looking") == 0
    [third, _] = forward(str(lake), LocalStore(lake), str(config))
    assert third.delivered == 1
    assert json.loads(out.read_text().splitlines()[-1])["evidence"][0]["fields"]["note"] == "looking"


TUNING = textwrap.dedent("""\
    # our tuning file
    suppressions:
      # the office
      - {id: office, source_cidr: 192.0.2.0/24, reason: the office}

    rules:
      test_login: {enabled: true}
""")


def test_closing_as_false_positive_can_propose_a_suppression(lake, tmp_path, rules, capsys):
    ids = alert_ids(lake)
    tuning = tmp_path / "tuning.yml"
    tuning.write_text(TUNING)
    assert cli(lake, "alert", ids["carol"], "close", "--disposition", "false_positive") == 0
    assert tuning.read_text() == TUNING  # only when asked
    assert cli(lake, "alert", ids["bob"], "close", "--disposition", "benign", "--suppress",
               "--suppressions", str(tuning)) == 64
    assert cli(lake, "alert", ids["bob"], "close", "--disposition", "false_positive", "--suppress") == 64
    capsys.readouterr()
    assert cli(lake, "alert", ids["bob"], "close", "--disposition", "false_positive", "--suppress",
               "--suppressions", str(tuning), "--note", "bob's new laptop") == 0
    assert f"suppression fp-{ids['bob'][:12]} added to" in capsys.readouterr().out
    text = tuning.read_text()
    assert text.startswith(TUNING.split("\n    rules:")[0].split("\nrules:")[0]) and "# the office" in text
    assert text.rstrip().endswith("test_login: {enabled: true}")  # the entry went into the list, not after rules:
    [office, entry] = load_tuning(str(tuning)).entries
    spec = entry[0]
    assert (spec.id, spec.rule, spec.principal, spec.source_cidr) == (
        f"fp-{ids['bob'][:12]}", ["test_login"], [BOB], ["198.51.100.7/32"])
    assert "false positive (analyst1, " in spec.reason and spec.reason.endswith("bob's new laptop")
    assert spec.expires is not None
    # the next detect run suppresses bob's alert, and only his
    rules2, sup = tune(rules, load_tuning(str(tuning)))
    report = detect(str(lake), LocalStore(lake), rules2, DetectOptions(suppressions=sup, incremental=False))
    assert [a.actor for a in report.updated if a.suppressed_by] == []
    con = views.connect(str(lake))
    assert con.execute("SELECT actor FROM alerts WHERE suppressed_by IS NOT NULL").fetchall() == [(BOB,)]


def test_a_proposal_goes_into_a_new_file_and_is_not_repeated(lake, tmp_path, capsys):
    ids = alert_ids(lake)
    tuning = tmp_path / "new" / "tuning.yml"
    tuning.parent.mkdir()
    for _ in range(2):
        assert cli(lake, "alert", ids["alice"], "close", "--disposition", "false_positive", "--suppress",
                   "--suppressions", str(tuning)) == 0
        assert cli(lake, "alert", ids["alice"], "reopen") == 0
    assert "already in" in capsys.readouterr().out
    assert len(load_tuning(str(tuning)).entries) == 1


def test_events_are_stored_in_an_s3_lake_too(lake_store):
    when = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    lifecycle.write_event(lake_store, "alert", "a" * 32, "ack", lifecycle.State("acknowledged"), "x", at=when)
    lifecycle.write_event(lake_store, "alert", "a" * 32, "assign", lifecycle.State("acknowledged", "y"), "x",
                          at=when + dt.timedelta(seconds=1))
    con = views.connect(lake_store.uri)
    assert lifecycle.current(con, "alert", ["a" * 32, "b" * 32]) == {"a" * 32: lifecycle.State("acknowledged", "y")}
    assert [h["action"] for h in lifecycle.history(con, "alert", "a" * 32)] == ["ack", "assign"]


def test_the_report_shows_an_incidents_status_and_owner(lake, tmp_path):
    con = views.connect(str(lake))
    first = con.execute("SELECT id FROM incidents ORDER BY id LIMIT 1").fetchall()[0][0]
    assert cli(lake, "incident", first, "assign", "erin") == 0
    assert cli(lake, "report", "--output", str(tmp_path / "report.html")) == 0
    html = (tmp_path / "report.html").read_text()
    metas = re.findall(r'<p class="meta">Incident .*?</p>', html)
    assert len(metas) == 3 and sum('st-acknowledged">acknowledged</span> · owner erin</p>' in m for m in metas) == 1
    assert sum('st-new">new</span> · no owner</p>' in m for m in metas) == 2


def test_alerts_and_incidents_in_every_format_with_rfc3339_times(lake, capsys):
    capsys.readouterr()
    assert cli(lake, "alerts", "--format", "jsonl", "--limit", "2") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and all(r["last_seen"].endswith("Z") and "T" in r["last_seen"] for r in rows)
    assert cli(lake, "alerts", "--format", "csv") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("id,") and len(lines) == 4
    assert cli(lake, "incidents", "--format", "json", "--limit", "1") == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert cli(lake, "alerts") == 0
    out = capsys.readouterr().out
    assert "2026-11-01T10:0" in out and "3 alerts" in out  # table times are RFC 3339 too


def test_detail_views_print_rfc3339_times(lake, capsys):
    """soclake alert ID and soclake incident ID: every time RFC 3339 in UTC (Z), the history too."""
    a = alert_ids(lake)["alice"]
    assert cli(lake, "alert", a, "ack", "--note", "looking") == 0
    incident = views.connect(str(lake)).execute("SELECT id FROM incidents WHERE list_contains(alert_ids, ?)", [a]).fetchone()[0]
    assert cli(lake, "incident", incident, "assign", "dana") == 0
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"
    for argv in (("alert", a), ("incident", incident)):
        capsys.readouterr()
        assert cli(lake, *argv) == 0
        out = capsys.readouterr().out
        assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", out) and " UTC" not in out, out
        assert re.search(rf"{stamp} → {stamp}", out), out  # first and last seen
        assert re.search(r"^ +2026-11-01T10:05:00Z +signin:ConsoleLogin", out, re.M), out  # the evidence, full time
        assert re.search(rf"^  {stamp}  analyst1 ", out, re.M), out  # the history
