"""The OCSF views (``pipeline/ocsf.py``) for Amazon Athena: the same columns and nesting in Trino SQL.

Athena views are Trino SQL, which builds structs as ``CAST(ROW(...) AS ROW(name type, ...))`` and
reads JSON strings with ``json_extract_scalar``. The expressions are written here per attribute;
the shape (column order, struct fields, types) is taken from the DuckDB views themselves, so the
two cannot drift apart: a field the expressions here leave out is NULL of the right type.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import ocsf
from pipeline.views import empty_ocsf_connection


@dataclass
class Each:
    """``transform(source, var -> node)``: a list of structs built from an array."""
    source: str
    var: str
    node: dict


@dataclass
class When:
    """``CASE WHEN cond THEN node END``: an object present only when ``cond`` holds."""
    cond: str
    node: dict | str


def trino_type(t) -> str:
    if t.id == "struct":
        return "ROW(" + ", ".join(f'"{n}" {trino_type(ct)}' for n, ct in t.children) + ")"
    if t.id == "list":
        return f"ARRAY({trino_type(t.children[0][1])})"
    return {"varchar": "varchar", "json": "varchar", "integer": "integer", "bigint": "bigint", "boolean": "boolean",
            "timestamp with time zone": "timestamp", "timestamp": "timestamp", "date": "date", "double": "double"}[t.id]


def render(node, t) -> str:
    """A node as Trino SQL of DuckDB type ``t`` (struct children in the type's order; missing ones NULL)."""
    if node is None:
        return f"CAST(NULL AS {trino_type(t)})"
    if isinstance(node, When):
        return f"CASE WHEN {node.cond} THEN {render(node.node, t)} END"
    if isinstance(node, Each):
        return f"transform({node.source}, {node.var} -> {render(node.node, t.children[0][1])})"
    if isinstance(node, dict):
        unknown = set(node) - {n for n, _ in t.children}
        if unknown:
            raise KeyError(f"not in the DuckDB view: {sorted(unknown)}")
        return f"CAST(ROW({', '.join(render(node.get(n), ct) for n, ct in t.children)}) AS {trino_type(t)})"
    return f"CAST({node} AS {trino_type(t)})"


def _j(col: str, path: str) -> str:
    return f"json_extract_scalar({col}, '{path}')"


def _ms(ts: str) -> str:
    return f"CAST(to_unixtime({ts}) * 1000 AS bigint)"


_IP = "CASE WHEN regexp_like(sourceIPAddress, '^([0-9.]+|[0-9a-fA-F:]+)$') THEN sourceIPAddress END"
_ACCOUNT = lambda uid: {"uid": uid, "type": "'AWS Account'", "type_id": "10"}  # noqa: E731
_U = "userIdentity"
_USER = {
    "type": f"coalesce({_U}.type, 'Unknown')", "type_id": f"CASE WHEN {_U}.type IS NULL THEN 0 ELSE 99 END",
    "uid": f"coalesce({_U}.arn, {_U}.principalId)", "uid_alt": f"{_U}.principalId",
    "name": f"coalesce({_U}.userName, {_U}.sessionContext.sessionIssuer.userName)",
    "credential_uid": f"{_U}.accessKeyId", "account": _ACCOUNT(f"{_U}.accountId"),
}


def _names(pairs: dict[int, str]) -> str:
    return "CASE _a " + " ".join(f"WHEN {k} THEN '{v}'" for k, v in pairs.items()) + " ELSE 'Other' END"


def _cloudtrail_common(class_uid: int, class_name: str, category_uid: int, category_name: str, names: dict) -> dict:
    ok = "errorCode IS NULL AND errorMessage IS NULL"
    s = f"{_U}.sessionContext"
    return {
        "class_uid": str(class_uid), "class_name": f"'{class_name}'", "category_uid": str(category_uid),
        "category_name": f"'{category_name}'", "activity_id": "_a", "activity_name": _names(names),
        "type_uid": f"{class_uid} * 100 + _a", "type_name": f"'{class_name}: ' || {_names(names)}",
        "time": _ms("event_time"), "time_dt": "event_time", "severity_id": "1", "severity": "'Informational'",
        "status_id": f"CASE WHEN {ok} THEN 1 ELSE 2 END", "status": f"CASE WHEN {ok} THEN 'Success' ELSE 'Failure' END",
        "status_code": "errorCode", "status_detail": "errorMessage",
        "metadata": {"version": f"'{ocsf.OCSF_VERSION}'", "uid": "eventID", "event_code": "eventType",
                     "profiles": "ARRAY['cloud', 'datetime']",
                     "product": {"name": "'CloudTrail'", "vendor_name": "'AWS'", "version": "eventVersion"}},
        "cloud": {"provider": "'AWS'", "region": "awsRegion", "account": _ACCOUNT("recipientAccountId")},
        "actor": {"user": _USER, "invoked_by": f"{_U}.invokedBy", "idp": {"name": f"{_U}.identityProvider"},
                  "session": {"created_time": _ms(f"try(from_iso8601_timestamp({s}.attributes.creationDate))"),
                              "is_mfa": f"{s}.attributes.mfaAuthenticated = 'true'", "issuer": f"{s}.sessionIssuer.arn",
                              "credential_uid": f"{_U}.accessKeyId"}},
        "src_endpoint": {"ip": _IP, "domain": f"CASE WHEN ({_IP}) IS NULL THEN sourceIPAddress END", "uid": "vpcEndpointId"},
        "http_request": {"user_agent": "userAgent"},
        "event_date": "event_date", "account_id": "account_id", "region": "region",
    }


def _api_activity_id() -> str:
    verbs = ocsf._API_VERBS
    whens = " ".join(f"WHEN regexp_like(eventName, '^({'|'.join(v)})[A-Z0-9]') THEN {k}" for k, v in verbs.items() if k != 2)
    return f"CASE WHEN readOnly THEN 2 {whens} WHEN regexp_like(eventName, '^({'|'.join(verbs[2])})') THEN 2 ELSE 99 END"


def views(db: str) -> dict[str, list[tuple[dict, str]]]:
    """View → the (tree, FROM clause) of each UNION ALL part."""
    ct = f"{db}.cloudtrail"
    api = {
        **_cloudtrail_common(6003, "API Activity", 6, "Application Activity", ocsf.API_ACTIVITY),
        "api": {"operation": "eventName", "version": "apiVersion", "service": {"name": "eventSource"},
                "request": When("requestID IS NOT NULL", {"uid": "requestID", "data": "requestParameters"}),
                "response": {"error": "errorCode", "error_message": "errorMessage", "data": "responseElements"}},
        "resources": Each("coalesce(resources, ARRAY[])", "r", {"uid": "r.arn", "type": "r.type"}),
    }
    signin = _j("responseElements", "$.ConsoleLogin")
    failed = f"{signin} = 'Failure' OR errorCode IS NOT NULL OR errorMessage IS NOT NULL"
    auth = {
        **_cloudtrail_common(3002, "Authentication", 3, "Identity & Access Management", ocsf.AUTH_ACTIVITY),
        "status_id": f"CASE WHEN {failed} THEN 2 ELSE 1 END",
        "status": f"CASE WHEN {failed} THEN 'Failure' ELSE 'Success' END",
        "user": _USER, "is_mfa": f"{_j('additionalEventData', '$.MFAUsed')} = 'Yes'", "is_remote": "true",
        "service": {"name": "eventSource"}, "dst_endpoint": {"svc_name": _j("additionalEventData", "$.LoginTo")},
        "unmapped": {"data": "responseElements"},
    }
    user_name = _j("requestParameters", "$.userName")
    policy_arn = _j("requestParameters", "$.policyArn")
    change = {
        **_cloudtrail_common(3001, "Account Change", 3, "Identity & Access Management", ocsf.ACCOUNT_ACTIVITY),
        "user": {"name": f"coalesce({user_name}, {_U}.userName)",
                 "uid": f"coalesce({_j('responseElements', '$.user.arn')}, CASE WHEN {user_name} IS NULL THEN {_U}.arn END)",
                 "uid_alt": _j("responseElements", "$.user.userId"),
                 "credential_uid": f"coalesce({_j('responseElements', '$.accessKey.accessKeyId')}, "
                                   f"{_j('requestParameters', '$.accessKeyId')})",
                 "account": _ACCOUNT("recipientAccountId")},
        "policy": When(f"{policy_arn} IS NOT NULL OR {_j('requestParameters', '$.policyName')} IS NOT NULL "
                       f"OR {_j('requestParameters', '$.groupName')} IS NOT NULL",
                       {"uid": policy_arn, "name": f"coalesce({_j('requestParameters', '$.policyName')}, "
                                                   f"regexp_extract({policy_arn}, '[^/]+$'))",
                        "group": {"name": _j("requestParameters", "$.groupName")}}),
    }
    iam_cases = " ".join(f"WHEN '{k}' THEN {v}" for k, v in ocsf.IAM_ACCOUNT_EVENTS.items())
    iam_names = ", ".join(f"'{k}'" for k in ocsf.IAM_ACCOUNT_EVENTS)
    sev = "CASE WHEN severity >= 9 THEN 5 WHEN severity >= 7 THEN 4 WHEN severity >= 4 THEN 3 ELSE 2 END"
    sev_alert = ("CASE severity WHEN 'info' THEN 1 WHEN 'low' THEN 2 WHEN 'medium' THEN 3 WHEN 'high' THEN 4 "
                 "WHEN 'critical' THEN 5 END")
    names = lambda s: (f"CASE {s} WHEN 1 THEN 'Informational' WHEN 2 THEN 'Low' WHEN 3 THEN 'Medium' "  # noqa: E731
                       f"WHEN 4 THEN 'High' WHEN 5 THEN 'Critical' END")
    new = "updatedAt = createdAt"
    finding_common = {"class_uid": "2004", "class_name": "'Detection Finding'", "category_uid": "2",
                      "category_name": "'Findings'", "event_date": "event_date", "account_id": "account_id",
                      "region": "region"}
    gd = {
        **finding_common,
        "activity_id": f"CASE WHEN {new} THEN 1 ELSE 2 END", "activity_name": f"CASE WHEN {new} THEN 'Create' ELSE 'Update' END",
        "type_uid": f"CASE WHEN {new} THEN 200401 ELSE 200402 END",
        "type_name": f"CASE WHEN {new} THEN 'Detection Finding: Create' ELSE 'Detection Finding: Update' END",
        "time": _ms("event_time"), "time_dt": "event_time", "severity_id": sev, "severity": names(sev),
        "status_id": "CASE WHEN archived THEN 3 ELSE 1 END", "status": "CASE WHEN archived THEN 'Suppressed' ELSE 'New' END",
        "message": "title", "count": "finding_count",
        "metadata": {"version": f"'{ocsf.OCSF_VERSION}'", "uid": "id", "profiles": "ARRAY['cloud', 'datetime']",
                     "product": {"name": "'GuardDuty'", "vendor_name": "'AWS'", "version": "schemaVersion"}},
        "finding_info": {"uid": "arn", "title": "title", "desc": "description", "types": 'ARRAY["type"]',
                         "created_time": _ms("created_at"), "modified_time": _ms("event_time"),
                         "first_seen_time": _ms("first_seen"), "last_seen_time": _ms("last_seen"),
                         "product_uid": "detector_id"},
        "cloud": {"provider": "'AWS'", "region": "region", "account": _ACCOUNT("accountId")},
        "resources": f"ARRAY[CAST(ROW(coalesce(instance_id, access_key_id, "
                     f"{_j('resource', '$.s3BucketDetails[0].arn')}, id), resource_type) AS ROW(uid varchar, type varchar))]",
        "evidences": Each("ARRAY[1]", "x", {"actor": {"user": {"uid": "principal_id", "name": "user_name",
                                                               "credential_uid": "access_key_id"}},
                                            "src_endpoint": {"ip": "remote_ip", "location": {"country": "remote_country"}},
                                            "api": {"operation": "api"}}),
    }
    alert = {
        **finding_common,
        "activity_id": "1", "activity_name": "'Create'", "type_uid": "200401", "type_name": "'Detection Finding: Create'",
        "time": _ms("detected_at"), "time_dt": "detected_at", "severity_id": sev_alert, "severity": names(sev_alert),
        "status_id": "1", "status": "'New'", "message": "title", "count": "event_count",
        "metadata": {"version": f"'{ocsf.OCSF_VERSION}'", "uid": "id", "profiles": "ARRAY['cloud', 'datetime']",
                     "product": {"name": "'soclake'", "vendor_name": "'soclake'"}},
        "finding_info": {"uid": "id", "title": "title", "desc": "runbook", "types": "ARRAY[practice]",
                         "created_time": _ms("first_detected_at"), "modified_time": _ms("detected_at"),
                         "first_seen_time": _ms("first_seen"), "last_seen_time": _ms("last_seen"),
                         "analytic": {"uid": "rule_id", "name": "rule_id", "type_id": "1", "type": "'Rule'",
                                      "version": "CAST(rule_version AS varchar)"},
                         "attacks": "concat(" + render_attack("tactic") + ", " + render_attack("technique") + ")",
                         "related_events": Each("CAST(json_parse(evidence) AS ARRAY(JSON))", "e", {
                             "uid": f"coalesce({_j('e', '$.event_id')}, {_j('e', '$.finding_id')})"})},
        "cloud": {"provider": "'AWS'", "region": "region", "account": _ACCOUNT("account_id")},
        "resources": Each("coalesce(resources, ARRAY[])", "r", {"uid": "r"}),
        "evidences": When("actor IS NOT NULL OR cardinality(source_ips) > 0",
                          "ARRAY[CAST(ROW(ROW(ROW(actor, NULL, NULL)), ROW(element_at(source_ips, 1), NULL), NULL) AS "
                          "ROW(actor ROW(\"user\" ROW(uid varchar, name varchar, credential_uid varchar)), "
                          "src_endpoint ROW(ip varchar, location ROW(country varchar)), api ROW(operation varchar)))]"),
    }
    return {
        "ocsf_api_activity": [(api, f"(SELECT *, {_api_activity_id()} AS _a FROM {ct} WHERE coalesce(managementEvent, "
                                    f"eventCategory = 'Management', true) AND eventCategory IS DISTINCT FROM 'Insight')")],
        "ocsf_authentication": [(auth, "(SELECT *, CASE WHEN eventName IN ('ConsoleLogin', 'ExternalIdPDirectoryLogin', "
                                       "'UserAuthentication', 'CredentialVerification', 'SwitchRole') THEN 1 WHEN "
                                       f"eventName = 'ConsoleLogout' THEN 2 ELSE 99 END AS _a FROM {ct} "
                                       "WHERE eventSource = 'signin.amazonaws.com')")],
        "ocsf_account_change": [(change, f"(SELECT *, CASE eventName {iam_cases} END AS _a FROM {ct} "
                                         f"WHERE eventSource = 'iam.amazonaws.com' AND eventName IN ({iam_names}))")],
        "ocsf_detection_finding": [(gd, f"{db}.guardduty_latest"), (alert, f"{db}.alerts_current")],
    }


def render_attack(kind: str) -> str:
    other = "technique" if kind == "tactic" else "tactic"
    row = "ROW(tactic ROW(uid varchar), technique ROW(uid varchar))"
    parts = {kind: "ROW(t)", other: "NULL"}
    return (f"transform(coalesce({kind}s, ARRAY[]), t -> CAST(ROW({parts['tactic']}, {parts['technique']}) "
            f"AS {row}))")


def view_statements(database: str) -> list[str]:
    """``CREATE OR REPLACE VIEW`` for each OCSF view, shaped like the DuckDB views."""
    con = empty_ocsf_connection()
    out = []
    for view, parts in views(database).items():
        rel = con.sql(f"SELECT * FROM {view}")
        selects = []
        for tree, source in parts:
            unknown = set(tree) - set(rel.columns)
            if unknown:
                raise KeyError(f"{view}: not in the DuckDB view: {sorted(unknown)}")
            cols = ", ".join(f'{render(tree.get(c), t)} AS "{c}"' for c, t in zip(rel.columns, rel.types))
            selects.append(f"SELECT {cols}\nFROM {source}")
        out.append(f"CREATE OR REPLACE VIEW {database}.{view} AS\n" + "\nUNION ALL\n".join(selects))
    return out
