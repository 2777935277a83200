"""Run rules' own tests: raw events in (as AWS writes them), through the real normaliser and the
real SQL in DuckDB, expected alerts out."""

from __future__ import annotations

import datetime as dt
import gzip
from dataclasses import dataclass, field

import duckdb
import orjson

from pipeline import layout, views
from pipeline.detect.engine import run_rules
from pipeline.detect.rules import Rule, RuleTest
from pipeline.normalize import normalize

#: Test events are shallow-merged onto this record: keys an event gives replace these whole.
BASE_EVENT = {
    "eventVersion": "1.09",
    "userIdentity": {
        "type": "IAMUser", "principalId": "AIDAEXAMPLEALICE0001", "arn": "arn:aws:iam::111111111111:user/alice",
        "accountId": "111111111111", "accessKeyId": "AKIAEXAMPLEALICE0001", "userName": "alice",
    },
    "eventTime": "2026-11-01T10:00:00Z",
    "eventSource": "iam.amazonaws.com",
    "eventName": "GetUser",
    "awsRegion": "us-east-1",
    "sourceIPAddress": "198.51.100.10",
    "userAgent": "aws-cli/2.18.2 md/awscrt#0.22.0 ua/2.0 os/linux",
    "requestParameters": None,
    "responseElements": None,
    "readOnly": False,
    "eventType": "AwsApiCall",
    "managementEvent": True,
    "recipientAccountId": "111111111111",
    "eventCategory": "Management",
}
_KEY = layout.classify(
    "AWSLogs/111111111111/CloudTrail/us-east-1/2099/12/31/111111111111_CloudTrail_us-east-1_20991231T2359Z_test.json.gz"
)
_GD_KEY = layout.classify("AWSLogs/111111111111/GuardDuty/us-east-1/2099/12/31/rule-test.jsonl.gz")


@dataclass
class TestResult:
    rule: Rule
    test: RuleTest
    alerts: list = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # what helps fix a failure: events, unknown keys, rows

    @property
    def passed(self) -> bool:
        return not self.problems


def _events(rule: Rule, n: int, test: RuleTest) -> list[dict]:
    out = []
    for i, e in enumerate(test.events):
        rec = {**BASE_EVENT, "eventID": f"{rule.id}-{n}-e{i}", "requestID": f"req-{n}-{i}", **e}
        out.append({k: v for k, v in rec.items() if v is not None or k in ("requestParameters", "responseElements")})
    return out


def _findings(rule: Rule, n: int, test: RuleTest) -> list[dict]:
    from pipeline.synth.records import make_guardduty_finding

    out = []
    for i, f in enumerate(test.findings):
        base = make_guardduty_finding(id=f"{rule.id}-{n}-f{i}", type=f.get("type", "Recon:EC2/PortProbeUnprotectedPort"))
        out.append({**base, **f})
    return out


def tables_for(rule: Rule, n: int, test: RuleTest) -> dict:
    now = dt.datetime.now(dt.UTC)
    tables = {}
    events = _events(rule, n, test)
    if events:
        data = gzip.compress(orjson.dumps({"Records": events}))
        tables["cloudtrail"] = normalize(data, _KEY, "rule-test://cloudtrail", now)
    findings = _findings(rule, n, test)
    if findings:
        data = gzip.compress(b"\n".join(orjson.dumps(f) for f in findings))
        tables["guardduty"] = normalize(data, _GD_KEY, "rule-test://guardduty", now)
    return tables


def run_test(rule: Rule, n: int, test: RuleTest) -> TestResult:
    res = TestResult(rule, test)
    try:
        tables = tables_for(rule, n, test)
    except Exception as e:  # the test's own events are broken: say so
        res.problems.append(f"test events do not normalise: {e}")
        return res
    con = duckdb.connect()
    views.register_arrow(con, tables, prefix="lake_")
    times = [t.column("event_time") for t in tables.values() if t.num_rows]
    if times:
        lo = min(min(c.to_pylist()) for c in times)
        hi = max(max(c.to_pylist()) for c in times)
    else:
        lo = hi = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    try:  # planned exactly as `soclake detect` plans it: shared candidate scan, windows, ownership
        alerts = run_rules(con, [rule], dt.datetime.now(dt.UTC), lo - dt.timedelta(days=1), hi + dt.timedelta(days=1))
    except duckdb.Error as e:
        from pipeline.detect.sql import sql_error

        res.problems.append(f"query failed: {str(e).splitlines()[0]}")
        res.details.append(sql_error(rule, e))
        return res
    res.alerts = sorted(alerts, key=lambda a: a.first_seen)
    if len(res.alerts) != test.alerts:
        titles = "; ".join(a.title for a in res.alerts[:5]) or "none"
        res.problems.append(f"expected {test.alerts} alert(s), got {len(res.alerts)} ({titles})")
    elif res.alerts and test.expect:
        got = res.alerts[0].model_dump(mode="json")
        for k, want in test.expect.items():
            have = got.get(k, "<no such alert field>")
            ok = (str(want) in [str(x) for x in have]) if isinstance(have, list) and not isinstance(want, list) else str(have) == str(want)
            if not ok:
                res.problems.append(f"alert field {k}: expected {want!r}, got {have!r}")
    if res.problems:
        res.details = explain(rule, n, test, tables)
    return res


def explain(rule: Rule, n: int, test: RuleTest, tables: dict) -> list[str]:
    """For a failing test: each event as the rule sees it (normalised), keys the schema does not know
    (with the closest columns), and the rows the rule's SQL returned over the test's events."""
    import difflib

    out = []
    for table, raw in (("cloudtrail", test.events), ("guardduty", test.findings)):
        data = tables.get(table)
        if data is None or not raw:
            continue
        columns = data.column_names
        for i, (given, row) in enumerate(zip(raw, data.to_pylist())):
            shown = {k: v for k, v in _pruned(row).items()
                     if k not in ("source_object", "source_index", "ingested_at", "event_date")}
            out.append(f"{table} event {i} as normalised: {_short(shown)}")
            for key in given:
                if key not in columns:
                    near = difflib.get_close_matches(key, columns, n=3, cutoff=0.6)
                    hint = f"; closest columns: {', '.join(near)}" if near else ""
                    out.append(f"{table} event {i}: unknown key {key!r} (kept only in `unmapped`{hint})")
    if rule.query and not rule.correlation:
        con = duckdb.connect()
        views.register_arrow(con, tables)
        try:
            cur = con.execute(rule.query)
            names = [d[0] for d in cur.description]
            rows = cur.fetchmany(6)
            out.append(f"the rule's SQL returned {len(rows) if len(rows) < 6 else 'more than 5'} row(s)")
            out += [f"  {_short(dict(zip(names, r)))}" for r in rows[:5]]
        except duckdb.Error as e:
            from pipeline.detect.sql import sql_error

            out.append(sql_error(rule, e))
    return out


def _pruned(v):
    """Without the empty fields a normalised row is mostly made of."""
    if isinstance(v, dict):
        return {k: p for k, p in ((k, _pruned(x)) for k, x in v.items()) if p not in (None, [], {}, "")}
    return v


def _short(row: dict, limit: int = 600) -> str:
    text = orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_junit(path: str, results: list[TestResult], broken: dict[str, list[str]] | None = None) -> None:
    """JUnit XML (one testsuite, a testcase per rule test; a rule file that does not load is a failure)."""
    import xml.etree.ElementTree as ET

    broken = broken or {}
    failures = sum(not r.passed for r in results) + len(broken)
    suite = ET.Element("testsuite", name="soclake rules", tests=str(len(results) + len(broken)),
                       failures=str(failures), errors="0")
    for file, problems in broken.items():
        case = ET.SubElement(suite, "testcase", classname=file, name="the rule file loads", file=file)
        ET.SubElement(case, "failure", message=problems[0]).text = "\n".join(problems)
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=r.rule.id, name=r.test.name, file=r.rule.path)
        if not r.passed:
            ET.SubElement(case, "failure", message="; ".join(r.problems)).text = "\n".join(r.problems + r.details)
    root = ET.Element("testsuites", tests=suite.get("tests"), failures=str(failures))
    root.append(suite)
    ET.indent(root)
    with open(path, "wb") as f:
        ET.ElementTree(root).write(f, encoding="utf-8", xml_declaration=True)


def run_rule_tests(rules: list[Rule], ids: list[str] | None = None) -> list[TestResult]:
    chosen = [r for r in rules if not ids or r.id in ids]
    return [run_test(r, n, t) for r in chosen for n, t in enumerate(r.tests)]
