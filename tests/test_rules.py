"""Rule files: strict validation with file:line errors, and every catalogue rule's own tests."""

import json
from pathlib import Path

import pytest

from pipeline.detect.alerts import alert_json_schema
from pipeline.detect.rules import DETECTIONS_DIR, load_rules
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
        (lambda t: t.replace("FROM cloudtrail", "FROM cloudtrial"), ":10: query does not run: Catalog Error: Table with name cloudtrial does not exist"),
        (lambda t: t.replace("userIdentity.type", "userIdentity.kind"), ':10: query does not run: Binder Error: Could not find key "kind" in struct'),
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
