"""Sigma in and out: the corpus under tests/sigma/ converts, validates, passes its generated tests
through the real engine, and survives export -> import with the same matches."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from pipeline import views
from pipeline.detect.rules import RuleTest, load_rules, rule_dirs
from pipeline.detect.testing import run_rule_tests, tables_for
from pipeline.sigma.backend import field_sql
from pipeline.sigma.exporter import dump, export_sigma
from pipeline.sigma.importer import import_sigma

CORPUS = Path(__file__).parent / "sigma" / "rules"
UNSUPPORTED = Path(__file__).parent / "sigma" / "unsupported"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("sigma")
    report = import_sigma([str(CORPUS)], str(out))
    return out, report


def test_the_corpus_covers_every_modifier_and_two_correlations():
    text = "\n".join(p.read_text() for p in CORPUS.glob("*.yml"))
    for mod in ("contains", "startswith", "endswith", "re", "cidr", "all", "exists"):
        assert re.search(rf"\|{mod}\b", text), mod
    docs = [yaml.safe_load(p.read_text()) for p in CORPUS.glob("*.yml")]
    singles = [d for d in docs if "detection" in d]
    kinds = {d["correlation"]["type"] for d in docs if "correlation" in d}
    assert len(singles) >= 20
    assert {"event_count", "value_count", "temporal", "temporal_ordered"} <= kinds
    assert "|expand" in (UNSUPPORTED / "aws_expand_placeholder.yml").read_text()


def test_every_corpus_rule_converts_and_passes_its_generated_tests(imported):
    out, report = imported
    assert report.skipped == []
    assert all(c.test_problems == [] for c in report.converted), [c.test_problems for c in report.converted]
    # the member rules of correlations (generate: false) convert as stages, not as rules
    assert len(list((out / "cloudtrail").glob("*.yml"))) >= 20
    assert len(list((out / "correlation").glob("*.yml"))) == 4


def test_converted_rules_validate_and_alert_through_the_engine(imported):
    out, _ = imported
    rules = load_rules(rule_dirs([str(out)]))  # with the built-in catalogue: ids unique, SQL checked
    mine = [r for r in rules if r.id.startswith("sigma_")]
    assert len(mine) == 28
    results = run_rule_tests(mine)
    assert all(r.passed for r in results), [(r.rule.id, r.problems) for r in results if not r.passed]
    assert sum(r.test.alerts > 0 and len(r.alerts) > 0 for r in results) == len(mine)


def test_metadata_is_mapped(imported):
    out, _ = imported
    doc = yaml.safe_load((out / "cloudtrail" / "sigma_aws_root_account_console_login.yml").read_text())
    assert doc["severity"] == "high"
    assert doc["attack"] == {"tactics": ["TA0004"], "techniques": ["T1078.004"]}
    assert doc["false_positives"] == ["Break-glass use of the root user"]
    assert any(t.startswith("sigma-id:") for t in doc["tags"])
    assert "responseElements->>'$.ConsoleLogin' = 'Success'" in doc["query"]
    head = (out / "cloudtrail" / "sigma_aws_root_account_console_login.yml").read_text().split("\nid:")[0]
    assert "practice and runbook are defaults" in head
    corr = yaml.safe_load((out / "correlation" / "sigma_aws_denied_api_spread.yml").read_text())["correlation"]
    assert corr["type"] == "value_count" and corr["condition"] == {"gte": 4} and corr["field"] == "eventName"
    assert corr["stages"][0]["select"]["userIdentity_arn"] == "userIdentity.arn"


def test_unconvertible_rules_are_reported_with_the_reason_and_skipped(tmp_path):
    report = import_sigma([str(UNSUPPORTED), str(CORPUS / "aws_root_console_login.yml")], str(tmp_path))
    assert [c.rule_id for c in report.converted] == ["sigma_aws_root_account_console_login"]
    reasons = {s.sigma: s.reason for s in report.skipped}
    assert "|expand" in reasons["AWS Call From an Unapproved Admin Network"]
    assert "AWS Call From an Unapproved Admin Network" in reasons["AWS Call From an Unapproved Admin Network"]
    assert "logsource" in reasons["Whoami Execution"]
    assert "eventname_typo" in reasons["AWS Rule With a Field the Lake Does Not Have"]
    assert "lt" in reasons["AWS Fewer Than Three Sign-in Failures"]


@pytest.mark.parametrize("field, sql", [
    ("eventName", "eventName"),
    ("userIdentity.sessionContext.sessionIssuer.arn", "userIdentity.sessionContext.sessionIssuer.arn"),
    ("requestParameters.bucketName", "requestParameters->>'$.bucketName'"),
    ("responseElements.credentials.accessKeyId", "responseElements->>'$.credentials.accessKeyId'"),
    ("additionalEventData.MFAUsed", "additionalEventData->>'$.MFAUsed'"),
])
def test_field_mapping(field, sql):
    assert field_sql(field) == sql


def _sigma(detection: str) -> str:
    from sigma.collection import SigmaCollection

    from pipeline.sigma.backend import SoclakeBackend

    doc = f"title: t\nlogsource: {{product: aws, service: cloudtrail}}\ndetection:\n{detection}"
    return SoclakeBackend().convert(SigmaCollection.from_yaml(doc))[0]


@pytest.mark.parametrize("detection, sql", [
    ("  s: {userAgent|contains: kali}\n  condition: s", "userAgent ILIKE '%kali%' ESCAPE '\\'"),
    ("  s: {eventName|startswith: List}\n  condition: s", "eventName ILIKE 'List%' ESCAPE '\\'"),
    ("  s: {requestParameters.policyArn|endswith: /Admin}\n  condition: s",
     "requestParameters->>'$.policyArn' ILIKE '%/Admin' ESCAPE '\\'"),
    ("  s: {userAgent|contains|all: [a, b]}\n  condition: s",
     "userAgent ILIKE '%a%' ESCAPE '\\' AND userAgent ILIKE '%b%' ESCAPE '\\'"),
    ("  s: {userAgent|re|i: '^x'}\n  condition: s", "regexp_matches(userAgent, '^x', 'i')"),
    ("  s: {errorCode|exists: false}\n  condition: s", "errorCode IS NULL"),
    ("  s: {requestParameters.fromPort: 22}\n  condition: s", "requestParameters->>'$.fromPort' = '22'"),
    ("  s: {readOnly: true}\n  condition: s", "readOnly = true"),
    ("  s: {eventName: [A, B]}\n  f: {errorCode: X}\n  condition: s and not f",
     "(eventName IN ('A', 'B')) AND NOT coalesce((errorCode = 'X'), false)"),
    ("  s: {sourceIPAddress|cidr: 10.0.0.0/8}\n  condition: s", "BETWEEN 167772160 AND 184549375"),
])
def test_backend_modifiers(detection, sql):
    assert sql in _sigma(detection)


def _matches(con, query: str) -> set[str]:
    return {r[0] for r in con.execute(f"SELECT eventID FROM ({query})").fetchall()}


def test_export_then_import_matches_the_same_events(imported, tmp_path):
    """Every exportable rule (the imported corpus and the built-in catalogue) is exported, imported
    again and run with its original over one pool of every rule's test events."""
    out, _ = imported
    rules = [r for r in load_rules(rule_dirs([str(out)])) if r.correlation is None]
    done, reasons = export_sigma(rules, [r.id for r in rules])
    assert {r.id for r in rules if r.id.startswith("sigma_")} <= set(done)
    assert len(done) >= 60, reasons
    assert reasons["cloudtrail_logging_gap"]  # a CTE: said, not silently skipped
    sig = tmp_path / "sigma"
    sig.mkdir()
    for rid, doc in done.items():
        doc = {**doc, "name": f"rt_{rid}"}
        (sig / f"{rid}.yml").write_text(dump(doc))
    back = import_sigma([str(sig)], str(tmp_path / "back"), run_tests=False)
    assert back.skipped == [], back.skipped
    again = {r.id: r for r in load_rules([tmp_path / "back"], check=False) if r.id.startswith("sigma_rt_")}
    events = [e for r in rules for t in r.tests for e in t.events]
    pool = RuleTest(name="pool", alerts=0, events=events)
    con = duckdb.connect()
    views.register_arrow(con, tables_for(rules[0], 0, pool))
    compared = 0
    for r in rules:
        if r.id not in done:
            continue
        mine = _matches(con, r.query)
        theirs = _matches(con, again[f"sigma_rt_{r.id}"].query)
        assert mine == theirs, r.id
        compared += bool(mine)
    assert compared >= 50


def test_cli_import_and_export(tmp_path):
    env_py = [sys.executable, "-m", "pipeline", "rules"]
    done = subprocess.run([*env_py, "import-sigma", str(UNSUPPORTED), str(CORPUS / "aws_kms_key_deletion_scheduled.yml"),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 converted, 4 skipped" in done.stdout
    assert "|expand" in done.stdout
    done = subprocess.run([*env_py, "export-sigma", "root_console_login", "cloudtrail_logging_gap", "--output",
                           str(tmp_path / "sigma")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "cannot express cloudtrail_logging_gap" in done.stderr
    doc = yaml.safe_load((tmp_path / "sigma" / "root_console_login.yml").read_text())
    assert doc["logsource"] == {"product": "aws", "service": "cloudtrail"} and doc["level"] == "high"
