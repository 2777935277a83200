"""The OCSF views, validated against the OCSF 1.1.0 schema shipped offline by pydantic-ocsf.

Two checks per row, both from that package: the class's pydantic model validates it (required
attributes, types, enum values such as activity_id and severity_id, nested objects), and every
key, at every depth, is an attribute of its OCSF object or class. pydantic-ocsf 3.0's models
leave out the attributes a class gets through ``$include`` (classification, occurrence, the cloud
and datetime profiles: ``class_uid``, ``time``, ``cloud``, ...); those are checked against the
same package's schema dictionary (their type, and for objects the object's model).
"""

from __future__ import annotations

import datetime as dt
import json
import typing
from importlib import resources

import duckdb
import pyarrow as pa
import pytest
from pydantic import BaseModel

from pipeline import ocsf, views
from pipeline.detect.alert_store import ARROW_SCHEMA, _row
from pipeline.detect.engine import run_rules
from pipeline.detect.rules import RuleTest, load_rules
from pipeline.detect.testing import tables_for

ocsf_models = pytest.importorskip("ocsf.v1_1_0")
from ocsf.v1_1_0 import events as ocsf_events  # noqa: E402
from ocsf.v1_1_0 import objects as ocsf_objects  # noqa: E402

SCHEMA = json.loads((resources.files("ocsf") / "schemas" / "v1_1_0.json").read_text())
DICTIONARY = SCHEMA["dictionary"]["attributes"]
CLASSES = {
    "ocsf_api_activity": ("api_activity", ocsf_events.ApiActivity),
    "ocsf_authentication": ("authentication", ocsf_events.Authentication),
    "ocsf_account_change": ("account_change", ocsf_events.AccountChange),
    "ocsf_detection_finding": ("detection_finding", ocsf_events.DetectionFinding),
}
CATEGORIES = SCHEMA["categories_meta"]["attributes"]
LAKE_COLUMNS = {"event_date", "account_id", "region"}  # the partition columns kept beside OCSF's for pruning
SCALARS = {"integer_t": int, "long_t": int, "timestamp_t": int, "string_t": str, "boolean_t": bool, "float_t": float,
           "ip_t": str, "datetime_t": str, "json_t": object, "uuid_t": str, "port_t": int}

ROOT = {"type": "Root", "principalId": "111111111111", "arn": "arn:aws:iam::111111111111:root", "accountId": "111111111111"}
EVENTS = [
    {"eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn",
     "userIdentity": ROOT, "responseElements": {"ConsoleLogin": "Success"},
     "additionalEventData": {"MFAUsed": "No", "LoginTo": "https://console.aws.amazon.com/"}},
    {"eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn",
     "errorMessage": "Failed authentication", "responseElements": {"ConsoleLogin": "Failure"}},
    {"eventSource": "iam.amazonaws.com", "eventName": "CreateUser", "requestParameters": {"userName": "mallory"},
     "responseElements": {"user": {"userName": "mallory", "arn": "arn:aws:iam::111111111111:user/mallory",
                                   "userId": "AIDAEXAMPLEMALLORY01"}}},
    {"eventSource": "iam.amazonaws.com", "eventName": "AttachUserPolicy",
     "requestParameters": {"userName": "mallory", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}},
    {"eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey", "requestParameters": {"userName": "mallory"},
     "responseElements": {"accessKey": {"accessKeyId": "AKIAEXAMPLEMALLORY1", "status": "Active"}}},
    {"eventSource": "iam.amazonaws.com", "eventName": "DeactivateMFADevice", "errorCode": "AccessDenied",
     "errorMessage": "not authorized", "requestParameters": {"userName": "bob", "serialNumber": "arn:mfa/bob"}},
    {"eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "sourceIPAddress": "ec2.amazonaws.com",
     "resources": [{"ARN": "arn:aws:ec2:us-east-1:111111111111:instance/i-0abc", "accountId": "111111111111",
                    "type": "AWS::EC2::Instance"}]},
    {"eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "readOnly": True, "sourceIPAddress": "2001:db8::7"},
    {"eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging", "requestParameters": {"name": "main"}},
    {"eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "userIdentity": {
        "type": "AssumedRole", "principalId": "AROAEXAMPLE:s", "arn": "arn:aws:sts::111111111111:assumed-role/Admin/s",
        "accountId": "111111111111", "accessKeyId": "ASIAEXAMPLE",
        "sessionContext": {"attributes": {"creationDate": "2026-11-01T09:00:00Z", "mfaAuthenticated": "true"},
                           "sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111111111111:role/Admin",
                                             "userName": "Admin", "principalId": "AROAEXAMPLE", "accountId": "111111111111"}}}},
]
FINDINGS = [{"type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", "severity": 8.0}]


@pytest.fixture(scope="module")
def con():
    rules = load_rules()
    tables = tables_for(rules[0], 0, RuleTest(name="ocsf", alerts=0, events=EVENTS, findings=FINDINGS))
    c = duckdb.connect()
    views.register_arrow(c, tables)
    views.register_arrow(c, tables, prefix="lake_")  # the engine reads lake_*, as `soclake rules test` runs it
    alerts = run_rules(c, [r for r in rules if r.id in ("root_console_login", "cloudtrail_logging_stopped")],
                       dt.datetime.now(dt.UTC), dt.datetime(2026, 10, 1, tzinfo=dt.UTC), dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    assert len(alerts) == 2
    now = dt.datetime.now(dt.UTC)
    rows = [{**_row(a, now, "run-1"), "event_date": a.window_start.date()} for a in alerts]
    c.register("_alerts", pa.Table.from_pylist(rows, schema=ARROW_SCHEMA.append(pa.field("event_date", pa.date32()))))
    c.execute("CREATE VIEW alerts AS SELECT * FROM _alerts")
    ocsf.register(c)
    return c


def _rows(con, view: str) -> list[dict]:
    """Rows as OCSF events travel: JSON (JSON columns nested as objects, timestamps as RFC 3339 text)."""
    return [json.loads(r[0]) for r in con.execute(f"SELECT to_json(t) FROM {view} t").fetchall()]


def _clean(v):
    """Absent is absent: drop NULLs and the empty objects an all-NULL struct leaves."""
    if isinstance(v, dict):
        out = {k: _clean(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x is not None and x != {} and x != []}
    if isinstance(v, list):
        return [_clean(x) for x in v if x is not None]
    return v


def _model_of(annotation):
    """The pydantic model inside ``X | None`` / ``list[X]`` / ``Optional[list[X]]`` annotations, or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in typing.get_args(annotation):
        found = _model_of(a)
        if found is not None:
            return found
    return None


def _object_model(name: str):
    return getattr(ocsf_objects, "".join(p.capitalize() for p in name.split("_")), None)


def unknown_keys(model, data: dict, path: str = "") -> list[str]:
    """Keys that are not attributes of the OCSF class/object (recursively), and type mismatches of
    attributes the model does not carry (checked against the schema dictionary)."""
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    problems = []
    for key, value in data.items():
        where = f"{path}{key}"
        if key in fields:
            sub = _model_of(fields[key].annotation)
            items = value if isinstance(value, list) else [value]
            if sub is not None:
                for item in items:
                    if isinstance(item, dict):
                        problems += unknown_keys(sub, item, where + ".")
            continue
        spec = DICTIONARY.get(key)
        if spec is None and key.endswith("_dt") and DICTIONARY.get(key[:-3], {}).get("type") == "timestamp_t":
            spec = {"type": "datetime_t"}  # the datetime profile's twin of a timestamp attribute
        if spec is None:
            problems.append(f"{where}: not an OCSF attribute")
            continue
        typ = spec["type"]
        if typ in SCALARS:
            if not isinstance(value, SCALARS[typ]) or (typ != "boolean_t" and isinstance(value, bool)):
                problems.append(f"{where}: {value!r} is not {typ}")
            continue
        obj = _object_model(typ)
        if obj is None:
            problems.append(f"{where}: unknown OCSF object type {typ}")
            continue
        for item in value if isinstance(value, list) else [value]:
            obj.model_validate(item)
            problems += unknown_keys(obj, item, where + ".")
    return problems


@pytest.mark.parametrize("view", ocsf.VIEWS)
def test_every_row_is_a_valid_ocsf_event_of_its_class(con, view):
    name, model = CLASSES[view]
    rows = _rows(con, view)
    assert rows
    cls = SCHEMA["events"][name]
    category = CATEGORIES[cls.get("category") or SCHEMA["events"][cls["extends"]]["category"]]
    cat_uid = category["uid"]
    for row in rows:
        event = _clean({k: v for k, v in row.items() if k not in LAKE_COLUMNS})
        model.model_validate(event)  # required attributes, types, enums (activity_id, severity_id, ...)
        assert unknown_keys(model, event) == []
        assert event["category_uid"] == cat_uid
        assert event["class_uid"] == cat_uid * 1000 + SCHEMA["events"][name]["uid"]
        assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]
        assert (event["class_name"], event["category_name"]) == (cls["caption"], category["caption"])
        assert event["metadata"]["version"] == ocsf.OCSF_VERSION
        assert set(row) >= LAKE_COLUMNS


def test_api_activity_maps_cloudtrail_like_security_lake(con):
    every = _rows(con, "ocsf_api_activity")
    assert len(every) == len(EVENTS)  # every management event
    rows = {r["api"]["operation"]: r for r in every if r["status_id"] == 1 or r["api"]["operation"] != "ConsoleLogin"}
    login = rows["ConsoleLogin"]
    assert login["actor"]["user"]["uid"] == ROOT["arn"] and login["actor"]["user"]["type"] == "Root"
    assert login["cloud"] == {"provider": "AWS", "region": "us-east-1",
                              "account": {"uid": "111111111111", "type": "AWS Account", "type_id": 10}}
    assert login["src_endpoint"]["ip"] == "198.51.100.10"
    assert rows["RunInstances"]["src_endpoint"] == {"ip": None, "domain": "ec2.amazonaws.com", "uid": None}
    assert rows["RunInstances"]["activity_id"] == 1 and rows["RunInstances"]["resources"][0]["uid"].endswith("i-0abc")
    assert rows["ListBuckets"]["activity_id"] == 2 and rows["ListBuckets"]["src_endpoint"]["ip"] == "2001:db8::7"
    assert rows["StopLogging"]["activity_id"] == 3 and rows["StopLogging"]["type_uid"] == 600303
    assert rows["DeactivateMFADevice"]["status_id"] == 2 and rows["DeactivateMFADevice"]["status_code"] == "AccessDenied"
    assumed = rows["AssumeRole"]["actor"]["session"]
    assert assumed["is_mfa"] is True and assumed["issuer"] == "arn:aws:iam::111111111111:role/Admin"
    assert rows["CreateUser"]["api"]["request"]["data"] == {"userName": "mallory"}


def test_authentication_account_change_and_findings(con):
    auth = sorted(_rows(con, "ocsf_authentication"), key=lambda r: r["status_id"])
    assert [(r["activity_id"], r["status_id"], r["is_mfa"]) for r in auth] == [(1, 1, False), (1, 2, None)]
    changes = {r["api"] if "api" in r else r["activity_name"]: r for r in _rows(con, "ocsf_account_change")}
    assert set(changes) == {"Create", "Attach Policy", "Other", "MFA Factor Disable"}
    assert changes["Create"]["user"]["uid"] == "arn:aws:iam::111111111111:user/mallory"
    assert changes["Attach Policy"]["policy"]["name"] == "AdministratorAccess"
    assert changes["Other"]["user"]["credential_uid"] == "AKIAEXAMPLEMALLORY1"
    findings = {r["metadata"]["product"]["name"]: r for r in _rows(con, "ocsf_detection_finding")}
    gd = findings["GuardDuty"]
    assert gd["severity_id"] == 4 and gd["finding_info"]["types"] == [FINDINGS[0]["type"]]
    alerts = [r for r in _rows(con, "ocsf_detection_finding") if r["metadata"]["product"]["name"] == "soclake"]
    assert {a["finding_info"]["analytic"]["uid"] for a in alerts} == {"root_console_login", "cloudtrail_logging_stopped"}
    assert all(a["finding_info"]["related_events"] for a in alerts)


def test_empty_lake_has_the_views(tmp_path):
    con = views.connect(str(tmp_path))
    for v in ocsf.VIEWS:
        assert con.execute(f"SELECT count(*) FROM {v}").fetchone()[0] == 0


def test_the_mapping_table_names_only_real_attributes():
    con = views.empty_ocsf_connection()
    for view, sources in ocsf.SOURCES.items():
        paths = {p for p, _ in ocsf.columns(con, view)}
        assert set(sources) <= paths, (view, set(sources) - paths)


def test_athena_views_give_the_same_rows(con):
    """The Athena (Trino) views, translated to DuckDB by sqlglot, over the same events: same rows."""
    sqlglot = pytest.importorskip("sqlglot")
    from pipeline.analyst.athena_ocsf import view_statements

    con.execute("CREATE SCHEMA IF NOT EXISTS athena")
    for t in ("cloudtrail", "guardduty_latest"):
        con.execute(f"CREATE OR REPLACE VIEW athena.{t} AS SELECT * FROM main.{t}")
    con.execute("CREATE OR REPLACE VIEW athena.alerts_current AS SELECT * FROM main.alerts")
    for stmt in view_statements("athena"):
        assert isinstance(sqlglot.parse_one(stmt, read="athena"), sqlglot.exp.Create)
        con.execute(sqlglot.transpile(stmt, read="athena", write="duckdb")[0])
    def same_form(row: dict) -> str:
        """Athena keeps JSON columns as strings and timestamps without a zone: compare the values."""
        row = _clean(row)
        row["time_dt"] = row["time_dt"].removesuffix("+00")
        for obj, key in ((row.get("api", {}).get("request", {}), "data"), (row.get("api", {}).get("response", {}), "data"),
                         (row.get("unmapped", {}), "data")):
            if isinstance(obj.get(key), str):
                obj[key] = json.loads(obj[key])
        return json.dumps(row, sort_keys=True)

    for view in ocsf.VIEWS:
        ours = sorted(same_form(r) for r in _rows(con, view))
        theirs = sorted(same_form(r) for r in _rows(con, f"athena.{view}"))
        assert ours and theirs == ours, view
