"""Rules from the command line: .yaml and .yml, broken rules skipped (or refused with --strict),
failing tests explained, SQL errors at the rule file's line, JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL = (ROOT / "detections" / "cloudtrail" / "root_console_login.yml").read_text()


def _rule(folder: Path, rid: str, suffix: str = ".yml", edit=lambda s: s) -> Path:
    (folder / "cloudtrail").mkdir(parents=True, exist_ok=True)
    path = folder / "cloudtrail" / f"{rid}{suffix}"
    path.write_text(edit(ORIGINAL.replace("id: root_console_login", f"id: {rid}")))
    return path


@pytest.fixture
def rules(tmp_path) -> Path:
    folder = tmp_path / "rules"
    _rule(folder, "root_copy", ".yaml")
    _rule(folder, "root_typo", edit=lambda s: s.replace("        eventName: ConsoleLogin\n        eventType: AwsConsoleSignIn\n"
                                                           "        sourceIPAddress: 203.0.113.9",
                                                           "        eventNam: ConsoleLogin\n        eventType: AwsConsoleSignIn\n"
                                                           "        sourceIPAddress: 203.0.113.9", 1))
    _rule(folder, "root_sql", edit=lambda s: s.replace("AND userIdentity.type = 'Root'", "AND userIdentity.typ = 'Root'"))
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_yaml_and_yml_both_load(rules, capsys):
    code, out, _ = run(capsys, "rules", "list", "--rules", rules, "--format", "jsonl")
    ids = {line.split('"id": "')[1].split('"')[0] for line in out.splitlines()}
    assert code == 0 and {"root_copy", "root_typo"} <= ids and "root_sql" not in ids  # broken: skipped


def test_a_broken_rule_is_reported_and_skipped_and_strict_refuses_all(rules, capsys):
    code, out, err = run(capsys, "rules", "test", "--rules", rules, "root_copy", "root_sql")
    assert code == 1
    assert "PASS  root_copy: root signs in successfully" in out  # the others still run
    sql = rules / "cloudtrail" / "root_sql.yml"
    line = ORIGINAL.splitlines().index("    AND userIdentity.type = 'Root'") + 1
    assert f"FAIL  {sql}: does not load" in out
    assert f"{sql}:{line}: query does not run" in out and "query line 5: AND userIdentity.typ = 'Root'" in out
    assert out.strip().splitlines()[-1] == "3 passed, 1 failed"
    code, out, err = run(capsys, "rules", "test", "--strict", "--rules", rules, "root_copy")
    assert code == 1 and out == "" and f"{sql}:{line}" in err
    code, out, err = run(capsys, "rules", "validate", "--rules", rules)
    assert code == 1 and "1 problem(s)" in err


def test_detect_runs_the_good_rules_and_exits_2_for_a_skipped_one(rules, tmp_path, capsys):
    (tmp_path / "lake").mkdir()
    code, out, err = run(capsys, "detect", "--lake", tmp_path / "lake", "--rules", rules, "--quiet")
    assert code == 2 and "Warning: rule skipped:" in err and "root_sql.yml" in err
    assert "RULE FAILED" in out and "rules" in out
    code, _, err = run(capsys, "detect", "--lake", tmp_path / "lake", "--rules", rules, "--strict")
    assert code == 1 and "problem(s) in the rules" in err


def test_a_failing_test_is_explained(rules, capsys):
    code, out, _ = run(capsys, "rules", "test", "--rules", rules, "root_typo")
    assert code == 1
    assert "cloudtrail event 0 as normalised: {" in out and '"eventName":"GetUser"' in out  # the base event's name
    assert "unknown key 'eventNam'" in out and "closest columns: eventName" in out
    assert "the rule's SQL returned 0 row(s)" in out


def test_junit_xml(rules, tmp_path, capsys):
    report = tmp_path / "junit.xml"
    code, _, _ = run(capsys, "rules", "test", "--rules", rules, "--junit", report, "root_copy", "root_typo")
    assert code == 1
    suite = ET.parse(report).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert suite.get("tests") == str(len(cases)) == "7" and suite.get("failures") == "2"
    failed = {(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None}
    assert ("root_typo", "root signs in successfully") in failed
    assert any(name == "the rule file loads" for _, name in failed)
