"""OCSF views of the lake: CloudTrail and GuardDuty (and soclake's alerts) as OCSF 1.1.0 events.

| view | OCSF class | rows |
|---|---|---|
| ``ocsf_api_activity`` | API Activity (6003, Application Activity) | every CloudTrail management event |
| ``ocsf_authentication`` | Authentication (3002, Identity & Access Management) | console and federation sign-ins (``signin.amazonaws.com``) |
| ``ocsf_account_change`` | Account Change (3001, Identity & Access Management) | IAM user and credential changes |
| ``ocsf_detection_finding`` | Detection Finding (2004, Findings) | the newest version of each GuardDuty finding, and soclake's alerts |

Columns are OCSF's names and nesting (``actor.user.uid``, ``src_endpoint.ip``, ``api.operation``,
``cloud.account.uid``, ``cloud.region``, ``metadata.product.name``, ...) with ``class_uid``,
``category_uid``, ``activity_id``, ``type_uid``, ``severity_id`` and ``status_id`` (and their
``*_name`` captions) filled per the schema. The CloudTrail mapping follows Amazon Security Lake's
(``actor.user.uid`` is the principal's ARN, ``uid_alt`` its principal id, ``credential_uid`` the
access key; ``api.request.data`` / ``api.response.data`` hold ``requestParameters`` /
``responseElements``). Times are OCSF ``timestamp_t`` (epoch milliseconds) with the datetime
profile's ``*_dt`` twins as timestamps; the lake's partition columns (``event_date``,
``account_id``, ``region``) stay beside them so filters on them still prune folders.
docs/ocsf.md has the field-by-field table; tests validate rows with the OCSF schema package.
"""

from __future__ import annotations

import duckdb

OCSF_VERSION = "1.1.0"
VIEWS = ("ocsf_api_activity", "ocsf_authentication", "ocsf_account_change", "ocsf_detection_finding")

_AWS_ACCOUNT = "{'uid': %s, 'type': 'AWS Account', 'type_id': 10}"
_PARTS = "event_date, account_id, region"


def _ms(ts: str) -> str:
    return f"epoch_ms({ts})"


def _ip(col: str) -> str:
    """CloudTrail's sourceIPAddress is an address, or a service name (``ec2.amazonaws.com``)."""
    return f"CASE WHEN regexp_full_match({col}, '[0-9.]+|[0-9a-fA-F:]+') THEN {col} END"


def _metadata(product: str, uid: str, version: str = "NULL", event_code: str = "NULL") -> str:
    return (f"{{'version': '{OCSF_VERSION}', 'uid': {uid}, 'event_code': {event_code}, "
            f"'profiles': ['cloud', 'datetime'], "
            f"'product': {{'name': '{product}', 'vendor_name': 'AWS', 'version': {version}}}}}")


def _cloud(account: str, region: str) -> str:
    return f"{{'provider': 'AWS', 'region': {region}, 'account': {_AWS_ACCOUNT % account}}}"


def _user(prefix: str = "userIdentity") -> str:
    u = prefix
    # type_id 99 (Other) keeps AWS's own identity type (Root, IAMUser, AssumedRole, ...) in `type`
    return (f"{{'type': coalesce({u}.type, 'Unknown'), 'type_id': CASE WHEN {u}.type IS NULL THEN 0 ELSE 99 END, "
            f"'uid': coalesce({u}.arn, {u}.principalId), "
            f"'uid_alt': {u}.principalId, 'name': coalesce({u}.userName, {u}.sessionContext.sessionIssuer.userName), "
            f"'credential_uid': {u}.accessKeyId, 'account': {_AWS_ACCOUNT % (u + '.accountId')}}}")


def _actor() -> str:
    s = "userIdentity.sessionContext"
    return (f"{{'user': {_user()}, 'invoked_by': userIdentity.invokedBy, 'idp': {{'name': userIdentity.identityProvider}}, "
            f"'session': {{'created_time': {_ms(f'TRY_CAST({s}.attributes.creationDate AS TIMESTAMPTZ)')}, "
            f"'is_mfa': {s}.attributes.mfaAuthenticated = 'true', 'issuer': {s}.sessionIssuer.arn, "
            f"'credential_uid': userIdentity.accessKeyId}}}}")


def _common_cloudtrail(class_uid: int, class_name: str, category_uid: int, category_name: str,
                       activity_names: str) -> str:
    """The columns every CloudTrail-derived class shares (``_a``: the activity_id the FROM computes)."""
    return f"""
    {class_uid} AS class_uid, '{class_name}' AS class_name, {category_uid} AS category_uid,
    '{category_name}' AS category_name, _a AS activity_id, {activity_names} AS activity_name,
    {class_uid} * 100 + _a AS type_uid, '{class_name}: ' || {activity_names} AS type_name,
    {_ms('event_time')} AS time, event_time AS time_dt, 1 AS severity_id, 'Informational' AS severity,
    CASE WHEN errorCode IS NULL AND errorMessage IS NULL THEN 1 ELSE 2 END AS status_id,
    CASE WHEN errorCode IS NULL AND errorMessage IS NULL THEN 'Success' ELSE 'Failure' END AS status,
    errorCode AS status_code, errorMessage AS status_detail,
    {_metadata('CloudTrail', 'eventID', 'eventVersion', 'eventType')} AS metadata,
    {_cloud('recipientAccountId', 'awsRegion')} AS cloud,
    {_actor()} AS actor,
    {{'ip': {_ip('sourceIPAddress')}, 'domain': CASE WHEN {_ip('sourceIPAddress')} IS NULL THEN sourceIPAddress END,
      'uid': vpcEndpointId}} AS src_endpoint,
    {{'user_agent': userAgent}} AS http_request,
    {_PARTS}"""


def _names(pairs: dict[int, str]) -> str:
    whens = " ".join(f"WHEN {k} THEN '{v}'" for k, v in pairs.items())
    return f"CASE _a {whens} ELSE 'Other' END"


API_ACTIVITY = {1: "Create", 2: "Read", 3: "Update", 4: "Delete"}
_API_VERBS = {
    1: ("Create", "Put", "Add", "Attach", "Run", "Start", "Authorize", "Allocate", "Associate", "Enable", "Import",
        "Register", "Copy", "Issue", "Request", "Invoke", "Publish", "Send", "Upload"),
    2: ("Get", "Describe", "List", "Head", "Lookup", "Search", "Query", "Scan", "Select", "Batch"),
    3: ("Update", "Modify", "Set", "Change", "Replace", "Reset", "Tag", "Untag", "Stop", "Reboot", "Restore", "Rotate"),
    4: ("Delete", "Remove", "Detach", "Terminate", "Revoke", "Disable", "Deregister", "Disassociate", "Release",
        "Cancel", "Purge", "Deactivate"),
}


def _api_activity_id() -> str:
    whens = " ".join(f"WHEN regexp_matches(eventName, '^({'|'.join(verbs)})[A-Z0-9]') THEN {k}"
                     for k, verbs in _API_VERBS.items() if k != 2)
    return (f"CASE WHEN readOnly THEN 2 {whens} WHEN regexp_matches(eventName, '^({'|'.join(_API_VERBS[2])})') "
            f"THEN 2 ELSE 99 END")


def api_activity_sql(src: str = "cloudtrail") -> str:
    return f"""SELECT {_common_cloudtrail(6003, 'API Activity', 6, 'Application Activity', _names(API_ACTIVITY))},
    {{'operation': eventName, 'version': apiVersion, 'service': {{'name': eventSource}},
      'request': CASE WHEN requestID IS NOT NULL THEN {{'uid': requestID, 'data': requestParameters}} END,
      'response': {{'error': errorCode, 'error_message': errorMessage, 'data': responseElements}}}} AS api,
    list_transform(coalesce(resources, []), lambda r: {{'uid': r.ARN, 'type': r.type}}) AS resources
FROM (SELECT *, {_api_activity_id()} AS _a FROM {src}
      WHERE coalesce(managementEvent, eventCategory = 'Management', true) AND eventCategory IS DISTINCT FROM 'Insight')"""


AUTH_ACTIVITY = {1: "Logon", 2: "Logoff"}
_SIGNIN = "responseElements->>'$.ConsoleLogin'"


def authentication_sql(src: str = "cloudtrail") -> str:
    common = _common_cloudtrail(3002, "Authentication", 3, "Identity & Access Management", _names(AUTH_ACTIVITY))
    # a sign-in's outcome is in responseElements (ConsoleLogin: Success/Failure), not only in errorCode
    common = common.replace(
        "CASE WHEN errorCode IS NULL AND errorMessage IS NULL THEN 1 ELSE 2 END AS status_id",
        f"CASE WHEN {_SIGNIN} = 'Failure' OR errorCode IS NOT NULL OR errorMessage IS NOT NULL THEN 2 "
        f"WHEN {_SIGNIN} = 'Success' OR {_SIGNIN} IS NULL THEN 1 END AS status_id",
    ).replace(
        "CASE WHEN errorCode IS NULL AND errorMessage IS NULL THEN 'Success' ELSE 'Failure' END AS status",
        f"CASE WHEN {_SIGNIN} = 'Failure' OR errorCode IS NOT NULL OR errorMessage IS NOT NULL THEN 'Failure' "
        f"ELSE 'Success' END AS status",
    )
    return f"""SELECT {common},
    {_user()} AS user,
    additionalEventData->>'$.MFAUsed' = 'Yes' AS is_mfa, true AS is_remote,
    {{'name': eventSource}} AS service,
    {{'svc_name': additionalEventData->>'$.LoginTo'}} AS dst_endpoint,
    {{'data': responseElements}} AS unmapped
FROM (SELECT *, CASE WHEN eventName IN ('ConsoleLogin', 'ExternalIdPDirectoryLogin', 'UserAuthentication',
                                        'CredentialVerification', 'SwitchRole') THEN 1
                     WHEN eventName = 'ConsoleLogout' THEN 2 ELSE 99 END AS _a
      FROM {src} WHERE eventSource = 'signin.amazonaws.com')"""


ACCOUNT_ACTIVITY = {1: "Create", 2: "Enable", 3: "Password Change", 4: "Password Reset", 5: "Disable", 6: "Delete",
                    7: "Attach Policy", 8: "Detach Policy", 9: "Lock", 10: "MFA Factor Enable", 11: "MFA Factor Disable"}
#: IAM eventName → Account Change activity_id (user and credential changes; roles are not accounts in OCSF 1.1).
IAM_ACCOUNT_EVENTS = {
    "CreateUser": 1, "CreateLoginProfile": 2, "ChangePassword": 3, "UpdateLoginProfile": 4,
    "DeleteLoginProfile": 5, "DeleteUser": 6, "AttachUserPolicy": 7, "PutUserPolicy": 7, "AddUserToGroup": 7,
    "DetachUserPolicy": 8, "DeleteUserPolicy": 8, "RemoveUserFromGroup": 8, "EnableMFADevice": 10,
    "DeactivateMFADevice": 11, "DeleteVirtualMFADevice": 11, "CreateAccessKey": 99, "UpdateAccessKey": 99,
    "DeleteAccessKey": 99, "UploadSSHPublicKey": 99, "UploadSigningCertificate": 99, "CreateServiceSpecificCredential": 99,
    "UpdateUser": 99, "PutUserPermissionsBoundary": 99, "DeleteUserPermissionsBoundary": 99,
}


def account_change_sql(src: str = "cloudtrail") -> str:
    cases = " ".join(f"WHEN '{k}' THEN {v}" for k, v in IAM_ACCOUNT_EVENTS.items())
    names = ", ".join(f"'{k}'" for k in IAM_ACCOUNT_EVENTS)
    # the account changed: the request's userName, else the caller itself (ChangePassword, own keys)
    target = "coalesce(requestParameters->>'$.userName', userIdentity.userName)"
    return f"""SELECT {_common_cloudtrail(3001, 'Account Change', 3, 'Identity & Access Management', _names(ACCOUNT_ACTIVITY))},
    {{'name': {target}, 'uid': coalesce(responseElements->>'$.user.arn', CASE WHEN requestParameters->>'$.userName' IS NULL
        THEN userIdentity.arn END), 'uid_alt': responseElements->>'$.user.userId',
      'credential_uid': coalesce(responseElements->>'$.accessKey.accessKeyId', requestParameters->>'$.accessKeyId'),
      'account': {_AWS_ACCOUNT % 'recipientAccountId'}}} AS user,
    CASE WHEN requestParameters->>'$.policyArn' IS NOT NULL OR requestParameters->>'$.policyName' IS NOT NULL
         OR requestParameters->>'$.groupName' IS NOT NULL THEN
      {{'uid': requestParameters->>'$.policyArn', 'name': coalesce(requestParameters->>'$.policyName',
        regexp_extract(requestParameters->>'$.policyArn', '[^/]+$')),
        'group': {{'name': requestParameters->>'$.groupName'}}}} END AS policy
FROM (SELECT *, CASE eventName {cases} END AS _a FROM {src}
      WHERE eventSource = 'iam.amazonaws.com' AND eventName IN ({names}))"""


_SEVERITY = "CASE WHEN {s} >= 9 THEN 5 WHEN {s} >= 7 THEN 4 WHEN {s} >= 4 THEN 3 ELSE 2 END"
_ALERT_SEVERITY = "CASE {s} WHEN 'info' THEN 1 WHEN 'low' THEN 2 WHEN 'medium' THEN 3 WHEN 'high' THEN 4 WHEN 'critical' THEN 5 END"
_SEVERITY_NAMES = "CASE {s} WHEN 1 THEN 'Informational' WHEN 2 THEN 'Low' WHEN 3 THEN 'Medium' WHEN 4 THEN 'High' WHEN 5 THEN 'Critical' END"
#: the Detection Finding's nested columns, one shape for GuardDuty and alerts (UNION ALL needs equal types).
_FINDING_TYPES = {
    "metadata": "STRUCT(version VARCHAR, uid VARCHAR, event_code VARCHAR, profiles VARCHAR[], "
                "product STRUCT(name VARCHAR, vendor_name VARCHAR, version VARCHAR))",
    "finding_info": "STRUCT(uid VARCHAR, title VARCHAR, \"desc\" VARCHAR, types VARCHAR[], created_time BIGINT, "
                    "modified_time BIGINT, first_seen_time BIGINT, last_seen_time BIGINT, product_uid VARCHAR, "
                    "analytic STRUCT(uid VARCHAR, name VARCHAR, type_id INTEGER, type VARCHAR, version VARCHAR), "
                    "attacks STRUCT(tactic STRUCT(uid VARCHAR), technique STRUCT(uid VARCHAR))[], "
                    "related_events STRUCT(uid VARCHAR)[])",
    "cloud": "STRUCT(provider VARCHAR, region VARCHAR, account STRUCT(uid VARCHAR, type VARCHAR, type_id INTEGER))",
    "resources": "STRUCT(uid VARCHAR, type VARCHAR)[]",
    "evidences": "STRUCT(actor STRUCT(\"user\" STRUCT(uid VARCHAR, name VARCHAR, credential_uid VARCHAR)), "
                 "src_endpoint STRUCT(ip VARCHAR, location STRUCT(country VARCHAR)), "
                 "api STRUCT(operation VARCHAR))[]",
}


def _finding(cols: dict[str, str], src: str) -> str:
    out = [f"CAST({cols.pop(k)} AS {t}) AS {k}" for k, t in _FINDING_TYPES.items()]
    out += [f"{v} AS {k}" for k, v in cols.items()]
    return f"SELECT {', '.join(out)} FROM {src}"


def detection_finding_sql(guardduty: str = "guardduty_latest", alerts: str | None = "alerts") -> str:
    common = {
        "class_uid": "2004", "class_name": "'Detection Finding'", "category_uid": "2", "category_name": "'Findings'",
    }
    gd = {
        **common,
        "activity_id": "CASE WHEN updatedAt = createdAt THEN 1 ELSE 2 END",
        "activity_name": "CASE WHEN updatedAt = createdAt THEN 'Create' ELSE 'Update' END",
        "type_uid": "CASE WHEN updatedAt = createdAt THEN 200401 ELSE 200402 END",
        "type_name": "CASE WHEN updatedAt = createdAt THEN 'Detection Finding: Create' ELSE 'Detection Finding: Update' END",
        "time": _ms("event_time"), "time_dt": "event_time",
        "severity_id": _SEVERITY.format(s="severity"),
        "severity": _SEVERITY_NAMES.format(s=_SEVERITY.format(s="severity")),
        "status_id": "CASE WHEN archived THEN 3 ELSE 1 END", "status": "CASE WHEN archived THEN 'Suppressed' ELSE 'New' END",
        "message": "title", "count": "CAST(finding_count AS INTEGER)",
        "metadata": _metadata("GuardDuty", "id", "schemaVersion", "NULL"),
        "finding_info": f"{{'uid': arn, 'title': title, 'desc': description, 'types': [type], "
                        f"'created_time': {_ms('created_at')}, 'modified_time': {_ms('event_time')}, "
                        f"'first_seen_time': {_ms('first_seen')}, 'last_seen_time': {_ms('last_seen')}, "
                        f"'product_uid': detector_id, 'analytic': NULL, 'attacks': NULL, 'related_events': NULL}}",
        "cloud": _cloud("accountId", "region"),
        "resources": "[{'uid': coalesce(instance_id, access_key_id, resource->>'$.s3BucketDetails[0].arn', id), "
                     "'type': resource_type}]",
        "evidences": "[{'actor': {'user': {'uid': principal_id, 'name': user_name, 'credential_uid': access_key_id}}, "
                     "'src_endpoint': {'ip': remote_ip, 'location': {'country': remote_country}}, "
                     "'api': {'operation': api}}]",
        "event_date": "event_date", "account_id": "account_id", "region": "region",
    }
    parts = [_finding(gd, guardduty)]
    if alerts:
        al = {
            **common,
            "activity_id": "1", "activity_name": "'Create'", "type_uid": "200401", "type_name": "'Detection Finding: Create'",
            "time": _ms("detected_at"), "time_dt": "detected_at",
            "severity_id": _ALERT_SEVERITY.format(s="severity"),
            "severity": _SEVERITY_NAMES.format(s=_ALERT_SEVERITY.format(s="severity")),
            "status_id": "1", "status": "'New'", "message": "title", "count": "CAST(event_count AS INTEGER)",
            "metadata": f"{{'version': '{OCSF_VERSION}', 'uid': id, 'event_code': NULL, 'profiles': ['cloud', 'datetime'], "
                        "'product': {'name': 'soclake', 'vendor_name': 'soclake', 'version': NULL}}",
            "finding_info": f"{{'uid': id, 'title': title, 'desc': runbook, 'types': [practice], "
                            f"'created_time': {_ms('first_detected_at')}, 'modified_time': {_ms('detected_at')}, "
                            f"'first_seen_time': {_ms('first_seen')}, 'last_seen_time': {_ms('last_seen')}, "
                            f"'product_uid': NULL, "
                            f"'analytic': {{'uid': rule_id, 'name': rule_id, 'type_id': 1, 'type': 'Rule', "
                            f"'version': CAST(rule_version AS VARCHAR)}}, "
                            f"'attacks': list_transform(coalesce(tactics, []), lambda t: {{'tactic': {{'uid': t}}, 'technique': NULL}}) "
                            f"|| list_transform(coalesce(techniques, []), lambda t: {{'tactic': NULL, 'technique': {{'uid': t}}}}), "
                            f"'related_events': list_transform(coalesce(from_json(json_extract(evidence, '$[*]'), "
                            f"'[\"JSON\"]'), []), lambda e: {{'uid': coalesce(e->>'$.event_id', e->>'$.finding_id')}})}}",
            "cloud": _cloud("account_id", "region"),
            "resources": "list_transform(coalesce(resources, []), lambda r: {'uid': r, 'type': NULL})",
            "evidences": "CASE WHEN actor IS NOT NULL OR len(source_ips) > 0 THEN [{'actor': {'user': {'uid': actor, "
                         "'name': NULL, 'credential_uid': NULL}}, 'src_endpoint': {'ip': source_ips[1], "
                         "'location': NULL}, 'api': NULL}] END",
            "event_date": "event_date", "account_id": "account_id", "region": "region",
        }
        parts.append(_finding(al, alerts))
    return "\nUNION ALL BY NAME\n".join(parts)


def view_sql(prefix: str = "") -> dict[str, str]:
    """View name → SELECT over the lake's views (named with ``prefix``), in dependency order."""
    return {
        "ocsf_api_activity": api_activity_sql(f"{prefix}cloudtrail"),
        "ocsf_authentication": authentication_sql(f"{prefix}cloudtrail"),
        "ocsf_account_change": account_change_sql(f"{prefix}cloudtrail"),
        "ocsf_detection_finding": detection_finding_sql(f"{prefix}guardduty_latest", f"{prefix}alerts"),
    }


def register(con: duckdb.DuckDBPyConnection, prefix: str = "", with_alerts: bool = True) -> None:
    """Create the OCSF views on a connection that already has the lake's views."""
    for name, sql in view_sql(prefix).items():
        if name == "ocsf_detection_finding" and not with_alerts:
            sql = detection_finding_sql(f"{prefix}guardduty_latest", None)
        con.execute(f"CREATE OR REPLACE VIEW {prefix}{name} AS {sql}")
