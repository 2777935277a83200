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


# -- documentation: where each attribute comes from (docs/schema.md is generated from this) ------------

_CT_COMMON = {
    "class_uid": "constant", "category_uid": "constant", "activity_id": "see the view's activity rule",
    "type_uid": "class_uid * 100 + activity_id", "time": "event_time (epoch ms)", "time_dt": "event_time",
    "severity_id": "1 (Informational)", "status_id": "1 Success when errorCode and errorMessage are NULL, else 2 Failure",
    "status_code": "errorCode", "status_detail": "errorMessage",
    "metadata.uid": "eventID", "metadata.event_code": "eventType", "metadata.product.name": "'CloudTrail'",
    "metadata.product.vendor_name": "'AWS'", "metadata.product.version": "eventVersion",
    "cloud.provider": "'AWS'", "cloud.region": "awsRegion", "cloud.account.uid": "recipientAccountId",
    "actor.user.type": "userIdentity.type (type_id 99: AWS's own vocabulary)", "actor.user.uid": "userIdentity.arn",
    "actor.user.uid_alt": "userIdentity.principalId", "actor.user.name": "userIdentity.userName (else the session issuer's)",
    "actor.user.credential_uid": "userIdentity.accessKeyId", "actor.user.account.uid": "userIdentity.accountId",
    "actor.invoked_by": "userIdentity.invokedBy", "actor.idp.name": "userIdentity.identityProvider",
    "actor.session.created_time": "userIdentity.sessionContext.attributes.creationDate",
    "actor.session.is_mfa": "userIdentity.sessionContext.attributes.mfaAuthenticated = 'true'",
    "actor.session.issuer": "userIdentity.sessionContext.sessionIssuer.arn",
    "src_endpoint.ip": "sourceIPAddress when it is an address", "src_endpoint.domain": "sourceIPAddress when it is a service name",
    "src_endpoint.uid": "vpcEndpointId", "http_request.user_agent": "userAgent",
    "event_date": "lake partition (not OCSF)", "account_id": "lake partition (not OCSF)", "region": "lake partition (not OCSF)",
}
SOURCES: dict[str, dict[str, str]] = {
    "ocsf_api_activity": {
        **_CT_COMMON,
        "activity_id": "readOnly → 2 Read; else the eventName verb: Create/Put/Add/Attach/Run/Start/... 1 Create, "
                       "Get/Describe/List/... 2 Read, Update/Modify/Set/Stop/Tag/... 3 Update, "
                       "Delete/Remove/Detach/Terminate/Revoke/Disable/... 4 Delete, else 99 Other",
        "api.operation": "eventName", "api.version": "apiVersion", "api.service.name": "eventSource",
        "api.request.uid": "requestID", "api.request.data": "requestParameters", "api.response.error": "errorCode",
        "api.response.error_message": "errorMessage", "api.response.data": "responseElements",
        "resources[].uid": "resources[].ARN", "resources[].type": "resources[].type",
    },
    "ocsf_authentication": {
        **_CT_COMMON,
        "activity_id": "ConsoleLogin, ExternalIdPDirectoryLogin, UserAuthentication, CredentialVerification, SwitchRole "
                       "→ 1 Logon; ConsoleLogout → 2 Logoff; else 99 Other",
        "status_id": "2 Failure when responseElements.ConsoleLogin = 'Failure' or an error is set, else 1 Success",
        "is_mfa": "additionalEventData.MFAUsed = 'Yes'",
        "is_remote": "true", "service.name": "eventSource", "dst_endpoint.svc_name": "additionalEventData.LoginTo",
        "unmapped.data": "responseElements",
    },
    "ocsf_account_change": {
        **_CT_COMMON,
        "activity_id": "CreateUser 1 Create; CreateLoginProfile 2 Enable; ChangePassword 3 Password Change; "
                       "UpdateLoginProfile 4 Password Reset; DeleteLoginProfile 5 Disable; DeleteUser 6 Delete; "
                       "AttachUserPolicy, PutUserPolicy, AddUserToGroup 7 Attach Policy; DetachUserPolicy, "
                       "DeleteUserPolicy, RemoveUserFromGroup 8 Detach Policy; EnableMFADevice 10; DeactivateMFADevice, "
                       "DeleteVirtualMFADevice 11; access keys, SSH keys, certificates, UpdateUser, permissions "
                       "boundaries 99 Other",
        "user.name": "requestParameters.userName, else the caller's userName",
        "user.uid": "responseElements.user.arn (CreateUser), else the caller's ARN when acting on itself",
        "user.uid_alt": "responseElements.user.userId", "user.credential_uid":
            "responseElements.accessKey.accessKeyId, else requestParameters.accessKeyId",
        "user.account.uid": "recipientAccountId", "policy.uid": "requestParameters.policyArn",
        "policy.name": "requestParameters.policyName, else the policy ARN's last segment",
        "policy.group.name": "requestParameters.groupName",
    },
    "ocsf_detection_finding": {
        "class_uid": "constant", "category_uid": "constant",
        "activity_id": "GuardDuty: 1 Create when updatedAt = createdAt, else 2 Update; alerts: 1 Create",
        "type_uid": "class_uid * 100 + activity_id", "time": "GuardDuty: updatedAt; alerts: detected_at (epoch ms)",
        "time_dt": "the same as a timestamp",
        "severity_id": "GuardDuty: severity <4 2 Low, <7 3 Medium, <9 4 High, else 5 Critical; alerts: info 1 … critical 5",
        "status_id": "GuardDuty: archived 3 Suppressed, else 1 New; alerts: 1 New", "message": "title",
        "count": "GuardDuty: service.count; alerts: event_count",
        "metadata.uid": "GuardDuty: id; alerts: id", "metadata.product.name": "'GuardDuty' or 'soclake'",
        "metadata.product.version": "GuardDuty: schemaVersion",
        "finding_info.uid": "GuardDuty: arn; alerts: id", "finding_info.title": "title",
        "finding_info.desc": "GuardDuty: description; alerts: runbook", "finding_info.types": "GuardDuty: [type]; alerts: [practice]",
        "finding_info.created_time": "GuardDuty: createdAt; alerts: first_detected_at",
        "finding_info.modified_time": "GuardDuty: updatedAt; alerts: detected_at",
        "finding_info.first_seen_time": "first_seen (service.eventFirstSeen)", "finding_info.last_seen_time": "last_seen",
        "finding_info.product_uid": "GuardDuty: detector_id",
        "finding_info.analytic.uid": "alerts: rule_id", "finding_info.analytic.version": "alerts: rule_version",
        "finding_info.attacks[].tactic.uid": "alerts: tactics", "finding_info.attacks[].technique.uid": "alerts: techniques",
        "finding_info.related_events[].uid": "alerts: evidence event_id / finding_id",
        "cloud.account.uid": "GuardDuty: accountId; alerts: account_id", "cloud.region": "region",
        "resources[].uid": "GuardDuty: instance_id, access_key_id, bucket ARN, else the finding id; alerts: resources",
        "resources[].type": "GuardDuty: resource_type",
        "evidences[].actor.user.uid": "GuardDuty: principal_id; alerts: actor",
        "evidences[].actor.user.name": "GuardDuty: user_name", "evidences[].actor.user.credential_uid": "GuardDuty: access_key_id",
        "evidences[].src_endpoint.ip": "GuardDuty: remote_ip; alerts: the first source IP",
        "evidences[].src_endpoint.location.country": "GuardDuty: remote_country", "evidences[].api.operation": "GuardDuty: api",
        "event_date": "lake partition (not OCSF)", "account_id": "lake partition (not OCSF)", "region": "lake partition (not OCSF)",
    },
}
#: Sources every view shares (captions, constants), used where a view's own table says nothing.
GENERIC = {
    "class_name": "caption of class_uid", "category_name": "caption of category_uid",
    "activity_name": "caption of activity_id", "type_name": "class caption: activity caption",
    "severity": "caption of severity_id", "status": "caption of status_id",
    "metadata.version": f"'{OCSF_VERSION}'", "metadata.profiles": "['cloud', 'datetime']",
    "cloud.account.type": "'AWS Account'", "cloud.account.type_id": "10 (AWS Account)",
    "actor.user.account.type": "'AWS Account'", "actor.user.account.type_id": "10 (AWS Account)",
    "user.account.type": "'AWS Account'", "user.account.type_id": "10 (AWS Account)",
    "actor.user.type_id": "99 Other (0 Unknown without a type)", "actor.session.credential_uid": "userIdentity.accessKeyId",
    "metadata.event_code": "GuardDuty, alerts: NULL", "metadata.product.vendor_name": "'AWS' (alerts: 'soclake')",
    "cloud.provider": "'AWS'",
    "finding_info.analytic.name": "alerts: rule_id", "finding_info.analytic.type_id": "alerts: 1 (Rule)",
    "finding_info.analytic.type": "alerts: 'Rule'",
}
CLASS_OF = {"ocsf_api_activity": "API Activity (6003)", "ocsf_authentication": "Authentication (3002)",
            "ocsf_account_change": "Account Change (3001)", "ocsf_detection_finding": "Detection Finding (2004)"}


def _flatten(name: str, t) -> list[tuple[str, str]]:
    if t.id == "struct":
        return [p for child, ct in t.children for p in _flatten(f"{name}.{child}", ct)]
    if t.id == "list" and t.children[0][1].id == "struct":
        return _flatten(f"{name}[]", t.children[0][1])
    return [(name, str(t))]


def columns(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str]]:
    """(attribute path, DuckDB type) of every leaf of a view."""
    rel = con.sql(f"SELECT * FROM {view}")
    return [p for name, t in zip(rel.columns, rel.types) for p in _flatten(name, t)]


def mapping_markdown(con: duckdb.DuckDBPyConnection) -> list[str]:
    """docs/schema.md's OCSF section, from the views on ``con`` (``views.empty_ocsf_connection()``)."""
    out = ["## OCSF views", "",
           f"OCSF {OCSF_VERSION} views of the same files (`pipeline/ocsf.py`), for tools and analysts that speak OCSF "
           "(Amazon Security Lake's schema). Attribute names and nesting are OCSF's; the CloudTrail mapping follows "
           "Amazon Security Lake's. `timestamp_t` attributes are epoch milliseconds, each with a `*_dt` timestamp "
           "twin (the datetime profile); the partition columns stay beside them so filters on `event_date`, "
           "`account_id` and `region` prune folders. Rows are validated in `tests/test_ocsf.py` with the OCSF "
           "schema shipped by pydantic-ocsf.", ""]
    for view, sources in SOURCES.items():
        out += [f"### `{view}`: {CLASS_OF[view]}", "", "| attribute | type | from |", "|---|---|---|"]
        for path, typ in columns(con, view):
            src = sources.get(path) or GENERIC.get(path) or sources.get(f"actor.{path}") or GENERIC.get(f"actor.{path}", "")
            src = src.replace("|", "\\|")
            out.append(f"| `{path}` | {typ.lower()} | {src} |")
        out.append("")
    return out
