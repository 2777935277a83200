"""The detection engine on a real lake: windows, dedup, reruns, late data, failing rules."""

import datetime as dt
import textwrap

import pytest

from pipeline import views
from pipeline.detect.engine import DetectOptions, detect
from pipeline.detect.rules import load_rules
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore
from pipeline.sources import LocalSource
from pipeline.synth.records import make_console_login, root
from tests.archive import ct_bytes, ct_key

ROOT_LOGIN_RULE = textwrap.dedent("""\
    id: test_root_login
    title: Root signed in
    severity: high
    description: Root console sign-in.
    attack: {tactics: [TA0001], techniques: [T1078.004]}
    practice: Protect the root user
    false_positives: [A planned root task.]
    runbook: Check it.
    dedup: {keys: [account_id, sourceIPAddress], window: 1h}
    alert_title: "Root sign-in to {account_id} from {sourceIPAddress} ({event_count}x)"
    query: |
      SELECT eventID, event_time, account_id, region, actor, sourceIPAddress FROM cloudtrail
      WHERE eventName = 'ConsoleLogin' AND userIdentity.type = 'Root'
    tests:
      - name: root
        alerts: 1
        events: [{eventName: ConsoleLogin, userIdentity: {type: Root, accountId: "111111111111"}}]
      - name: not root
        alerts: 0
        events: [{eventName: ConsoleLogin}]
""")


@pytest.fixture
def rules_dir(tmp_path):
    d = tmp_path / "rules" / "cloudtrail"
    d.mkdir(parents=True)
    (d / "test_root_login.yml").write_text(ROOT_LOGIN_RULE)
    return d.parent


def logins(times, ip="203.0.113.9", account="111111111111", tag="l"):
    return [make_console_login(identity=root(account), ip=ip, event_time=t, account=account, eventID=f"{tag}{i}")
            for i, t in enumerate(times)]


def lake_with(archive, tmp_path, objects):
    for key, records in objects.items():
        archive.put(key, ct_bytes(records))
    lake = tmp_path / "lake"
    ingest(LocalSource(archive.root), LocalStore(lake), IngestOptions(workers=1))
    return lake


def run_detect(lake, rules_dir, **opts):
    rules = [r for r in load_rules([rules_dir]) if r.id == "test_root_login"]
    return detect(str(lake), LocalStore(lake), rules, DetectOptions(**opts))


def current_alerts(lake):
    con = views.connect(str(lake))
    return con.execute("SELECT id, event_count, title, first_seen, last_seen FROM alerts ORDER BY first_seen").fetchall()


def test_matches_in_one_window_and_key_are_one_alert(archive, tmp_path, rules_dir):
    lake = lake_with(archive, tmp_path, {
        ct_key(uniq="a"): logins(["2026-11-01T10:05:00Z", "2026-11-01T10:20:00Z", "2026-11-01T10:40:00Z"])
        + logins(["2026-11-01T10:10:00Z"], ip="198.51.100.1", tag="x"),
    })
    report = run_detect(lake, rules_dir)
    assert (len(report.new), report.matches) == (2, 4)
    alerts = current_alerts(lake)
    assert sorted(a[1] for a in alerts) == [1, 3]
    assert "Root sign-in to 111111111111 from 203.0.113.9 (3x)" in [a[2] for a in alerts]


def test_reruns_and_overlapping_windows_never_duplicate(archive, tmp_path, rules_dir):
    lake = lake_with(archive, tmp_path, {ct_key(uniq="a"): logins(["2026-11-01T10:05:00Z", "2026-11-01T13:05:00Z"])})
    first = run_detect(lake, rules_dir)
    assert len(first.new) == 2
    again = run_detect(lake, rules_dir)
    assert (len(again.new), len(again.updated), again.unchanged) == (0, 0, 2)
    wide = run_detect(lake, rules_dir, since=dt.datetime(2026, 10, 30, tzinfo=dt.UTC))
    assert (len(wide.new), len(wide.updated), wide.unchanged) == (0, 0, 2)
    assert len(current_alerts(lake)) == 2
    con = views.connect(str(lake))
    assert con.execute("SELECT count(*) FROM alert_versions").fetchone() == (2,)


def test_late_event_updates_its_alert_and_a_new_window_is_a_new_alert(archive, tmp_path, rules_dir):
    lake = lake_with(archive, tmp_path, {ct_key(uniq="a"): logins(["2026-11-01T10:05:00Z"])})
    run_detect(lake, rules_dir)
    [(alert_id, count, *_)] = current_alerts(lake)
    # a record from 10:30 delivered hours later, and one from the next hour
    archive.put(ct_key(uniq="late", hhmm="1500"), ct_bytes(logins(["2026-11-01T10:30:00Z", "2026-11-01T11:30:00Z"], tag="late")))
    ingest(LocalSource(archive.root), LocalStore(lake), IngestOptions(workers=1))
    report = run_detect(lake, rules_dir, lookback=dt.timedelta(hours=3))
    assert (len(report.new), len(report.updated)) == (1, 1)
    alerts = {a[0]: a for a in current_alerts(lake)}
    assert alerts[alert_id][1] == 2  # same id, grown
    assert len(alerts) == 2
    con = views.connect(str(lake))
    assert con.execute("SELECT count(*) FROM alert_versions WHERE id = ?", [alert_id]).fetchone() == (2,)


def test_incremental_run_evaluates_from_the_last_end_minus_lookback(archive, tmp_path, rules_dir):
    lake = lake_with(archive, tmp_path, {ct_key(uniq="a"): logins(["2026-11-01T10:05:00Z", "2026-11-01T20:00:00Z"])})
    first = run_detect(lake, rules_dir)
    assert first.since.isoformat().startswith("2026-11-01T10:05")
    second = run_detect(lake, rules_dir, lookback=dt.timedelta(hours=2))
    assert second.since == first.until - dt.timedelta(hours=2)


def test_since_until_limit_the_window(archive, tmp_path, rules_dir):
    lake = lake_with(archive, tmp_path, {ct_key(uniq="a", day="2026-11-02", hhmm="1100"): logins(["2026-11-01T10:05:00Z", "2026-11-02T10:05:00Z"])})
    report = run_detect(lake, rules_dir, since=dt.datetime(2026, 11, 2, tzinfo=dt.UTC), until=dt.datetime(2026, 11, 3, tzinfo=dt.UTC))
    assert len(report.new) == 1 and report.new[0].first_seen.date() == dt.date(2026, 11, 2)


def test_shared_scan_and_per_rule_scan_agree(archive, tmp_path, rules_dir):
    lake = lake_with(archive, tmp_path, {ct_key(uniq="a"): logins(["2026-11-01T10:05:00Z", "2026-11-01T12:05:00Z"])})
    rules = load_rules([rules_dir])
    shared = detect(str(lake), LocalStore(lake), rules, DetectOptions(scan="shared", incremental=False))
    per_rule = detect(str(lake), LocalStore(lake), rules, DetectOptions(scan="per-rule", incremental=False))
    assert len(shared.new) == 2
    assert (per_rule.new, per_rule.updated, per_rule.unchanged) == ([], [], 2)  # found the very same alert ids


def test_a_rule_failing_at_run_time_is_reported_and_the_others_run(archive, tmp_path, rules_dir):
    (rules_dir / "cloudtrail" / "test_breaks.yml").write_text(
        ROOT_LOGIN_RULE.replace("test_root_login", "test_breaks").replace(
            "SELECT eventID,", "SELECT CAST(sourceIPAddress AS INTEGER) AS boom, eventID,"))
    lake = lake_with(archive, tmp_path, {ct_key(uniq="a"): logins(["2026-11-01T10:05:00Z"])})
    report = detect(str(lake), LocalStore(lake), load_rules([rules_dir]), DetectOptions())
    assert [r for r, _ in report.errors] == ["test_breaks"] and "Conversion Error" in report.errors[0][1]
    assert [a.rule_id for a in report.new] == ["test_root_login"]


def test_alerts_carry_the_contract_fields(archive, tmp_path, rules_dir):
    lake = lake_with(archive, tmp_path, {ct_key(uniq="a"): logins(["2026-11-01T10:05:00Z"])})
    [alert] = run_detect(lake, rules_dir).new
    assert alert.rule_id == "test_root_login" and alert.rule_version == 1 and alert.severity == "high"
    assert alert.account_id == "111111111111" and alert.actor == "arn:aws:iam::111111111111:root"
    assert alert.source_ips == ["203.0.113.9"] and alert.evidence[0].event_id == "l0"
    assert alert.attack.techniques == ["T1078.004"] and alert.practice == "Protect the root user"
    assert alert.window_start == dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC)
    assert len(alert.id) == 32
