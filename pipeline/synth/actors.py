"""The principals of a synthetic organisation and what each of them does.

A management account (people, Organizations), a security account (GuardDuty delegated admin,
security automation) and workload accounts (Lambda functions, EC2 instances, ECS tasks, CI,
AWS services assuming roles, a legacy CI user and a backup user with long-term keys).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.synth import records as R
from pipeline.synth.catalog import order_record
from pipeline.synth.ids import stable_hex, stable_id

UA_CLI_LINUX = ("aws-cli/2.22.0 md/awscrt#0.22.0 ua/2.0 os/linux#6.8.0-1017-azure md/arch#x86_64 lang/python#3.12.6 "
                "md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.24 md/prompt#off")
UA_LAMBDA = R.UA_BOTO3.replace("cfg/retry-mode", "exec-env#AWS_Lambda_python3.12 cfg/retry-mode")
UA_ECS = ("aws-sdk-java/2.28.21 Linux/5.10.226-214.879.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/21.0.4+7-LTS Java/21.0.4 "
          "vendor/Amazon.com_Inc. md/internal exec-env/AWS_ECS_FARGATE io/sync http/Apache cfg/retry-mode/legacy")
UA_SSM_AGENT = "aws-sdk-go/1.55.5 (go1.22.7; linux; amd64) amazon-ssm-agent/3.3.987.0"
UA_CW_AGENT = "CWAgent/1.300049.1 (go1.22.7; linux; amd64) aws-sdk-go/1.55.5 (go1.22.7; linux; amd64)"
UA_TERRAFORM = ("APN/1.0 HashiCorp/1.0 Terraform/1.9.8 (+https://www.terraform.io) terraform-provider-aws/5.72.1 "
                "aws-sdk-go-v2/1.32.2 ua/2.1 os/linux "
                "lang/go#1.23.2 md/GOOS#linux md/GOARCH#amd64")
UA_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"
UA_BACKUP = "Boto3/1.34.162 md/Botocore#1.34.162 ua/2.0 os/linux#6.1.112-124.190.amzn2023.x86_64 md/arch#x86_64 lang/python#3.11.9 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.162"
CONSOLE_UAS = (("AWS Internal", True), (R.UA_BROWSER, True), (UA_FIREFOX, True))
CLI_UAS = ((R.UA_CLI, False),)

OFFICE_IPS = tuple(f"203.0.113.{n}" for n in (10, 11, 12, 17, 23, 24, 38, 41, 52, 66))
CI_IPS = tuple(f"4.227.{a}.{b}" for a, b in ((128, 9), (130, 77), (131, 201), (133, 14), (139, 180))) + \
    tuple(f"20.57.{a}.{b}" for a, b in ((40, 3), (45, 122), (47, 61)))

READ_ALL = {
    "ec2:DescribeInstances": 8, "ec2:DescribeSecurityGroups": 3, "ec2:DescribeVpcs": 1, "ec2:DescribeSubnets": 1,
    "ec2:DescribeVolumes": 1, "ec2:DescribeInstanceStatus": 2, "ec2:DescribeRegions": 1, "s3:ListBuckets": 3,
    "s3:GetBucketLocation": 2, "s3:GetBucketPolicy": 1, "s3:GetBucketEncryption": 0.5, "iam:ListRoles": 1, "iam:GetRole": 1.5,
    "iam:ListAttachedRolePolicies": 0.7, "lambda:ListFunctions20150331": 2, "lambda:GetFunction20150331v2": 2,
    "logs:DescribeLogGroups": 2, "logs:DescribeLogStreams": 2, "logs:FilterLogEvents": 2, "logs:StartQuery": 1,
    "cloudformation:DescribeStacks": 2, "cloudformation:ListStacks": 1, "dynamodb:ListTables": 1,
    "dynamodb:DescribeTable": 1.5, "monitoring:DescribeAlarms": 2, "monitoring:GetMetricData": 3,
    "ssm:DescribeInstanceInformation": 1, "secretsmanager:ListSecrets": 1, "kms:ListAliases": 1,
    "cloudtrail:LookupEvents": 0.5, "health:DescribeEventAggregates": 0.5, "sts:GetCallerIdentity": 1,
    "elasticloadbalancing:DescribeLoadBalancers": 1, "elasticloadbalancing:DescribeTargetHealth": 1,
    "rds:DescribeDBInstances": 1, "ecs:DescribeServices": 1, "ecs:ListTasks": 0.5,
}
WRITES = {"ec2:CreateTags": 0.4, "ec2:StartInstances": 0.1, "ec2:StopInstances": 0.1, "ssm:StartSession": 0.2,
          "ec2:AuthorizeSecurityGroupIngress": 0.05, "ec2:RevokeSecurityGroupIngress": 0.05, "ssm:PutParameter": 0.1,
          "logs:PutRetentionPolicy": 0.05, "s3:PutBucketTagging": 0.05, "iam:TagRole": 0.05}


@dataclass
class Actor:
    """A principal: how its identity looks, where it calls from and which APIs it calls."""

    name: str
    kind: str
    weight: float
    apis: dict[str, float]
    identity: Callable[[str, int], dict] | None = None  # (creationDate, session number) -> userIdentity
    ips: tuple[str, ...] = OFFICE_IPS
    uas: tuple[tuple[str, bool], ...] = CLI_UAS  # (userAgent, from the console)
    denied: tuple[str, ...] = ()  # at most three API keys this principal is sometimes refused
    deny_rate: float = 0.0
    invoked_by: str | None = None  # AWS service calling on the principal's behalf
    vpce: bool = False
    fixed: list[tuple[dict, float]] = field(default_factory=list)  # prebuilt records: (fields, weight)
    info: dict[str, Any] = field(default_factory=dict)


def _sso(acct: str, user: str, pset: str) -> Callable[[str, int], dict]:
    return lambda created, n: R.sso_user(user, acct, permission_set=pset, created=created,
                                         access_key=stable_id("ASIA", acct, user, n))


def _role(acct: str, role: str, session: str, path: str = "/", **kw: Any) -> Callable[[str, int], dict]:
    return lambda created, n: R.assumed_role(role, session, acct, path=path, created=created,
                                             access_key=stable_id("ASIA", acct, role, session, n), **kw)


def _iam_session(acct: str, user: str) -> Callable[[str, int], dict]:
    return lambda created, n: R.iam_user(user, acct, mfa=True, created=created,
                                         access_key=stable_id("ASIA", acct, user, n))


def _static(ident: dict) -> Callable[[str, int], dict]:
    return lambda created, n: ident


def _aws_ips(acct: str, name: str, k: int = 3) -> tuple[str, ...]:
    h = stable_hex(acct, name, "ip", length=24)
    firsts = (3, 54, 52)
    return tuple(f"{firsts[i % 3]}.{int(h[i*4:i*4+2], 16) % 250 + 2}.{int(h[i*4+2:i*4+4], 16)}.{int(h[i*2:i*2+2], 16) % 250 + 3}"
                 for i in range(k))


def _login(acct: str, ident: dict, ip: str, mfa: bool, saml: bool = False, ua: str = R.UA_BROWSER) -> dict:
    rec = R.make_console_login(account=acct, identity=ident, ip=ip, mfa=mfa, user_agent=ua)
    if saml:
        rec["additionalEventData"]["SamlProviderArn"] = (
            f"arn:aws:iam::{acct}:saml-provider/AWSSSO_{stable_hex(acct, 'saml', length=16)}_DO_NOT_DELETE")
    return rec


def people(acct: str, role: str) -> list[Actor]:
    """SSO users (most humans) and the few IAM users with console access and MFA."""
    sets = {"management": [("alice@example.com", "AWSAdministratorAccess"), ("bob@example.com", "AWSReadOnlyAccess"),
                           ("carol@example.com", "AWSPowerUserAccess")],
            "security": [("dave@example.com", "SecurityAudit"), ("erin@example.com", "AWSReadOnlyAccess")],
            "workload": [("frank@example.com", "AWSPowerUserAccess"), ("grace@example.com", "DeveloperAccess"),
                         ("heidi@example.com", "AWSReadOnlyAccess"), ("ivan@example.com", "DeveloperAccess")]}[role]
    out = []
    for k, (user, pset) in enumerate(sets):
        apis = dict(READ_ALL)
        if role == "management":
            apis.update({"organizations:ListAccounts": 2, "organizations:DescribeOrganization": 1,
                         "organizations:ListPoliciesForTarget": 1, "ce:GetCostAndUsage": 1})
        if role == "security":
            apis.update({"guardduty:ListFindings": 4, "guardduty:GetFindings": 4, "guardduty:ListDetectors": 1,
                         "securityhub:GetFindings": 3, "cloudtrail:DescribeTrails": 1, "cloudtrail:GetTrailStatus": 1,
                         "iam:GetAccountAuthorizationDetails": 0.3, "iam:ListUsers": 1})
        if "ReadOnly" not in pset and pset != "SecurityAudit":
            apis.update(WRITES)
        ident = R.sso_user(user, acct, permission_set=pset)
        ident["accessKeyId"] = ""
        login = _login(acct, {k2: v for k2, v in ident.items() if k2 != "sessionContext"}, OFFICE_IPS[k], False, saml=True)
        out.append(Actor(user, "sso", 3.0, apis, _sso(acct, user, pset), ips=OFFICE_IPS[k::3],
                         uas=CONSOLE_UAS + CLI_UAS, deny_rate=0.03 if k % 2 else 0.015,
                         denied=(("secretsmanager:GetSecretValue", "ssm:GetParameter") if "ReadOnly" in pset else
                                 ("iam:GetAccountAuthorizationDetails", "kms:DescribeKey", "ec2:DescribeSnapshots")),
                         fixed=[(login, 0.25)], info={"permission_set": pset}))
    if role == "management":
        apis = {k2: v for k2, v in READ_ALL.items() if not k2.startswith(("logs:", "monitoring:"))}
        apis.update({"iam:ListUsers": 1, "iam:ListMFADevices": 0.5, "iam:GetAccountSummary": 0.5})
        login = _login(acct, R.iam_user("jdoe", acct, mfa=None) | {"accessKeyId": ""}, OFFICE_IPS[3], True)
        failed = R.make_console_login("jdoe", acct, success=False, ip=OFFICE_IPS[3])
        out.append(Actor("jdoe", "iam_user_console", 1.5, apis, _iam_session(acct, "jdoe"), ips=OFFICE_IPS[3:5],
                         uas=CONSOLE_UAS, fixed=[(login, 0.3), (failed, 0.01)]))
        # m.rossi uses long-term keys from the CLI and has a console password without MFA that she never uses
        key = R.iam_user("m.rossi", acct, mfa=None)
        out.append(Actor("m.rossi", "iam_user_key", 0.6, {"s3:ListBuckets": 2, "ce:GetCostAndUsage": 3,
                                                          "organizations:ListAccounts": 1, "sts:GetCallerIdentity": 1},
                         _static(key), ips=OFFICE_IPS[6:8], uas=CLI_UAS))
    return out


def workloads(acct: str, inv: dict[str, Any]) -> list[Actor]:
    out = []
    for k, fn in enumerate(inv["functions"]):
        apis = {"kms:Decrypt": 5, "secretsmanager:GetSecretValue": 3, "ssm:GetParameter": 3, "ssm:GetParameters": 1,
                "dynamodb:DescribeTable": 2, "sts:GetCallerIdentity": 1, "sqs:GetQueueUrl": 1, "sqs:GetQueueAttributes": 1}
        out.append(Actor(fn, "lambda", (5, 3, 1, 4, 1)[k], apis, _role(acct, f"{fn}-role", fn, "/service-role/"),
                         ips=_aws_ips(acct, fn), uas=((UA_LAMBDA, False),),
                         denied=("kms:Decrypt",) if k == 1 else (), deny_rate=0.01 if k == 1 else 0.0))
    for inst in inv["instances"][:3]:
        ip = f"10.0.{int(stable_hex(inst, length=2), 16) % 64}.{int(stable_hex(inst, 'b', length=2), 16) % 250 + 4}"
        apis = {"ssm:UpdateInstanceInformation": 6, "ssm:ListInstanceAssociations": 6, "ec2:DescribeTags": 3,
                "logs:CreateLogStream": 1, "logs:DescribeLogStreams": 2, "kms:Decrypt": 1, "sts:GetCallerIdentity": 0.5,
                "s3:GetBucketLocation": 1}
        out.append(Actor(inst, "ec2", 2.0, apis, _role(acct, "web-instance-role", inst,
                                                       extra_context={"ec2RoleDelivery": "2.0"}),
                         ips=(ip,), uas=((UA_SSM_AGENT, False), (UA_CW_AGENT, False)), vpce=True))
    task = stable_hex(acct, "task", length=32)
    out.append(Actor("orders-api-task", "ecs", 6.0, {
        "secretsmanager:GetSecretValue": 2, "kms:Decrypt": 3, "kms:GenerateDataKey": 3, "dynamodb:DescribeTable": 1,
        "sqs:GetQueueUrl": 1, "sqs:GetQueueAttributes": 2, "sts:GetCallerIdentity": 0.5},
        _role(acct, "orders-api-task-role", task), ips=_aws_ips(acct, "nat", 2), uas=((UA_ECS, False),)))
    out.append(Actor("github-actions-deploy", "ci", 2.5, {
        "cloudformation:CreateChangeSet": 1, "cloudformation:DescribeChangeSet": 4, "cloudformation:ExecuteChangeSet": 1,
        "cloudformation:DescribeStacks": 4, "cloudformation:DescribeStackEvents": 4, "cloudformation:GetTemplateSummary": 1,
        "lambda:UpdateFunctionCode20150331v2": 1, "lambda:PublishVersion20150331": 1, "lambda:UpdateAlias20150331": 1,
        "lambda:GetFunctionConfiguration20150331v2": 3, "ecr:GetAuthorizationToken": 1, "ecr:BatchCheckLayerAvailability": 2,
        "ecr:PutImage": 0.5, "ecs:UpdateService": 0.5, "ecs:DescribeServices": 3, "s3:GetBucketLocation": 1,
        "s3:PutBucketPolicy": 0.05, "iam:GetRole": 1, "sts:GetCallerIdentity": 1},
        _role(acct, "github-actions-deploy", "GitHubActions", extra_context={"webIdFederationData": {
            "federatedProvider": f"arn:aws:iam::{acct}:oidc-provider/token.actions.githubusercontent.com",
            "attributes": {}}}),
        ips=CI_IPS, uas=((UA_CLI_LINUX, False),), denied=("iam:GetRole",), deny_rate=0.01))
    legacy = R.iam_user("ci-legacy", acct, mfa=None)
    out.append(Actor("ci-legacy", "iam_user_key", 2.0, {
        "ec2:DescribeInstances": 3, "ec2:DescribeSecurityGroups": 3, "ec2:DescribeSecurityGroupRules": 2,
        "ec2:DescribeVpcs": 2, "ec2:DescribeSubnets": 2, "ec2:DescribeRouteTables": 1, "ec2:DescribeImages": 1,
        "ec2:DescribeAvailabilityZones": 1, "s3:GetBucketPolicy": 1, "s3:GetBucketVersioning": 1, "s3:GetBucketAcl": 1,
        "s3:GetBucketTagging": 1, "s3:GetBucketLifecycle": 1, "iam:GetRole": 2, "iam:GetPolicy": 1,
        "iam:GetPolicyVersion": 1, "iam:ListRolePolicies": 1, "iam:GetRolePolicy": 1, "iam:PutRolePolicy": 0.02,
        "kms:DescribeKey": 1, "kms:GetKeyRotationStatus": 1, "sts:GetCallerIdentity": 1, "ec2:CreateTags": 0.2},
        _static(legacy), ips=CI_IPS[:3], uas=((UA_TERRAFORM, False),), denied=("ec2:DescribeImages",), deny_rate=0.01,
        info={"access_key": legacy["accessKeyId"], "arn": legacy["arn"]}))
    backup = R.iam_user("svc-backup", acct, mfa=None)
    out.append(Actor("svc-backup", "iam_user_key", 0.8, {
        "ec2:DescribeVolumes": 3, "ec2:DescribeSnapshots": 3, "ec2:CreateSnapshot": 1, "ec2:DeleteSnapshot": 0.7,
        "ec2:CreateTags": 1}, _static(backup), ips=_aws_ips(acct, "backup", 1), uas=((UA_BACKUP, False),)))
    return out


def governance(acct: str, role: str, inv: dict[str, Any]) -> list[Actor]:
    """AWS Config's service-linked role and AWS services assuming roles."""
    out = [Actor("AWSServiceRoleForConfig", "service_role", 6.0 if role == "workload" else 4.0, {
        "ec2:DescribeInstances": 2, "ec2:DescribeSecurityGroups": 3, "ec2:DescribeVpcs": 1, "ec2:DescribeSubnets": 1,
        "ec2:DescribeNetworkInterfaces": 2, "ec2:DescribeVolumes": 1, "ec2:DescribeRouteTables": 1,
        "s3:GetBucketPolicy": 2, "s3:GetBucketAcl": 2, "s3:GetBucketEncryption": 1, "s3:GetBucketVersioning": 1,
        "s3:GetBucketPublicAccessBlock": 2, "s3:GetBucketLogging": 1, "s3:GetBucketTagging": 1, "iam:GetRole": 1,
        "iam:ListAttachedRolePolicies": 1, "iam:ListRolePolicies": 1, "iam:GetPolicy": 1, "kms:DescribeKey": 1,
        "kms:GetKeyRotationStatus": 1, "lambda:GetFunction20150331v2": 1, "rds:DescribeDBInstances": 1,
        "dynamodb:DescribeTable": 1, "dynamodb:DescribeContinuousBackups": 1, "cloudtrail:DescribeTrails": 0.5,
        "secretsmanager:DescribeSecret": 1, "sqs:GetQueueAttributes": 1, "autoscaling:DescribeAutoScalingGroups": 1},
        _role(acct, "AWSServiceRoleForConfig", "AWSConfig-Describe", "/aws-service-role/config.amazonaws.com/"),
        ips=("config.amazonaws.com",), uas=(("config.amazonaws.com", False),), invoked_by="config.amazonaws.com",
        denied=("kms:GetKeyRotationStatus",), deny_rate=0.004)]
    fixed = []
    assume = [("lambda.amazonaws.com", f"{f}-role", "/service-role/", f, 3) for f in inv["functions"]]
    if role == "workload":
        assume += [("ecs-tasks.amazonaws.com", "orders-api-task-role", "/", stable_hex(acct, "task", length=32), 2)]
        assume += [("ec2.amazonaws.com", "web-instance-role", "/", i, 2) for i in inv["instances"][:3]]
    for service, rname, path, session, weight in assume:
        arn = f"arn:aws:iam::{acct}:role{path}{rname}"
        sess = R.assumed_role(rname, session, acct, path=path)
        rec = R.make_cloudtrail_record(
            userIdentity=R.Replace(R.aws_service(service)), eventSource="sts.amazonaws.com", eventName="AssumeRole",
            sourceIPAddress=service, userAgent=service, tlsDetails=None,
            requestParameters=R.Replace({"roleArn": arn, "roleSessionName": session}),
            responseElements={"credentials": {"accessKeyId": sess["accessKeyId"], "sessionToken":
                              "IQoJb3JpZ2luX2VjE" + stable_id("", acct, session, "tok", length=180,
                                                                alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
                              "expiration": "Nov 1, 2026, 11:00:00 PM"},
                              "assumedRoleUser": {"assumedRoleId": sess["principalId"], "arn": sess["arn"]}},
            resources=[{"accountId": acct, "type": "AWS::IAM::Role", "ARN": arn}], recipientAccountId=acct)
        rec = order_record(rec)
        fixed.append((rec, weight))
    out.append(Actor("aws-services", "aws_service", 3.0 if role == "workload" else 1.0, {}, None, fixed=fixed))
    return out


def org_actors(acct: str, role: str, inv: dict[str, Any]) -> list[Actor]:
    """All principals of one account. ``role`` is management, security or workload."""
    actors = people(acct, role) + governance(acct, role, inv)
    if role == "workload":
        actors += workloads(acct, inv)
    elif role == "security":
        actors.append(Actor("guardduty-forwarder", "lambda", 2.0, {
            "guardduty:ListFindings": 3, "guardduty:GetFindings": 3, "securityhub:GetFindings": 1,
            "sts:GetCallerIdentity": 0.5, "kms:Decrypt": 1},
            _role(acct, "guardduty-forwarder-role", "guardduty-forwarder", "/service-role/"),
            ips=_aws_ips(acct, "gdf"), uas=((UA_LAMBDA, False),)))
    return actors
