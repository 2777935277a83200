"""The benign API catalogue: what the principals of a synthetic organisation call, with
requestParameters and responseElements in the shapes CloudTrail records for each API.

Only management events appear (what an organisation trail records by default). Nothing here is
a clearly bad action: no root, no world-open security groups, no public bucket policies, no
logging or detector changes, no admin policy attachments, no key disabling.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pipeline.synth.ids import format_uuid4, stable_hex, stable_id

GLOBAL_SERVICES = frozenset({"iam", "organizations", "ce", "health", "signin"})
ORDER = ("eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion",
         "sourceIPAddress", "userAgent", "errorCode", "errorMessage", "requestParameters",
         "responseElements", "additionalEventData", "requestID", "eventID", "readOnly", "resources",
         "eventType", "apiVersion", "managementEvent", "recipientAccountId", "sharedEventID",
         "vpcEndpointId", "vpcEndpointAccountId", "serviceEventDetails", "eventCategory", "tlsDetails",
         "sessionCredentialFromConsole")
_DENIED_EXCEPTION = frozenset({"kms", "ssm", "logs", "ecr", "ecs", "monitoring", "guardduty"})


class Api(NamedTuple):
    source: str  # eventSource
    name: str  # eventName
    read_only: bool
    request: Any = None
    response: Any = None
    extra: dict | None = None  # other top-level fields: resources, additionalEventData, errorCode, ...
    host: str | None = ""  # TLS host header; "" = the service's regional endpoint, None = no tlsDetails
    s3: bool = False  # S3-style request id
    version: str = "1.09"

    @property
    def service(self) -> str:
        return self.source.split(".", 1)[0]

    @property
    def key(self) -> str:
        return f"{self.service}:{self.name}"


def order_record(fields: dict) -> dict:
    """Put a record's keys in the order CloudTrail writes them."""
    out = {k: fields[k] for k in ORDER if k in fields}
    out.update((k, v) for k, v in fields.items() if k not in out)
    return out


def denied(api: Api, arn: str, resource: str = "") -> Api:
    """The AccessDenied failure of ``api`` for the principal ``arn``."""
    action = f"{api.service}:{api.name.rstrip('0123456789v')}"
    if api.service == "ec2":
        code = "Client.UnauthorizedOperation"
        msg = (f"You are not authorized to perform this operation. User: {arn} is not authorized to perform: "
               f"{action} because no identity-based policy allows the {action} action")
    elif api.service == "s3":
        code, msg = "AccessDenied", "Access Denied"
    else:
        code = "AccessDeniedException" if api.service in _DENIED_EXCEPTION else "AccessDenied"
        on = f" on resource: {resource}" if resource else ""
        msg = f"User: {arn} is not authorized to perform: {action}{on} because no identity-based policy allows the {action} action"
    extra = {k: v for k, v in (api.extra or {}).items() if k != "additionalEventData"}
    extra.update(errorCode=code, errorMessage=msg)
    return api._replace(response=None, extra=extra)


def inventory(account: str, region: str, env: str) -> dict[str, Any]:
    """Deterministic resource names of one account and region."""
    def h(*p: Any, n: int = 16) -> str:
        return stable_hex(account, region, *p, length=n)

    functions = ["orders-api", "image-resizer", "nightly-report", "stream-processor", "slack-notifier"]
    return {
        "account": account, "region": region, "env": env,
        "instances": [f"i-0{h('i', k)}" for k in range(6)],
        "security_groups": [(f"sg-0{h('sg', k)}", n) for k, n in enumerate(["web-sg", "app-sg", "db-sg", "batch-sg"])],
        "vpc": f"vpc-0{h('vpc')}",
        "subnets": [f"subnet-0{h('subnet', k)}" for k in range(3)],
        "volumes": [f"vol-0{h('vol', k)}" for k in range(4)],
        "buckets": [f"{env}-app-assets-{account}", f"{env}-data-lake-{account}-{region}",
                    f"{env}-artifacts-{account}-{region}", f"cf-templates-{h('cf', n=12)}-{region}"],
        "functions": functions,
        "tables": ["orders", "sessions", "inventory", "audit-events"],
        "kms_keys": [format_uuid4(h("kms", k, n=32)) for k in range(3)],
        "secrets": [f"{env}/orders/db-credentials", f"{env}/payments/api-key", "shared/datadog-api-key"],
        "params": ["/app/orders/db_host", "/app/orders/feature_flags", "/app/shared/log_level"],
        "stacks": ["network-baseline", "orders-service", "data-pipeline", "monitoring"],
        "log_groups": [f"/aws/lambda/{f}" for f in functions] + ["/ecs/orders-api", "/var/log/messages"],
        "queues": ["orders-events", "orders-dlq"],
        "repos": ["orders-api", "stream-processor"],
        "roles": [f"{f}-role" for f in functions] + ["orders-api-task-role", "web-instance-role", "github-actions-deploy"],
        "cluster": f"{env}-cluster",
    }


def core_apis(inv: dict[str, Any]) -> dict[str, list[Api]]:
    """The benign EC2 and S3 APIs with a few request variants each, keyed ``service:Name``."""
    acct, region = inv["account"], inv["region"]
    apis: dict[str, list[Api]] = {}

    def add(source: str, name: str, ro: bool, variants: list, **kw: Any) -> None:
        for v in variants:
            req, resp, extra = (v + (None, None))[:3] if isinstance(v, tuple) else (v, None, None)
            api = Api(source, name, ro, req, resp, extra, **kw)
            apis.setdefault(api.key, []).append(api)

    def items(key: str, values: list) -> dict:
        return {"items": [{key: v} for v in values]}

    def filt(name: str, value: str) -> dict:
        return {"items": [{"name": name, "valueSet": {"items": [{"value": value}]}}]}

    inst, sgs, vpc = inv["instances"], inv["security_groups"], inv["vpc"]
    ec2 = "ec2.amazonaws.com"
    add(ec2, "DescribeInstances", True, [
        {"instancesSet": {}, "filterSet": {}}, {"instancesSet": items("instanceId", inst[:2]), "filterSet": {}},
        {"maxResults": 1000, "instancesSet": {}, "filterSet": filt("instance-state-name", "running")},
        {"instancesSet": items("instanceId", [inst[3]]), "filterSet": {}}])
    add(ec2, "DescribeSecurityGroups", True, [
        {"securityGroupSet": {}, "securityGroupIdSet": {}, "filterSet": {}},
        {"securityGroupSet": {}, "securityGroupIdSet": items("groupId", [sgs[0][0]]), "filterSet": {}},
        {"securityGroupSet": {}, "securityGroupIdSet": {}, "filterSet": filt("vpc-id", vpc)}])
    add(ec2, "DescribeSecurityGroupRules", True, [{"DescribeSecurityGroupRulesRequest": {
        "Filter": {"Name": "group-id", "Value": {"content": g}, "tag": 1}, "MaxResults": 1000}} for g, _ in sgs[:2]])
    add(ec2, "DescribeVpcs", True, [{"vpcSet": {}, "filterSet": {}}, {"vpcSet": items("vpcId", [vpc]), "filterSet": {}}])
    add(ec2, "DescribeSubnets", True, [{"subnetSet": {}, "filterSet": filt("vpc-id", vpc)}])
    add(ec2, "DescribeVolumes", True, [{"volumeSet": {}, "filterSet": {}},
                                        {"volumeSet": {}, "filterSet": filt("attachment.instance-id", inst[0])}])
    add(ec2, "DescribeSnapshots", True, [{"snapshotSet": {}, "ownersSet": items("owner", ["self"]),
                                          "restorableBySet": {}, "filterSet": {}, "maxResults": 1000}])
    add(ec2, "DescribeNetworkInterfaces", True, [{"networkInterfaceIdSet": {}, "filterSet": filt("vpc-id", vpc)}])
    add(ec2, "DescribeRouteTables", True, [{"routeTableIdSet": {}, "filterSet": filt("vpc-id", vpc)}])
    add(ec2, "DescribeTags", True, [{"filterSet": filt("resource-id", i)} for i in inst[:3]])
    add(ec2, "DescribeInstanceStatus", True, [{"instancesSet": {}, "filterSet": {}, "includeAllInstances": False}])
    add(ec2, "DescribeImages", True, [{"executableBySet": {}, "imagesSet": {}, "ownersSet": items("owner", ["self"]),
                                       "includeDeprecated": False, "filterSet": {}}])
    add(ec2, "DescribeRegions", True, [{"regionSet": {}, "allRegions": False}])
    add(ec2, "DescribeAvailabilityZones", True, [{"availabilityZoneSet": {}, "availabilityZoneIdSet": {},
                                                  "filterSet": {}, "allAvailabilityZones": False}])
    add(ec2, "CreateTags", False, [({"resourcesSet": items("resourceId", [i]), "tagSet": {"items": [
        {"key": "owner", "value": "team-orders"}, {"key": "cost-center", "value": "cc-4410"}]}},
        {"_return": True}) for i in inst[:3]])
    add(ec2, "StartInstances", False, [({"instancesSet": items("instanceId", [inst[4]])}, {"instancesSet": {"items": [
        {"instanceId": inst[4], "currentState": {"code": 0, "name": "pending"},
         "previousState": {"code": 80, "name": "stopped"}}]}})])
    add(ec2, "StopInstances", False, [({"instancesSet": items("instanceId", [inst[4]]), "force": False},
                                        {"instancesSet": {"items": [{"instanceId": inst[4],
                                         "currentState": {"code": 64, "name": "stopping"},
                                         "previousState": {"code": 16, "name": "running"}}]}})])
    add(ec2, "CreateSnapshot", False, [({"volumeId": v, "description": "nightly backup"}, {
        "snapshotId": f"snap-0{stable_hex(v, 'snap', length=16)}", "volumeId": v, "status": "pending",
        "startTime": 1793527200000, "progress": "", "ownerId": acct, "volumeSize": 100, "encrypted": True,
        "kmsKeyId": f"arn:aws:kms:{region}:{acct}:key/{inv['kms_keys'][0]}"}) for v in inv["volumes"]])
    add(ec2, "DeleteSnapshot", False, [({"snapshotId": f"snap-0{stable_hex(v, 'old', length=16)}"}, {"_return": True})
                                       for v in inv["volumes"][:2]])
    internal = {"groupId": sgs[2][0], "ipPermissions": {"items": [{
        "ipProtocol": "tcp", "fromPort": 5432, "toPort": 5432, "groups": {},
        "ipRanges": {"items": [{"cidrIp": "10.0.0.0/16", "description": "app subnets"}]},
        "ipv6Ranges": {}, "prefixListIds": {}}]}}
    rule = {"groupOwnerId": acct, "groupId": sgs[2][0], "securityGroupRuleId": f"sgr-0{stable_hex(acct, region, 'r', length=16)}",
            "isEgress": False, "ipProtocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrIpv4": "10.0.0.0/16"}
    add(ec2, "AuthorizeSecurityGroupIngress", False, [(internal, {"_return": True, "securityGroupRuleSet": {"items": [rule]}})])
    add(ec2, "RevokeSecurityGroupIngress", False, [(internal, {"_return": True})])

    # S3 bucket-level management events
    x_amz = stable_id("", acct, region, "xamz", length=56, alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    def s3(name: str, sub: str, ro: bool, req_extra: dict | None = None, resp: Any = None, errors: dict | None = None) -> None:
        for n, b in enumerate(inv["buckets"]):
            host = f"{b}.s3.{region}.amazonaws.com"
            req = {"bucketName": b, "Host": host, **({sub: ""} if sub else {}), **(req_extra or {})}
            extra = {"additionalEventData": {"SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256",
                                             "bytesTransferredIn": 0, "AuthenticationMethod": "AuthHeader",
                                             "x-amz-id-2": f"{x_amz}{n}=", "bytesTransferredOut": 0 if resp else 120 + 40 * n},
                     "resources": [{"accountId": acct, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}]}
            if errors and n in errors:
                extra.update(errorCode=errors[n][0], errorMessage=errors[n][1])
            apis.setdefault(f"s3:{name}", []).append(Api("s3.amazonaws.com", name, ro, req, resp, extra, host, True, "1.10"))

    s3("GetBucketLocation", "location", True)
    s3("GetBucketPolicy", "policy", True, errors={1: ("NoSuchBucketPolicy", "The bucket policy does not exist"),
                                                   3: ("NoSuchBucketPolicy", "The bucket policy does not exist")})
    s3("GetBucketAcl", "acl", True)
    s3("GetBucketEncryption", "encryption", True)
    s3("GetBucketVersioning", "versioning", True)
    s3("GetBucketPublicAccessBlock", "publicAccessBlock", True)
    s3("GetBucketLogging", "logging", True)
    s3("GetBucketTagging", "tagging", True, errors={3: ("NoSuchTagSet", "The TagSet does not exist")})
    s3("GetBucketLifecycle", "lifecycle", True)
    s3("PutBucketTagging", "tagging", False, {"Tagging": {"xmlns": "http://s3.amazonaws.com/doc/2006-03-01/",
                                                          "TagSet": {"Tag": [{"Key": "env", "Value": inv["env"]}]}}})
    deny_insecure = {"Version": "2012-10-17", "Statement": [{"Sid": "DenyInsecureTransport", "Effect": "Deny",
                     "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::{b}", "arn:aws:s3:::{b}/*"],
                     "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
    for b in inv["buckets"][:3]:
        pol = {**deny_insecure, "Statement": [{**deny_insecure["Statement"][0], "Resource": [
            f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"]}]}
        apis.setdefault("s3:PutBucketPolicy", []).append(Api(
            "s3.amazonaws.com", "PutBucketPolicy", False,
            {"bucketPolicy": pol, "bucketName": b, "Host": f"{b}.s3.{region}.amazonaws.com", "policy": ""},
            None, {"resources": [{"accountId": acct, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}]},
            f"{b}.s3.{region}.amazonaws.com", True, "1.10"))
    apis["s3:ListBuckets"] = [Api("s3.amazonaws.com", "ListBuckets", True, {"Host": f"s3.{region}.amazonaws.com"},
                                  None, None, f"s3.{region}.amazonaws.com", True, "1.10")]

    return apis


def host_for(api: Api, region: str) -> str | None:
    if api.host is None:
        return None
    if api.host:
        return api.host
    svc = {"monitoring": "monitoring", "ecr": "api.ecr"}.get(api.service, api.service)
    if api.service in GLOBAL_SERVICES:
        return f"{svc}.amazonaws.com" if api.service == "iam" else f"{svc}.us-east-1.amazonaws.com"
    return f"{svc}.{region}.amazonaws.com"
