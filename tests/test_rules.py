"""Rule files: strict validation with file:line errors, and every catalogue rule's own tests."""

import json
from pathlib import Path

import pytest

from pipeline.detect.alerts import alert_json_schema
from pipeline.detect.coverage import attack_table, unknown_ids
from pipeline.detect.rules import DETECTIONS_DIR, TECHNIQUES_OPTIONAL, load_rules
from pipeline.detect.testing import run_test
from pipeline.errors import RuleError
from tests.test_detect_engine import ROOT_LOGIN_RULE

CATALOGUE = load_rules()


def write(tmp_path, name, text, source="cloudtrail"):
    d = tmp_path / "rules" / source
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.yml").write_text(text)
    return tmp_path / "rules"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.replace("severity: high", "sevrity: high"), ":3: unknown key 'sevrity'"),
        (lambda t: t.replace("severity: high", "severity: urgent"), ":3: severity: Input should be 'info', 'low', 'medium', 'high' or 'critical'"),
        (lambda t: t.replace("FROM cloudtrail", "FROM cloudtrial"), ":12: query does not run: Catalog Error: Table with name cloudtrial does not exist"),
        (lambda t: t.replace("userIdentity.type", "userIdentity.kind"), ':13: query does not run: Binder Error: Could not find key "kind" in struct'),
        (lambda t: t.replace("tactics: [TA0001]", "tactics: [Initial Access]"), "'Initial Access' is not an ATT&CK tactic id"),
        (lambda t: t.replace("keys: [account_id, sourceIPAddress]", "keys: [bucket]"), "dedup keys ['bucket'] are not columns"),
        (lambda t: t.replace("from {sourceIPAddress}", "from {src}"), "alert_title uses ['src']"),
        (lambda t: t.split("  - name: not root")[0], "tests need at least one case that alerts and one that does not"),
        (lambda t: t.replace("id: test_root_login", "id: other_name"), "id 'other_name' must equal the file name"),
        (lambda t: t.replace("window: 1h", "window: soon"), "is not a duration"),
    ],
)
def test_broken_rules_are_reported_with_file_and_line(tmp_path, mutate, message):
    rules = write(tmp_path, "test_root_login", mutate(ROOT_LOGIN_RULE))
    with pytest.raises(RuleError) as e:
        load_rules([rules])
    assert message in str(e.value)
    assert "test_root_login.yml" in str(e.value)


def test_all_problems_of_a_rule_set_are_reported_at_once(tmp_path):
    write(tmp_path, "test_root_login", ROOT_LOGIN_RULE.replace("severity: high", "sevrity: high"))
    rules = write(tmp_path, "second", ROOT_LOGIN_RULE.replace("test_root_login", "second").replace("FROM cloudtrail", "FROM nowhere"))
    with pytest.raises(RuleError) as e:
        load_rules([rules])
    assert "3 problem(s)" in str(e.value) and "missing required key 'severity'" in str(e.value) and "unknown key 'sevrity'" in str(e.value) and "nowhere" in str(e.value)


def test_duplicate_ids_across_folders_are_an_error(tmp_path):
    rules = write(tmp_path, "root_console_login", ROOT_LOGIN_RULE.replace("test_root_login", "root_console_login"))
    with pytest.raises(RuleError, match="duplicate rule id 'root_console_login'"):
        load_rules([DETECTIONS_DIR, rules])


def test_a_failing_rule_test_explains_itself(tmp_path):
    wrong = ROOT_LOGIN_RULE.replace("events: [{eventName: ConsoleLogin}]",
                                    'events: [{eventName: ConsoleLogin, userIdentity: {type: Root, accountId: "111111111111"}}]')
    rule = load_rules([write(tmp_path, "test_root_login", wrong)])[0]
    res = run_test(rule, 1, rule.tests[1])
    assert not res.passed
    assert res.problems == ["expected 0 alert(s), got 1 (Root sign-in to 111111111111 from 198.51.100.10 (1x))"]


def test_catalogue_covers_the_baseline():
    assert len(CATALOGUE) >= 45
    assert {r.source for r in CATALOGUE} == {"cloudtrail", "guardduty", "correlation"}
    assert all(r.path.startswith("detections/") or "detections" in r.path for r in CATALOGUE)


@pytest.mark.parametrize(
    "rule, n", [(r, n) for r in CATALOGUE for n in range(len(r.tests))], ids=lambda v: v.id if hasattr(v, "id") else str(v)
)
def test_catalogue_rule_tests_pass(rule, n):
    res = run_test(rule, n, rule.tests[n])
    assert res.passed, f"{rule.path}: {rule.tests[n].name}: " + "; ".join(res.problems)


def test_alert_json_schema_is_generated_from_the_model():
    path = Path(__file__).resolve().parent.parent / "schemas" / "alert.schema.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(alert_json_schema())), \
        "schemas/alert.schema.json is stale: run `soclake schema --alert-schema schemas/alert.schema.json`"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.replace("false_positives: [A planned root task.]\n", ""), "missing required key 'false_positives'"),
        (lambda t: t.replace("false_positives: [A planned root task.]", "false_positives: []"), "false_positives: List should have at least 1 item"),
        (lambda t: t.replace("techniques: [T1078.004]", "techniques: []"), ":5: attack.techniques needs at least one ATT&CK technique id"),
        (lambda t: t.replace("tactics: [TA0001]", "tactics: []"), "attack.tactics: List should have at least 1 item"),
        (lambda t: t.replace("techniques: [T1078.004]", "techniques: [T1078.999]"), ":5: unknown ATT&CK id(s) T1078.999"),
        (lambda t: t.replace("tactics: [TA0001]", "tactics: [TA0099]"), ":5: unknown ATT&CK id(s) TA0099"),
    ],
)
def test_rules_need_false_positives_and_known_attack_ids(tmp_path, mutate, message):
    with pytest.raises(RuleError) as e:
        load_rules([write(tmp_path, "test_root_login", mutate(ROOT_LOGIN_RULE))])
    assert message in str(e.value) and "test_root_login.yml" in str(e.value)


def test_every_catalogue_rule_names_false_positives_and_techniques():
    for r in CATALOGUE:
        assert r.false_positives and r.attack.tactics, r.id
        assert r.attack.techniques or r.id in TECHNIQUES_OPTIONAL, r.id


#: Rules whose eventName predicate is a pattern across every service by design (denied List*/Describe*/Get*).
CROSS_SERVICE = {"discovery_access_denied_burst": "denied List/Describe/Get calls in any service",
                 "discovery_denied_value_count": "denied List/Describe/Get calls in any service"}


def _cloudtrail_selects(sql):
    """Each SELECT that reads the cloudtrail table directly, with the columns its WHERE uses."""
    import sqlglot
    from sqlglot import exp

    for sel in sqlglot.parse_one(sql, dialect="duckdb").find_all(exp.Select):
        src = sel.args.get("from_") or sel.args.get("from")
        tables = ([src.this] if src else []) + [j.this for j in sel.args.get("joins") or []]
        if any(isinstance(t, exp.Table) and t.name.lower() == "cloudtrail" for t in tables):
            where = sel.args.get("where")
            yield {c.name.lower() for c in where.find_all(exp.Column)} if where else set()


@pytest.mark.parametrize("rule", [r for r in CATALOGUE if r.source in ("cloudtrail", "correlation")], ids=lambda r: r.id)
def test_event_names_are_always_tied_to_their_event_source(rule):
    """The same eventName exists in several services (DeleteRule: events and config; DeleteDetector:
    guardduty and detective; DisableOrganizationAdminAccount: half of the security services), so a
    query that filters cloudtrail on eventName also filters it on eventSource."""
    selects = list(_cloudtrail_selects(rule.query))
    assert selects or rule.source == "correlation" or "cloudtrail" not in rule.query, rule.id
    for cols in selects:
        if "eventname" in cols and rule.id not in CROSS_SERVICE:
            assert "eventsource" in cols, f"{rule.path}: a SELECT on cloudtrail filters eventName without eventSource"


def test_the_event_source_check_catches_a_bare_event_name():
    assert list(_cloudtrail_selects("SELECT * FROM cloudtrail WHERE eventName = 'DeleteRule'")) == [{"eventname"}]


def test_coverage_layer_is_a_navigator_layer_naming_every_rule(tmp_path):
    from pipeline.cli import main

    out = tmp_path / "layer.json"
    assert main(["rules", "coverage", "--format", "navigator", "--output", str(out)]) == 0
    layer = json.loads(out.read_text())
    assert layer["domain"] == "enterprise-attack" and layer["versions"]["layer"] == "4.5"
    assert {"attack", "navigator"} <= set(layer["versions"]) and layer["name"]
    names = attack_table().techniques
    for t in layer["techniques"]:
        assert set(t) >= {"techniqueID", "score", "comment"} and t["techniqueID"] in names and t["score"] >= 1
    text = " ".join(t["comment"] for t in layer["techniques"]) + " " + " ".join(m["value"] for m in layer.get("metadata", []))
    mentioned = set(text.replace(",", " ").split())
    assert {r.id for r in CATALOGUE if r.enabled} <= mentioned


def test_coverage_text_lists_tactics_techniques_and_rules(capsys):
    from pipeline.cli import main

    assert main(["rules", "coverage"]) == 0
    out = capsys.readouterr().out
    assert "TA0005 Defense Evasion" in out and "T1562.008  Impair Defenses: Disable or Modify Cloud Logs: " in out
    assert "cloudtrail_logging_stopped" in out


def test_attack_table_covers_the_catalogue_with_official_names():
    table = attack_table()
    assert table.technique_name("T1078.004") == "Valid Accounts: Cloud Accounts"
    assert table.tactic_name("TA0040") == "Impact"
    for r in CATALOGUE:
        assert not unknown_ids(r.attack.tactics, r.attack.techniques), r.id


def test_every_practice_of_the_security_journey_has_rules():
    text = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text()
    table = text.split("## The security journey, practice by practice", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| practice")]
    by_id = {r.id: r for r in CATALOGUE}
    practices = {r.practice for r in CATALOGUE}
    journey = {row[0] for row in rows}
    for needed in ("root", "MFA", "Service control", "CloudTrail", "inbound", "outbound", "KMS", "GuardDuty",
                   "Config", "SSH or RDP", "S3 Block Public Access", "Access Analyzer", "Security Hub",
                   "Secrets Manager rotation", "WAF and Shield", "Alternate contacts"):
        assert any(needed in p for p in journey), f"the journey table lost its {needed!r} row"
    for name, practice, ids in rows:
        assert practice in practices, f"{name}: no rule has practice {practice!r}"
        listed = [i.strip(" `") for i in ids.split(",")]
        assert listed and all(i in by_id for i in listed), f"{name}: unknown rule in {listed}"
        assert any(by_id[i].practice == practice for i in listed), f"{name}: none of {listed} has practice {practice!r}"
