"""Injected attacks. Each scenario returns the CloudTrail records and GuardDuty findings it adds;
``generate_archive`` places the records into the log files of their account, region and time.

Attacker addresses come from the documentation range 198.51.100.0/24 (TEST-NET-2).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.synth import records as R
from pipeline.synth.actors import OFFICE_IPS
from pipeline.synth.background import Org
from pipeline.synth.catalog import order_record
from pipeline.synth.findings import access_key_resource, guardduty_defaults, instance_resource, remote_ip
from pipeline.synth.ids import gd_time, stable_hex, stable_id

ATTACKER_UA = "aws-cli/1.18.69 Python/3.8.10 Linux/6.5.0-kali3-amd64 botocore/1.16.19"
ADMIN_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"


@dataclass
class ScenarioContext:
    org: Org
    rng: random.Random
    start: int  # epoch seconds, inclusive
    end: int  # epoch seconds, exclusive

    def when(self, duration: int = 3600) -> int:
        """A working-hours moment such that ``duration`` seconds later is still inside the archive."""
        latest = self.end - duration - 900
        for _ in range(50):
            day = self.start + 86400 * self.rng.randrange(max(1, (self.end - self.start) // 86400))
            t = day - day % 86400 + 3600 * self.rng.randrange(8, 17) + self.rng.randrange(3600)
            if self.start + 900 <= t <= latest:
                return t
        return max(self.start + 60, min(latest, self.start + (self.end - self.start) // 2))

    def record(self, t: float, **fields: Any) -> dict:
        return R.make_cloudtrail_record(rng=self.rng, eventTime=R.ct_time(int(t)), **fields)


@dataclass
class Injection:
    name: str
    account: str
    region: str
    actor: str
    records: list[dict] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def _api(ctx: ScenarioContext, t: float, ident: dict, ip: str, ua: str, region: str, source: str, name: str,
         request: Any = None, response: Any = None, *, read_only: bool = False, error: tuple[str, str] | None = None,
         **extra: Any) -> dict:
    svc = source.split(".")[0]
    host = "iam.amazonaws.com" if svc == "iam" else f"{svc}.{region}.amazonaws.com"
    fields: dict[str, Any] = dict(
        userIdentity=R.Replace(ident), eventSource=source, eventName=name, awsRegion=region,
        sourceIPAddress=ip, userAgent=ua, requestParameters=R.Replace(request) if request is not None else R.NULL,
        responseElements=R.Replace(response) if response is not None else R.NULL, readOnly=read_only,
        recipientAccountId=ident.get("accountId"), tlsDetails=R.Replace(R.tls_details(host)), **extra)
    rec = ctx.record(t, **fields)
    if error:
        rec.update(errorCode=error[0], errorMessage=error[1], responseElements=None)
    return order_record(rec)


def _denied(service: str, action: str, arn: str) -> tuple[str, str]:
    if service == "ec2":
        return ("Client.UnauthorizedOperation", f"You are not authorized to perform this operation. User: {arn} is "
                f"not authorized to perform: ec2:{action} because no identity-based policy allows the ec2:{action} action")
    if service == "s3":
        return "AccessDenied", "Access Denied"
    code = "AccessDeniedException" if service in ("kms", "ssm", "logs", "ecr") else "AccessDenied"
    return code, (f"User: {arn} is not authorized to perform: {service}:{action} because no identity-based "
                  f"policy allows the {service}:{action} action")


def leaked_access_key(ctx: ScenarioContext) -> Injection:
    """A CI user's long-term key used from outside: denied discovery, a new admin user with a key,
    then CloudTrail and GuardDuty switched off; GuardDuty reports the key first."""
    org, rng = ctx.org, ctx.rng
    acct, home = org.workloads()[0], org.home
    ident = R.iam_user("ci-legacy", acct, mfa=None)
    key, arn, ip = ident["accessKeyId"], ident["arn"], f"198.51.100.{rng.randrange(20, 60)}"
    t0 = ctx.when(3600)
    inj = Injection("leaked_access_key", acct, home, arn,
                    details={"access_key": key, "source_ip": ip, "user": "ci-legacy"})

    def call(t: float, source: str, name: str, req: Any = None, resp: Any = None, region: str = home, **kw: Any) -> dict:
        rec = _api(ctx, t, ident, ip, ATTACKER_UA, region, source, name, req, resp, **kw)
        inj.records.append(rec)
        return rec

    t = t0
    call(t, "sts.amazonaws.com", "GetCallerIdentity", read_only=True)
    probes = [("iam", "ListUsers", {}), ("iam", "ListRoles", {}), ("iam", "ListGroups", {}), ("iam", "ListPolicies",
              {"scope": "Local"}), ("iam", "GetAccountAuthorizationDetails", {}), ("iam", "ListAccessKeys", {}),
              ("s3", "ListBuckets", {"Host": f"s3.{home}.amazonaws.com"}), ("ec2", "DescribeSnapshots",
              {"snapshotSet": {}, "ownersSet": {}, "restorableBySet": {}, "filterSet": {}}),
              ("lambda", "ListFunctions20150331", {}), ("secretsmanager", "ListSecrets", {}),
              ("ssm", "DescribeParameters", {}), ("dynamodb", "ListTables", {}), ("rds", "DescribeDBInstances", {}),
              ("kms", "ListKeys", {"limit": 1000}), ("organizations", "DescribeOrganization", {}),
              ("organizations", "ListAccounts", {}), ("logs", "DescribeLogGroups", {}), ("sns", "ListTopics", {}),
              ("ecr", "DescribeRepositories", {})]
    for svc, name, req in probes:
        t += rng.uniform(8, 25)
        call(t, f"{svc}.amazonaws.com", name, req, read_only=True,
             error=_denied(svc, name.rstrip("0123456789"), arn))
    discovery_end = t
    t += rng.uniform(30, 90)
    call(t, "cloudtrail.amazonaws.com", "DescribeTrails", {"includeShadowTrails": True}, read_only=True)
    t += rng.uniform(10, 30)
    call(t, "guardduty.amazonaws.com", "ListDetectors", {}, read_only=True)
    new_user = "backup-svc-2"
    new_key = stable_id("AKIA", acct, new_user, "key")
    t += rng.uniform(120, 300)
    call(t, "iam.amazonaws.com", "CreateUser", {"userName": new_user}, {"user": {
        "path": "/", "userName": new_user, "userId": stable_id("AIDA", acct, new_user, length=17),
        "arn": f"arn:aws:iam::{acct}:user/{new_user}", "createDate": _when_text(t)}})
    t += rng.uniform(20, 60)
    call(t, "iam.amazonaws.com", "AttachUserPolicy", {"userName": new_user, "policyArn": ADMIN_POLICY})
    t += rng.uniform(20, 60)
    call(t, "iam.amazonaws.com", "CreateAccessKey", {"userName": new_user}, {"accessKey": {
        "userName": new_user, "accessKeyId": new_key, "status": "Active", "createDate": _when_text(t)}})
    t += rng.uniform(300, 600)
    trail = f"arn:aws:cloudtrail:{home}:{acct}:trail/management-events"
    stop = call(t, "cloudtrail.amazonaws.com", "StopLogging", {"name": trail},
                resources=[{"accountId": acct, "type": "AWS::CloudTrail::Trail", "ARN": trail}])
    stop_time = t
    for region in org.regions:
        t += rng.uniform(20, 60)
        det = stable_hex(acct, region, "detector")
        call(t, "guardduty.amazonaws.com", "DeleteDetector", {"detectorId": det}, region=region)
    assert t - t0 < 3600, "the leaked key scenario must fit in an hour"
    where = remote_ip(ip, "Romania", "9009", "M247 Europe SRL")
    resource = access_key_resource(key, "ci-legacy", acct, "IAMUser")
    inj.findings.append(guardduty_defaults(
        "Discovery:IAMUser/AnomalousBehavior", account=acct, region=home, finding_id=rng.randbytes(16).hex(),
        created=gd_time(int(discovery_end) + 240, rng.randrange(1000)), resource=resource, ip=where, api="ListUsers"))
    inj.findings.append(guardduty_defaults(
        "Stealth:IAMUser/CloudTrailLoggingDisabled", account=acct, region=home, finding_id=rng.randbytes(16).hex(),
        created=gd_time(int(stop_time) + 8, rng.randrange(1000)), resource=resource, ip=where, api="StopLogging"))
    inj.details.update(new_user=new_user, new_access_key=new_key, trail=trail, stop_logging_event=stop["eventID"])
    return inj


def _when_text(t: float) -> str:
    """AWS's English date format inside some responseElements: ``Nov 1, 2026, 10:12:33 AM``."""
    d = datetime.fromtimestamp(int(t), tz=UTC)
    return f"{d:%b} {d.day}, {d.year}, {(d.hour % 12) or 12}:{d:%M:%S} {'AM' if d.hour < 12 else 'PM'}"


def console_bruteforce(ctx: ScenarioContext) -> Injection:
    """Twelve failed console logins for one IAM user from one address, then a success without MFA."""
    org, rng = ctx.org, ctx.rng
    acct, user = org.management, "m.rossi"
    ip = f"198.51.100.{rng.randrange(100, 140)}"
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
    t = ctx.when(1800)
    inj = Injection("console_bruteforce", acct, org.home, f"arn:aws:iam::{acct}:user/{user}",
                    details={"user": user, "source_ip": ip, "failures": 12})
    for _ in range(12):
        t += rng.uniform(15, 40)
        inj.records.append(R.make_console_login(user, acct, success=False, ip=ip, event_time=R.ct_time(int(t)),
                                                user_agent=ua, rng=rng, awsRegion=org.home))
    t += rng.uniform(20, 60)
    ok = R.make_console_login(user, acct, success=True, mfa=False, ip=ip, event_time=R.ct_time(int(t)),
                              user_agent=ua, rng=rng, awsRegion=org.home)
    inj.records.append(ok)
    session = R.iam_user(user, acct, mfa=False, created=R.ct_time(int(t)))
    for name, req in (("ListUsers", {}), ("ListAccessKeys", {"userName": user})):
        t += rng.uniform(20, 90)
        inj.records.append(_api(ctx, t, session, ip, "AWS Internal", org.home, "iam.amazonaws.com", name, req,
                                read_only=True, sessionCredentialFromConsole="true"))
    inj.details["success_event"] = ok["eventID"]
    return inj


def root_activity(ctx: ScenarioContext) -> Injection:
    """The root user signs in to a member account, creates an access key and sets a bucket policy."""
    org, rng = ctx.org, ctx.rng
    acct = org.accounts[-1]
    home = org.home
    ip, ua = "203.0.113.99", R.UA_BROWSER
    t = ctx.when(1800)
    ident = R.root(acct, mfa=True, created=R.ct_time(int(t) + 5))
    inj = Injection("root_activity", acct, home, ident["arn"], details={"source_ip": ip})
    inj.records.append(R.make_console_login(identity=R.root(acct), ip=ip, event_time=R.ct_time(int(t)),
                                            user_agent=ua, rng=rng, awsRegion=home))
    t += rng.uniform(30, 120)
    inj.records.append(_api(ctx, t, ident, ip, ua, home, "iam.amazonaws.com", "GetAccountSummary", read_only=True,
                            sessionCredentialFromConsole="true"))
    t += rng.uniform(30, 120)
    key = stable_id("AKIA", acct, "root", "new")
    inj.records.append(_api(ctx, t, ident, ip, ua, home, "iam.amazonaws.com", "CreateAccessKey", None,
                            {"accessKey": {"accessKeyId": key, "status": "Active", "createDate": _when_text(t)}},
                            sessionCredentialFromConsole="true"))
    bucket = org.inventories[(acct, home)]["buckets"][2]
    policy = {"Version": "2012-10-17", "Statement": [{"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
              "Action": "s3:*", "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
              "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
    t += rng.uniform(60, 240)
    inj.records.append(_s3(ctx, t, ident, ip, ua, home, "PutBucketPolicy", bucket,
                           {"bucketPolicy": policy, "bucketName": bucket, "Host": f"{bucket}.s3.{home}.amazonaws.com",
                            "policy": ""}, sessionCredentialFromConsole="true"))
    inj.details.update(access_key=key, bucket=bucket)
    return inj


def _s3(ctx: ScenarioContext, t: float, ident: dict, ip: str, ua: str, region: str, name: str, bucket: str,
        request: dict, **extra: Any) -> dict:
    rec = _api(ctx, t, ident, ip, ua, region, "s3.amazonaws.com", name, request, eventVersion="1.10",
               additionalEventData={"SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256",
                                    "bytesTransferredIn": 0, "AuthenticationMethod": "AuthHeader",
                                    "x-amz-id-2": stable_id("", bucket, name, t, length=56) + "=", "bytesTransferredOut": 0},
               resources=[{"accountId": ident["accountId"], "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"}],
               **extra)
    rec["requestID"] = ctx.rng.randbytes(8).hex().upper()
    rec["tlsDetails"]["clientProvidedHostHeader"] = f"{bucket}.s3.{region}.amazonaws.com"
    return rec


def _sso_session(ctx: ScenarioContext, acct: str, user: str, t: float) -> tuple[dict, str]:
    actor = ctx.org.actor(acct, user)
    pset = actor.info["permission_set"] if actor else "AWSPowerUserAccess"
    ident = R.sso_user(user, acct, permission_set=pset, created=R.ct_time(int(t) - 1200),
                       access_key=stable_id("ASIA", acct, user, "scenario"))
    return ident, OFFICE_IPS[0]


def open_security_group(ctx: ScenarioContext) -> Injection:
    """A developer opens SSH to the world on a web security group; hours later GuardDuty sees
    SSH brute force against an instance in that group."""
    org, rng = ctx.org, ctx.rng
    acct, region = org.workloads()[-1], org.home
    inv = org.inventories[(acct, region)]
    group_id, group_name = inv["security_groups"][0]
    t = ctx.when(5 * 3600)
    ident, ip = _sso_session(ctx, acct, "grace@example.com", t)
    rule_id = f"sgr-0{stable_hex(acct, group_id, 'open', length=16)}"
    perm = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "groups": {},
            "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}, "ipv6Ranges": {}, "prefixListIds": {}}
    rec = _api(ctx, t, ident, ip, R.UA_BROWSER, region, "ec2.amazonaws.com", "AuthorizeSecurityGroupIngress",
               {"groupId": group_id, "ipPermissions": {"items": [perm]}},
               {"_return": True, "securityGroupRuleSet": {"items": [{
                   "groupOwnerId": acct, "groupId": group_id, "securityGroupRuleId": rule_id, "isEgress": False,
                   "ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0"}]}},
               sessionCredentialFromConsole="true")
    rec["responseElements"] = {"requestId": rec["requestID"], **rec["responseElements"]}
    instance = inv["instances"][0]
    attacker = f"198.51.100.{rng.randrange(150, 200)}"
    later = t + rng.uniform(2 * 3600, 4 * 3600)
    finding = guardduty_defaults(
        "UnauthorizedAccess:EC2/SSHBruteForce", account=acct, region=region, finding_id=rng.randbytes(16).hex(),
        created=gd_time(int(later), rng.randrange(1000)),
        resource=instance_resource(instance, acct, region, group_id=group_id, group_name=group_name, name="web-1"),
        ip=remote_ip(attacker, "Viet Nam", "45899", "VNPT Corp"), count=rng.randrange(40, 400))
    return Injection("open_security_group", acct, region, ident["arn"], [rec], [finding],
                     {"group_id": group_id, "instance_id": instance, "rule_id": rule_id, "attacker_ip": attacker})


def public_bucket(ctx: ScenarioContext) -> Injection:
    """The public access block is removed from a bucket, then a policy grants everyone read."""
    org, rng = ctx.org, ctx.rng
    acct, region = org.workloads()[-1], org.home
    bucket = org.inventories[(acct, region)]["buckets"][0]
    t = ctx.when(1800)
    ident, ip = _sso_session(ctx, acct, "frank@example.com", t)
    host = f"{bucket}.s3.{region}.amazonaws.com"
    first = _s3(ctx, t, ident, ip, R.UA_CLI, region, "DeleteBucketPublicAccessBlock", bucket,
                {"publicAccessBlock": "", "bucketName": bucket, "Host": host})
    policy = {"Version": "2012-10-17", "Statement": [{"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
              "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    second = _s3(ctx, t + rng.uniform(40, 300), ident, ip, R.UA_CLI, region, "PutBucketPolicy", bucket,
                 {"bucketPolicy": policy, "bucketName": bucket, "Host": host, "policy": ""})
    return Injection("public_bucket", acct, region, ident["arn"], [first, second], [], {"bucket": bucket})


SCENARIOS: dict[str, Callable[[ScenarioContext], Injection]] = {
    "leaked_access_key": leaked_access_key,
    "console_bruteforce": console_bruteforce,
    "root_activity": root_activity,
    "open_security_group": open_security_group,
    "public_bucket": public_bucket,
}
