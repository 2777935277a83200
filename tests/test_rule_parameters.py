"""Rule parameters: declared defaults, overrides from a rule config that change what alerts, SQL
literals that cannot inject, and errors that name the file and line."""

import textwrap

import duckdb
import pytest

from pipeline.cli import main
from pipeline.detect.parameters import sql_literal
from pipeline.detect.rule_config import load_tuning, tune
from pipeline.detect.rules import load_rule_file, load_rules
from pipeline.detect.testing import run_test
from pipeline.errors import ConfigError

GAP, SECRETS = "cloudtrail_logging_gap", "secrets_many_distinct_read"


@pytest.fixture(scope="module")
def catalogue():
    return {r.id: r for r in load_rules()}


def alerts_of(rule, test_name: str) -> int:
    [(n, test)] = [(n, t) for n, t in enumerate(rule.tests) if t.name.startswith(test_name)]
    return len(run_test(rule, n, test).alerts)


def tuned(tmp_path, catalogue, body: str, ids=(GAP, SECRETS)):
    (tmp_path / "rules.yml").write_text(textwrap.dedent(body))
    rules, _ = tune(list(catalogue.values()), load_tuning(str(tmp_path / "rules.yml")))
    return {r.id: r for r in rules if r.id in ids}


def test_defaults_are_rendered_into_the_sql(catalogue):
    gap, secrets = catalogue[GAP], catalogue[SECRETS]
    assert gap.values == {"max_silence": "12h"}
    assert gap.query.count("INTERVAL 43200 SECOND") == 3 and "${" not in gap.query
    assert secrets.values == {"min_secrets": 10, "exempt_roles": []}
    assert secrets.correlation.condition.gte == 10
    assert "CAST([] AS VARCHAR[])" in secrets.query and "${" not in secrets.query


def test_logging_gap_threshold_override_changes_what_alerts(tmp_path, catalogue):
    assert alerts_of(catalogue[GAP], "a 13-hour silence") == 1
    assert alerts_of(catalogue[GAP], "an 11-hour quiet night") == 0
    longer = tuned(tmp_path, catalogue, "rules:\n  cloudtrail_logging_gap: {parameters: {max_silence: 14h}}\n")[GAP]
    assert alerts_of(longer, "a 13-hour silence") == 0
    shorter = tuned(tmp_path, catalogue, "rules:\n  cloudtrail_logging_gap: {parameters: {max_silence: 10h}}\n")[GAP]
    assert alerts_of(shorter, "an 11-hour quiet night") == 1


def test_secrets_count_and_allow_list_overrides(tmp_path, catalogue):
    rules = tuned(tmp_path, catalogue, """\
        rules:
          secrets_many_distinct_read:
            parameters: {min_secrets: 5}
        """)
    five = rules[SECRETS]
    assert alerts_of(five, "an app re-reading six secrets") == 1
    [(n, test)] = [(n, t) for n, t in enumerate(five.tests) if t.name.startswith("ten different")]
    assert run_test(five, n, test).alerts[0].title.startswith("arn:aws:sts::111111111111:assumed-role/ci-deploy/i-0abc read 5+ ")
    more = catalogue[SECRETS].with_values({"min_secrets": 12})
    assert alerts_of(more, "ten different secrets") == 0
    exempt = catalogue[SECRETS].with_values({"exempt_roles": ["other", "ci-deploy"]})
    assert alerts_of(exempt, "ten different secrets") == 0
    assert alerts_of(catalogue[SECRETS].with_values({"exempt_roles": ["other"]}), "ten different secrets") == 1


def test_enabled_false_disables_and_true_enables(tmp_path, catalogue):
    rules = tuned(tmp_path, catalogue, "rules:\n  root_api_call: {enabled: false}\n", ids=("root_api_call",))
    assert rules == {}


@pytest.mark.parametrize(("body", "message"), [
    ("rules:\n  no_such_rule: {enabled: false}\n", "rules.yml:2: rules: unknown rule id 'no_such_rule'"),
    ("rules:\n  cloudtrail_logging_gap:\n    parameters:\n      threshold: 24h\n",
     "rules.yml:4: rules.cloudtrail_logging_gap.parameters: rule 'cloudtrail_logging_gap' has no parameter 'threshold' "
     "(it has: max_silence)"),
    ("rules:\n  cloudtrail_logging_gap:\n    parameters: {max_silence: 1 day}\n",
     "rules.yml:3: rules.cloudtrail_logging_gap.parameters: max_silence: '1 day' is not a duration"),
    ("rules:\n  secrets_many_distinct_read:\n    parameters: {min_secrets: ten}\n",
     "min_secrets: 'ten' is not an integer"),
    ("rules:\n  secrets_many_distinct_read:\n    parameters: {exempt_roles: ci-deploy}\n",
     "exempt_roles: 'ci-deploy' is not a list of strings or of numbers"),
    ("rules:\n  root_api_call: {enable: false}\n", "rules.yml:2: unknown key 'enable'"),
])
def test_config_errors_name_file_and_key(tmp_path, monkeypatch, catalogue, body, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules.yml").write_text(body)
    with pytest.raises(ConfigError) as e:
        tune(list(catalogue.values()), load_tuning("rules.yml"))
    assert message in str(e.value)


def test_a_rule_configured_in_two_files_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yml").write_text("rules:\n  root_api_call: {enabled: false}\n")
    (tmp_path / "b.yml").write_text("suppressions: []\nrules:\n  root_api_call: {enabled: true}\n")
    with pytest.raises(ConfigError, match=r"b.yml:3: rule 'root_api_call' is also configured in a.yml"):
        load_tuning("a.yml", "b.yml")
    assert len(load_tuning("a.yml", "a.yml").settings) == 1  # the same file twice is read once


@pytest.mark.parametrize("value", ["it's", "x'; DROP TABLE t; --", "${nested}", "back\\slash", "", "über"])
def test_string_and_list_literals_read_back_exactly(value):
    con = duckdb.connect()
    assert con.execute(f"SELECT {sql_literal('string', value)}").fetchone()[0] == value
    assert con.execute(f"SELECT {sql_literal('list', [value, 'b'])}").fetchone()[0] == [value, "b"]
    assert con.execute(f"SELECT {sql_literal('list', [1, 2.5])}").fetchone()[0] == [1, 2.5]
    assert con.execute(f"SELECT 'a' IN {sql_literal('list', [], ['x'])}").fetchone()[0] is False


RULE = textwrap.dedent("""\
    id: param_rule
    title: t
    severity: low
    description: d
    attack: {tactics: [TA0001], techniques: [T1078]}
    practice: p
    false_positives: [f]
    runbook: r
    alert_title: "{actor} did {eventName} (not one of {allowed})"
    parameters:
    PARAMS
    query: |
      SELECT eventID, event_time, actor, eventName FROM cloudtrail WHERE QUERY
    tests:
      - {name: hit, alerts: 1, events: [{eventName: DeleteTrail}]}
      - {name: miss, alerts: 0, events: [{eventName: GetUser}]}
""")


def rule_file(tmp_path, params: str, where: str):
    d = tmp_path / "cloudtrail"
    d.mkdir(exist_ok=True)
    path = d / "param_rule.yml"
    path.write_text(RULE.replace("PARAMS", textwrap.indent(params, "  ")).replace("QUERY", where))
    return load_rule_file(path)


def test_a_list_parameter_in_sql_and_in_the_title(tmp_path):
    rule, errors = rule_file(tmp_path, "allowed: {default: [GetUser, \"O'Neil\"], description: calls that are fine}",
                             "eventName NOT IN ${allowed}")
    assert errors == []
    [hit, miss] = [run_test(rule, n, t) for n, t in enumerate(rule.tests)]
    assert hit.passed and miss.passed, hit.problems + miss.problems
    assert hit.alerts[0].title.endswith("did DeleteTrail (not one of ['GetUser', \"O'Neil\"])")


@pytest.mark.parametrize(("params", "where", "message"), [
    ("allowed: {default: [GetUser], description: d}", "eventName NOT IN ${alowed}",
     "param_rule.yml:12: ${alowed} is not a declared parameter (allowed)"),
    ("allowed: {default: [GetUser], description: d}", "eventName <> 'x'",
     "param_rule.yml:11: parameter 'allowed' is declared but the query never uses it as ${allowed}"),
    ("allowed: {default: [GetUser]}", "eventName NOT IN ${allowed}", "param_rule.yml:11: missing required key 'description'"),
    ("allowed: {default: 3 days, type: duration, description: d}", "event_time > ${allowed}",
     "param_rule.yml:11: parameters.allowed: Value error, '3 days' is not a duration"),
    ("allowed: {default: [GetUser], description: d, kind: list}", "eventName NOT IN ${allowed}",
     "param_rule.yml:11: unknown key 'kind'"),
    ("Allowed: {default: 1, description: d}", "eventName <> ${Allowed}", "'Allowed': parameter names are lower_snake_case"),
])
def test_rule_file_errors(tmp_path, monkeypatch, params, where, message):
    monkeypatch.chdir(tmp_path)
    rule, errors = rule_file(tmp_path, params, where)
    assert rule is None
    assert any(message in e for e in errors), errors


def test_rules_test_runs_with_defaults_whatever_the_config(tmp_path, monkeypatch, capsys):
    (tmp_path / "rules.yml").write_text("rules:\n  secrets_many_distinct_read: {parameters: {min_secrets: 50}}\n")
    monkeypatch.setenv("SOCLAKE_RULE_CONFIG", str(tmp_path / "rules.yml"))
    assert main(["rules", "test", SECRETS]) == 0
    assert "3 passed, 0 failed" in capsys.readouterr().out


def test_run_checks_the_rule_config_before_ingesting(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules.yml").write_text("rules:\n  nope: {enabled: false}\n")
    (tmp_path / "src").mkdir()
    code = main(["run", "--source", "src", "--lake", "lake", "--rule-config", "rules.yml"])
    assert code == 1
    assert "rules.yml:2: rules: unknown rule id 'nope'" in capsys.readouterr().err
