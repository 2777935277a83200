"""Factories for single CloudTrail records and GuardDuty findings, shaped as AWS writes them.

Every factory takes ``**overrides`` that deep-merge into the default record: a dict merges
key by key, any other value replaces, ``None`` removes the key, ``NULL`` writes a JSON null
and ``Replace(value)`` replaces a nested dict instead of merging into it. The identity helpers
(``iam_user``, ``root``, ...) and the GuardDuty resource helpers return ``Whole`` dicts, which
replace too: ``userIdentity=root(account)`` is exactly the root identity, while
``userIdentity={"type": "Root"}`` changes only the type.

Defaults are deterministic: ids come from a stable hash of their inputs or from a process-wide
counter, never from the wall clock or the global random generator. Pass ``rng`` to draw ids
from a seeded ``random.Random`` instead.
"""

from __future__ import annotations

import copy
import random
from datetime import datetime
from typing import Any

from pipeline.synth.catalog import order_record
from pipeline.synth.findings import guardduty_defaults
from pipeline.synth.ids import SEQ, Whole, ct_time, gd_time, new_uuid, stable_hex, stable_id

__all__ = [
    "NULL", "Replace", "Whole", "deep_merge", "stable_id", "new_uuid", "ct_time", "gd_time",
    "tls_details", "iam_user", "assumed_role", "root", "aws_service", "sso_user",
    "make_cloudtrail_record", "make_console_login", "make_guardduty_finding",
    "DEFAULT_ACCOUNT", "DEFAULT_TIME", "UA_CLI", "UA_BROWSER", "UA_BOTO3",
]

DEFAULT_ACCOUNT = "111111111111"
DEFAULT_TIME = "2026-11-01T10:00:00Z"
UA_CLI = ("aws-cli/2.18.2 md/awscrt#0.22.0 ua/2.0 os/macos#23.6.0 md/arch#arm64 lang/python#3.12.6 "
          "md/pyimpl#CPython cfg/retry-mode#standard md/installer#source md/prompt#off")
UA_BROWSER = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/130.0.0.0 Safari/537.36")
UA_BOTO3 = ("Boto3/1.35.40 md/Botocore#1.35.40 ua/2.0 os/linux#5.10.226-214.880.amzn2.x86_64 md/arch#x86_64 "
            "lang/python#3.12.7 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.35.40")



class _Null:
    """Marker for an explicit JSON null in overrides (``None`` removes a key)."""

    def __repr__(self) -> str:
        return "NULL"


NULL = _Null()


class Replace:
    """Wrap an override value to replace a nested dict instead of merging into it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _materialise(value: Any) -> Any:
    if value is NULL:
        return None
    if isinstance(value, Replace):
        return _materialise(value.value)
    if isinstance(value, dict):
        return {k: _materialise(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_materialise(v) for v in value]
    return value


def deep_merge(base: dict, overrides: dict) -> dict:
    """Return a new dict: ``overrides`` merged into ``base`` (neither is modified)."""
    out = copy.deepcopy(base)
    _merge_into(out, overrides)
    return out


def _merge_into(target: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and not isinstance(value, Whole) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = _materialise(value)


# ---------------------------------------------------------------------------- TLS

def tls_details(host: str, version: str = "TLSv1.3") -> dict:
    suite = "TLS_AES_128_GCM_SHA256" if version == "TLSv1.3" else "ECDHE-RSA-AES128-GCM-SHA256"
    return {"tlsVersion": version, "cipherSuite": suite, "clientProvidedHostHeader": host}


# ---------------------------------------------------------------------------- identities

def _attributes(created: str, mfa: bool) -> dict:
    return {"creationDate": created, "mfaAuthenticated": "true" if mfa else "false"}


def iam_user(name: str = "alice", account: str = DEFAULT_ACCOUNT, *, mfa: bool | None = True,
             access_key: str | None = None, created: str = "2026-11-01T09:55:00Z") -> dict:
    """An IAM user. ``mfa=None``: long-term ``AKIA`` key, no session; otherwise a session
    (console or GetSessionToken) with ``mfaAuthenticated`` set accordingly."""
    ident = {
        "type": "IAMUser",
        "principalId": stable_id("AIDA", account, name, length=17),
        "arn": f"arn:aws:iam::{account}:user/{name}",
        "accountId": account,
        "accessKeyId": access_key or stable_id("AKIA" if mfa is None else "ASIA", account, name, "key"),
        "userName": name,
    }
    if mfa is not None:
        ident["sessionContext"] = {"attributes": _attributes(created, mfa)}
    return Whole(ident)


def assumed_role(role: str = "app-role", session: str = "session", account: str = DEFAULT_ACCOUNT, *,
                 mfa: bool = False, path: str = "/", access_key: str | None = None,
                 created: str = "2026-11-01T09:55:00Z", extra_context: dict | None = None) -> dict:
    """A role session (``arn:aws:sts::<account>:assumed-role/<role>/<session>``)."""
    role_id = stable_id("AROA", account, role, length=17)
    context: dict = {
        "sessionIssuer": {"type": "Role", "principalId": role_id,
                          "arn": f"arn:aws:iam::{account}:role{path}{role}",
                          "accountId": account, "userName": role},
    }
    context.update(extra_context or {})
    context["attributes"] = _attributes(created, mfa)
    return Whole({
        "type": "AssumedRole",
        "principalId": f"{role_id}:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
        "accountId": account,
        "accessKeyId": access_key or stable_id("ASIA", account, role, session),
        "sessionContext": context,
    })


def sso_user(user: str = "alice@example.com", account: str = DEFAULT_ACCOUNT, *,
             permission_set: str = "ReadOnlyAccess", idc_region: str = "us-east-1", mfa: bool = False,
             access_key: str | None = None, created: str = "2026-11-01T09:55:00Z") -> dict:
    """An IAM Identity Center user: a session of an ``AWSReservedSSO_`` role federated via SAML."""
    role = f"AWSReservedSSO_{permission_set}_{stable_hex(account, permission_set, length=16)}"
    return assumed_role(role, user, account, mfa=mfa, access_key=access_key, created=created,
                        path=f"/aws-reserved/sso.amazonaws.com/{idc_region}/",
                        extra_context={"webIdFederationData": {}})


def root(account: str = DEFAULT_ACCOUNT, *, mfa: bool = True, access_key: str | None = None,
         created: str = "2026-11-01T09:55:00Z") -> dict:
    return Whole({
        "type": "Root",
        "principalId": account,
        "arn": f"arn:aws:iam::{account}:root",
        "accountId": account,
        "accessKeyId": access_key or stable_id("ASIA", account, "root"),
        "sessionContext": {"attributes": _attributes(created, mfa)},
    })


def aws_service(service: str = "lambda.amazonaws.com") -> dict:
    return Whole({"type": "AWSService", "invokedBy": service})


# ---------------------------------------------------------------------------- CloudTrail

def _ct_defaults(rng: random.Random | None) -> dict:
    return {
        "eventVersion": "1.09",
        "userIdentity": iam_user("alice", DEFAULT_ACCOUNT, mfa=True),
        "eventTime": DEFAULT_TIME,
        "eventSource": "ec2.amazonaws.com",
        "eventName": "DescribeInstances",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": UA_CLI + " md/command#ec2.describe-instances",
        "requestParameters": {
            "instancesSet": {}, "filterSet": {"items": [{"name": "instance-state-name",
                                                         "valueSet": {"items": [{"value": "running"}]}}]},
        },
        "responseElements": None,
        "requestID": new_uuid(rng),
        "eventID": new_uuid(rng),
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": DEFAULT_ACCOUNT,
        "eventCategory": "Management",
        "tlsDetails": tls_details("ec2.us-east-1.amazonaws.com"),
    }


def make_cloudtrail_record(*, rng: random.Random | None = None, **overrides: Any) -> dict:
    """One CloudTrail record. Defaults: IAM user ``alice`` (MFA session) in 111111111111,
    us-east-1, a successful read-only ``ec2:DescribeInstances``.

    ``eventTime`` may be a ``datetime``. When ``userIdentity`` is overridden with a different
    ``accountId`` and ``recipientAccountId`` is not given, the recipient follows it.
    """
    if isinstance(overrides.get("eventTime"), datetime):
        overrides["eventTime"] = ct_time(overrides["eventTime"])
    record = deep_merge(_ct_defaults(rng), overrides)
    acct = (record.get("userIdentity") or {}).get("accountId")
    if "recipientAccountId" not in overrides and acct and record.get("recipientAccountId"):
        record["recipientAccountId"] = acct
    return order_record(record)


def make_console_login(user: str = "alice", account: str = DEFAULT_ACCOUNT, *, success: bool = True,
                       mfa: bool = True, ip: str = "203.0.113.10", event_time: str | datetime = DEFAULT_TIME,
                       identity: dict | None = None, user_agent: str = UA_BROWSER,
                       rng: random.Random | None = None, **overrides: Any) -> dict:
    """A ``ConsoleLogin`` event. ``identity`` replaces the IAM user (e.g. ``root(account)``).
    A failed login carries no ARN, an empty access key and ``MFAUsed: "No"``."""
    if identity is None:
        identity = {"type": "IAMUser", "principalId": stable_id("AIDA", account, user, length=17),
                    "arn": f"arn:aws:iam::{account}:user/{user}", "accountId": account,
                    "accessKeyId": "", "userName": user}
    else:
        identity = {k: v for k, v in identity.items() if k != "sessionContext"}
        identity["accessKeyId"] = ""
        account = identity.get("accountId", account)
    if not success:
        identity.pop("arn", None)
    used_mfa = mfa and success
    extra = {"LoginTo": "https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true"
                        "&state=hashArgsFromTB_us-east-1_b8c2a2a0c7e1f3d4",
             "MobileVersion": "No", "MFAUsed": "Yes" if used_mfa else "No"}
    if used_mfa and identity["type"] == "IAMUser":
        extra["MFAIdentifier"] = f"arn:aws:iam::{account}:mfa/{identity.get('userName', user)}"
    record = {
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": ct_time(event_time),
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": "us-east-1",
        "sourceIPAddress": ip,
        "userAgent": user_agent,
        "requestParameters": None,
        "responseElements": {"ConsoleLogin": "Success" if success else "Failure"},
        "additionalEventData": extra,
        "eventID": new_uuid(rng),
        "readOnly": False,
        "eventType": "AwsConsoleSignIn",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
        "tlsDetails": tls_details("signin.aws.amazon.com"),
    }
    if not success:
        record["errorMessage"] = "Failed authentication"
    return order_record(deep_merge(record, overrides) if overrides else record)


# ---------------------------------------------------------------------------- GuardDuty

def make_guardduty_finding(*, rng: random.Random | None = None, **overrides: Any) -> dict:
    """One GuardDuty finding as GetFindings / the S3 export gives it (camelCase keys).

    The default is ``UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS`` on an
    access key in 111111111111, us-east-1. Overriding ``type`` picks a matching resource and action
    (``:EC2/`` types get an Instance and a network action, ``:S3/`` an S3 bucket), plus severity,
    title and description, before the other overrides merge in.
    """
    ftype = overrides.get("type", "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS")
    base = guardduty_defaults(
        ftype,
        account=str(overrides.get("accountId", DEFAULT_ACCOUNT)),
        region=str(overrides.get("region", "us-east-1")),
        finding_id=overrides.get("id") or (rng.randbytes(16).hex() if rng else stable_hex("gd-seq", next(SEQ))),
    )
    return deep_merge(base, overrides)
