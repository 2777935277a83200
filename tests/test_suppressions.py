"""Suppressions: each matcher, expiry, the file's errors, and a suppressed alert's path through the
lake (kept, marked), the detect report (counted), incidents and forwarding (left out)."""

import datetime as dt
import json
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import views
from pipeline.cli import main
from pipeline.detect.alert_store import ARROW_SCHEMA
from pipeline.detect.alerts import Alert, Evidence
from pipeline.detect.engine import DetectOptions, detect
from pipeline.detect.rule_config import load_tuning, tune
from pipeline.detect.rules import load_rules
from pipeline.errors import ConfigError
from pipeline.forward.run import forward
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore
from pipeline.sources import LocalSource
from pipeline.synth.records import make_console_login
from tests.archive import ct_bytes, ct_key

T = dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC)
FUTURE, PAST = "2999-12-31", "2020-01-31"

LOGIN_RULE = textwrap.dedent("""\
    id: {id}
    title: Console sign-in
    severity: high
    description: Every console sign-in (a test rule).
    attack: {{tactics: [TA0001], techniques: [T1078.004]}}
    practice: Protect the root user
    false_positives: [Everyone signs in.]
    runbook: Check it.
    dedup: {{keys: [actor], window: 1h}}
    alert_title: "{{actor}} signed in from {{sourceIPAddress}}"
    query: |
      SELECT eventID, event_time, account_id, region, actor, sourceIPAddress, userAgent FROM cloudtrail
      WHERE eventName = 'ConsoleLogin'
    tests:
      - name: a sign-in
        alerts: 1
        events: [{{eventName: ConsoleLogin}}]
      - name: not a sign-in
        alerts: 0
        events: [{{eventName: GetUser}}]
""")


def make_alert(rule="iam_user_created", actor="arn:aws:iam::111111111111:user/alice", account="111111111111",
               region="us-east-1", ips=("203.0.113.5",), agents=("aws-cli/2.18.2",), entities=None) -> Alert:
    return Alert(id="a1", rule_id=rule, rule_version=1, title="t", severity="high", first_seen=T, last_seen=T,
                 event_count=1, account_id=account, region=region, actor=actor, source_ips=list(ips),
                 attack={"tactics": ["TA0001"], "techniques": []}, practice="p", runbook="r",
                 window_start=T, window_end=T + dt.timedelta(hours=1), detected_at=T,
                 entities=entities if entities is not None else [f"principal:{actor}"],
                 evidence=[Evidence(event_id=f"e{i}", fields={"userAgent": ua}) for i, ua in enumerate(agents)])


def suppressions(tmp_path, body: str, name="tuning.yml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return load_tuning(str(path)).suppressions()


def suppressed(tmp_path, entry: str, alert: Alert) -> bool:
    sup = suppressions(tmp_path, "suppressions:\n  - " + entry + "\n")
    sup.apply([alert])
    return alert.suppressed_by is not None


@pytest.mark.parametrize(("entry", "hit", "miss"), [
    ("{rule: iam_*, reason: r}", {}, {"rule": "s3_bucket_policy_public"}),
    ("{rule: [s3_*, iam_user_created], reason: r}", {}, {"rule": "iam_role_created"}),
    ("{principal: 'arn:aws:iam::*:user/alice', reason: r}", {}, {"actor": "arn:aws:iam::111111111111:user/bob"}),
    ("{account: 111111111111, reason: r}", {}, {"account": "222222222222"}),
    ("{account: ['012345678901', '111111111111'], reason: r}", {}, {"account": "222222222222"}),
    ("{region: eu-*, reason: r}", {"region": "eu-west-1"}, {"region": "us-east-1"}),
    ("{source_cidr: 203.0.113.0/24, reason: r}", {}, {"ips": ("198.51.100.1",)}),
    ("{source_cidr: '2001:db8::/32', reason: r}", {"ips": ("2001:db8::7",)}, {"ips": ("2001:db9::7",)}),
    ("{source_cidr: [10.0.0.0/8, '2001:db8::/32'], reason: r}", {"ips": ("10.1.2.3", "2001:db8::1")},
     {"ips": ("10.1.2.3", "8.8.8.8")}),  # every source IP must be inside: one outside keeps the alert
    ("{user_agent: 'aws-cli/*', reason: r}", {}, {"agents": ("Mozilla/5.0",)}),
    ("{user_agent: 'aws-cli/*', reason: r}", {}, {"agents": ()}),  # the rule returned no userAgent
    ("{rule: iam_*, account: '111111111111', region: us-*, reason: r}", {}, {"region": "eu-west-1"}),  # all must match
])
def test_each_matcher(tmp_path, entry, hit, miss):
    assert suppressed(tmp_path, entry, make_alert(**hit))
    assert not suppressed(tmp_path, entry, make_alert(**miss))


def test_principal_must_match_every_principal_of_the_alert(tmp_path):
    entry = "{principal: 'arn:aws:sts::*:assumed-role/terraform/*', reason: IaC}"
    tf = "arn:aws:sts::111111111111:assumed-role/terraform/run-1"
    assert suppressed(tmp_path, entry, make_alert(actor=tf))
    mixed = make_alert(actor=tf, entities=[f"principal:{tf}", "principal:arn:aws:iam::111111111111:user/mallory"])
    assert not suppressed(tmp_path, entry, mixed)
    assert not suppressed(tmp_path, entry, make_alert(actor=None, entities=[]))


def test_source_cidr_ignores_service_names_and_needs_an_address(tmp_path):
    entry = "{source_cidr: 0.0.0.0/0, reason: r}"
    assert not suppressed(tmp_path, entry, make_alert(ips=("cloudtrail.amazonaws.com",)))
    assert not suppressed(tmp_path, entry, make_alert(ips=()))
    assert not suppressed(tmp_path, entry, make_alert(ips=("2001:db8::1",)))  # an IPv4 network holds no IPv6 address


def test_first_matching_entry_names_the_alert(tmp_path):
    sup = suppressions(tmp_path, f"""\
        suppressions:
          - {{rule: s3_*, reason: not this one}}
          - {{id: alice-admin, principal: '*:user/alice', reason: alice administers IAM, expires: {FUTURE}}}
          - {{rule: iam_*, reason: the later entry}}
        """)
    alert = make_alert()
    assert sup.apply([alert]) == {"iam_user_created": 1}
    assert alert.suppressed_by == "alice-admin: alice administers IAM"
    unnamed = make_alert(rule="s3_bucket_policy_public")
    sup.apply([unnamed])
    assert unnamed.suppressed_by == "tuning.yml:2: not this one"


def test_an_expired_entry_does_not_suppress_and_is_warned_about(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sup = suppressions(tmp_path, f"""\
        suppressions:
          - {{rule: iam_*, reason: old exception, expires: {PAST}}}
          - {{id: today, rule: s3_*, reason: still valid today, expires: {dt.datetime.now(dt.UTC).date()}}}
        """)
    alert = make_alert()
    assert sup.apply([alert]) == {}
    assert alert.suppressed_by is None
    assert sup.warnings == [f"tuning.yml:2: suppression expired on {PAST}: ignored (remove the entry or move its date)"]
    assert [e.spec.id for e in sup.entries] == ["today"]


@pytest.mark.parametrize(("body", "message"), [
    ("suppressions:\n  - {rule: iam_*}\n", "tuning.yml:2: missing required key 'reason'"),
    ("suppressions:\n  - {rule: iam_*, reason: r, principle: x}\n", "tuning.yml:2: unknown key 'principle'"),
    ("suppressions:\n  - {reason: everything}\n", "tuning.yml:2: suppressions.0: Value error, a suppression needs at least one"),
    ("suppressions:\n  - rule: iam_*\n    reason: r\n    source_cidr: 10.0.0.300/8\n", "tuning.yml:4: suppressions.0.source_cidr"),
    ("suppressions:\n  - {rule: iam_*, reason: r, expires: next week}\n", "tuning.yml:2: suppressions.0.expires"),
    ("supressions: []\n", "tuning.yml:1: unknown key 'supressions'"),
    ("", "tuning.yml:1: the file is empty"),
])
def test_file_errors_name_file_and_line(tmp_path, monkeypatch, body, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tuning.yml").write_text(body)
    with pytest.raises(ConfigError, match="problem") as e:
        load_tuning("tuning.yml")
    assert message in str(e.value)


def test_a_rule_id_no_rule_has_is_an_error_a_glob_is_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yml").write_text("suppressions:\n  - {rule: root_console_logn, reason: typo}\n  - {rule: nothing_*, reason: ok}\n")
    with pytest.raises(ConfigError, match=r"t.yml:2: rule: no rule with id 'root_console_logn'"):
        tune(load_rules(check=False), load_tuning("t.yml"))


# -- through the lake ---------------------------------------------------------------------------


@pytest.fixture
def lake(archive, tmp_path):
    logins = [
        make_console_login("alice", "111111111111", ip="203.0.113.5", event_time="2026-11-01T10:05:00Z", eventID="e1"),
        make_console_login("bob", "111111111111", ip="198.51.100.7", event_time="2026-11-01T10:06:00Z", eventID="e2",
                           user_agent="aws-cli/2.18.2"),
        make_console_login("carol", "111111111111", ip="2001:db8::5", event_time="2026-11-01T10:07:00Z", eventID="e3"),
    ]
    archive.put(ct_key(uniq="a"), ct_bytes(logins))
    path = tmp_path / "lake"
    ingest(LocalSource(archive.root), LocalStore(path), IngestOptions(workers=1))
    return path


@pytest.fixture
def rules_dir(tmp_path):
    d = tmp_path / "rules" / "cloudtrail"
    d.mkdir(parents=True)
    for rid in ("test_login", "audit_login"):
        (d / f"{rid}.yml").write_text(LOGIN_RULE.format(id=rid))
    return d.parent


TUNING = f"""\
suppressions:
  - {{id: alice, rule: test_*, principal: '*:user/alice', reason: alice signs in every day}}
  - {{id: v6-office, source_cidr: '2001:db8::/32', reason: the office network}}
  - {{id: cli, rule: audit_login, user_agent: 'aws-cli/*', reason: scripted sign-in check}}
  - {{id: gone, rule: test_login, reason: expired exception, expires: {PAST}}}
"""


def run(lake, rules_dir, tmp_path, tuning=TUNING):
    (tmp_path / "tuning.yml").write_text(tuning)
    rules = [r for r in load_rules([rules_dir]) if r.id in ("test_login", "audit_login")]
    rules, sup = tune(rules, load_tuning(str(tmp_path / "tuning.yml")))
    return detect(str(lake), LocalStore(lake), rules, DetectOptions(suppressions=sup))


def test_suppressed_alerts_are_kept_marked_and_counted(lake, rules_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = run(lake, rules_dir, tmp_path)
    assert report.suppressed == {"test_login": 2, "audit_login": 2}
    assert [w for w in report.warnings if not w.startswith("enrichment:")] == [f"tuning.yml:5: suppression 'gone' expired on {PAST}: ignored (remove the entry or move its date)"]
    assert sorted((a.rule_id, a.actor.rsplit("/", 1)[1]) for a in report.new) == [("audit_login", "alice"), ("test_login", "bob")]
    d = report.to_dict()
    assert (d["alerts_new"], d["alerts_suppressed"], d["suppressed"]) == (2, 4, {"test_login": 2, "audit_login": 2})
    con = views.connect(str(lake))
    rows = con.execute("SELECT rule_id, split_part(actor, '/', 2), suppressed_by FROM alerts ORDER BY 1, 2").fetchall()
    assert rows == [
        ("audit_login", "alice", None),
        ("audit_login", "bob", "cli: scripted sign-in check"),
        ("audit_login", "carol", "v6-office: the office network"),
        ("test_login", "alice", "alice: alice signs in every day"),
        ("test_login", "bob", None),
        ("test_login", "carol", "v6-office: the office network"),
    ]
    # incidents are built from unsuppressed alerts only
    incident_alerts = con.execute("SELECT list_sort(flatten(list(alert_ids))) FROM incidents").fetchone()[0] or []
    suppressed_ids = {r[0] for r in con.execute("SELECT id FROM alerts WHERE suppressed_by IS NOT NULL").fetchall()}
    assert not suppressed_ids & set(incident_alerts)
    # a rerun changes nothing: suppressed alerts are unchanged too, and not counted as unchanged
    again = run(lake, rules_dir, tmp_path)
    assert (len(again.new), len(again.updated), again.unchanged, sum(again.suppressed.values())) == (0, 0, 2, 4)
    assert con.execute("SELECT count(*) FROM alert_versions").fetchone() == (6,)


def test_forward_leaves_suppressed_alerts_out(lake, rules_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(lake, rules_dir, tmp_path)
    out = tmp_path / "out.jsonl"
    (tmp_path / "sinks.yml").write_text(f"sinks:\n  - {{name: file, type: jsonl, path: {out}}}\n")
    [report] = forward(str(lake), LocalStore(lake), str(tmp_path / "sinks.yml"))
    assert (report.pending, report.delivered) == (2, 2)
    sent = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((a["rule_id"], a["actor"].rsplit("/", 1)[1]) for a in sent) == [("audit_login", "alice"), ("test_login", "bob")]
    assert all(a["suppressed_by"] is None for a in sent)


def test_adding_or_expiring_a_suppression_writes_a_new_version(lake, rules_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(lake, rules_dir, tmp_path, tuning="suppressions: []\n")
    con = views.connect(str(lake))
    assert con.execute("SELECT count(*) FROM alerts WHERE suppressed_by IS NOT NULL").fetchone() == (0,)
    later = run(lake, rules_dir, tmp_path, tuning="suppressions:\n  - {rule: test_login, reason: noisy}\n")
    assert (len(later.new), len(later.updated), later.suppressed) == (0, 0, {"test_login": 3})
    assert con.execute("SELECT count(*) FROM alerts WHERE suppressed_by = 'tuning.yml:2: noisy'").fetchone() == (3,)
    expired = run(lake, rules_dir, tmp_path, tuning=f"suppressions:\n  - {{rule: test_login, reason: noisy, expires: {PAST}}}\n")
    assert (len(expired.new), len(expired.updated)) == (0, 3)  # back in front of analysts (and forwarded again)
    assert con.execute("SELECT count(*) FROM alerts WHERE suppressed_by IS NOT NULL").fetchone() == (0,)


def test_alert_files_written_before_suppressions_still_read(tmp_path):
    lake = tmp_path / "lake"
    old_schema = pa.schema([f for f in ARROW_SCHEMA if f.name != "suppressed_by"])
    row = {"id": "old1", "rule_id": "r", "rule_version": 1, "title": "t", "severity": "high", "first_seen": T,
           "last_seen": T, "event_count": 1, "window_start": T, "window_end": T, "detected_at": T, "first_detected_at": T,
           "dedup_key": "{}", "evidence": "[]", "practice": "p", "runbook": "r"}
    (lake / "alerts" / "event_date=2026-11-01").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), lake / "alerts" / "event_date=2026-11-01" / "part-old.parquet")
    con = views.connect(str(lake))
    assert con.execute("SELECT id, suppressed_by FROM alerts").fetchall() == [("old1", None)]
    from pipeline.forward.run import current_alerts

    assert [a.id for a in current_alerts(str(lake))] == ["old1"]


def test_cli_detect_with_suppressions(lake, rules_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tuning.yml").write_text(TUNING)
    monkeypatch.setenv("SOCLAKE_RULES", str(rules_dir))
    code = main(["detect", "--lake", str(lake), "--suppressions", "tuning.yml", "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    got = json.loads(out)["suppressed"]  # the built-in catalogue runs too
    assert (got["test_login"], got["audit_login"]) == (2, 2)
    assert f"Warning: tuning.yml:5: suppression 'gone' expired on {PAST}" in err
    monkeypatch.setenv("SOCLAKE_SUPPRESSIONS", "tuning.yml")
    assert main(["detect", "--lake", str(lake), "--since", "2026-11-01"]) == 0
    out = capsys.readouterr().out
    assert "alerts kept in the lake, not forwarded (" in out and "test_login 2" in out


def test_the_deploy_example_is_valid_for_the_catalogue():
    from pipeline.resources import resource_dir

    tuning = load_tuning(str(resource_dir("deploy") / "suppressions.example.yml"))
    rules, sup = tune(load_rules(check=False), tuning)
    assert len(sup.entries) + len(sup.warnings) == 3  # the example's date passes one day
    assert {r.id: r.values for r in rules if r.id == "cloudtrail_logging_gap"} == {"cloudtrail_logging_gap": {"max_silence": "24h"}}
