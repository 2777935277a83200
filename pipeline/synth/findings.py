"""Building blocks of GuardDuty findings (resources, actions, known finding types)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from pipeline.synth.ids import Whole, gd_time, stable_hex, stable_id

# type -> (severity, resource kind, action kind, title, description)
FINDING_TYPES: dict[str, tuple[float, str, str, str, str]] = {
    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS": (
        8.0, "access_key", "api",
        "Credentials for instance role {user} used from external IP address.",
        "Credentials created exclusively for an EC2 instance using instance role {user} have been used "
        "from external IP address {ip}."),
    "Discovery:IAMUser/AnomalousBehavior": (
        5.0, "access_key", "api",
        "Anomalous API commonly used in Discovery tactics invoked by {user_type} : {user}.",
        "APIs commonly used in Discovery tactics were invoked by {user_type} : {user} under anomalous "
        "circumstances. Such activity is not typically seen from this principal."),
    "Stealth:IAMUser/CloudTrailLoggingDisabled": (
        2.0, "access_key", "api",
        "AWS CloudTrail trail {trail} was disabled.",
        "The API StopLogging was invoked by {user_type} : {user} to disable a CloudTrail trail."),
    "Recon:EC2/PortProbeUnprotectedPort": (
        2.0, "instance", "port_probe",
        "Unprotected port on EC2 instance {instance} is being probed.",
        "EC2 instance has an unprotected port which is being probed by a known malicious host."),
    "UnauthorizedAccess:EC2/SSHBruteForce": (
        2.0, "instance", "inbound",
        "SSH brute force attacks against {instance}.",
        "{ip} is performing SSH brute force attacks against {instance}. Brute force attacks are used "
        "to gain unauthorized access to your instance by guessing the SSH password."),
    "UnauthorizedAccess:EC2/TorIPCaller": (
        5.0, "instance", "inbound",
        "EC2 instance {instance} is receiving inbound connections from a Tor exit node.",
        "EC2 instance {instance} is receiving inbound connections from Tor IP address {ip}."),
    "Behavior:EC2/NetworkPortUnusual": (
        5.0, "instance", "outbound",
        "Unusual outbound communication seen from EC2 instance {instance} on server port 8443.",
        "EC2 instance {instance} is communicating with a remote host {ip} on an unusual server port 8443."),
    "Backdoor:EC2/C&CActivity.B!DNS": (
        8.0, "instance", "dns",
        "Command and Control server domain name queried by EC2 instance {instance}.",
        "EC2 instance {instance} is querying a domain name associated with a known Command & Control server."),
    "CryptoCurrency:EC2/BitcoinTool.B!DNS": (
        8.0, "instance", "dns",
        "Bitcoin-related domain name queried by EC2 instance {instance}.",
        "EC2 instance {instance} is querying a domain name that is associated with Bitcoin-related activity."),
    "Discovery:S3/AnomalousBehavior": (
        2.0, "s3", "api",
        "Unusual discovery API calls against S3 bucket {bucket}.",
        "An IAM entity invoked an S3 API that is commonly used to discover S3 buckets in an unusual way."),
}

_PORT_NAMES = {22: "SSH", 80: "HTTP", 443: "HTTPS", 3389: "RDP", 8080: "Unknown", 5432: "POSTGRESQL"}


def remote_ip(ip: str = "198.51.100.23", country: str = "Netherlands", asn: str = "60781",
              org: str = "LeaseWeb Netherlands B.V.") -> dict:
    return {
        "ipAddressV4": ip,
        "organization": {"asn": asn, "asnOrg": org, "isp": org, "org": org},
        "country": {"countryName": country},
        "city": {"cityName": ""},
        "geoLocation": {"lat": 52.3824, "lon": 4.8995},
    }


def access_key_resource(access_key: str, user: str, account: str, user_type: str = "IAMUser") -> dict:
    prefix = "AIDA" if user_type == "IAMUser" else "AROA"
    return Whole({
        "resourceType": "AccessKey",
        "accessKeyDetails": {"accessKeyId": access_key, "principalId": stable_id(prefix, account, user, length=17),
                             "userName": user, "userType": user_type},
    })


def instance_resource(instance_id: str, account: str, region: str, *, group_id: str = "",
                      group_name: str = "web-sg", public_ip: str = "198.51.100.200",
                      name: str = "web-1") -> dict:
    h = stable_hex(account, instance_id, length=24)
    group_id = group_id or f"sg-0{h[:16]}"
    private_ip = f"10.0.{int(h[16:18], 16) % 64}.{int(h[18:20], 16) % 250 + 4}"
    return Whole({
        "resourceType": "Instance",
        "instanceDetails": {
            "instanceId": instance_id, "instanceType": "t3.medium", "instanceState": "running",
            "availabilityZone": f"{region}a", "imageId": f"ami-0{h[:16]}",
            "imageDescription": "Amazon Linux 2023 AMI 2023.6.20241031.0 x86_64 HVM kernel-6.1",
            "launchTime": "2026-10-14T08:12:43.000Z", "platform": None, "productCodes": [],
            "iamInstanceProfile": {"arn": f"arn:aws:iam::{account}:instance-profile/{name}-profile",
                                   "id": stable_id("AIPA", account, name, length=17)},
            "networkInterfaces": [{
                "ipv6Addresses": [], "networkInterfaceId": f"eni-0{h[2:18]}",
                "privateDnsName": f"ip-{private_ip.replace('.', '-')}.{region}.compute.internal",
                "privateIpAddress": private_ip,
                "privateIpAddresses": [{"privateDnsName": f"ip-{private_ip.replace('.', '-')}."
                                                          f"{region}.compute.internal",
                                        "privateIpAddress": private_ip}],
                "publicDnsName": f"ec2-{public_ip.replace('.', '-')}.compute-1.amazonaws.com",
                "publicIp": public_ip,
                "securityGroups": [{"groupId": group_id, "groupName": group_name}],
                "subnetId": f"subnet-0{h[4:20]}", "vpcId": f"vpc-0{h[6:22]}"}],
            "outpostArn": None,
            "tags": [{"key": "Name", "value": name}, {"key": "env", "value": "prod"}],
        },
    })


def s3_resource(bucket: str, account: str) -> dict:
    return Whole({
        "resourceType": "S3Bucket",
        "s3BucketDetails": [{
            "arn": f"arn:aws:s3:::{bucket}", "name": bucket, "type": "Destination",
            "createdAt": "2025-03-02T11:20:31.000Z",
            "owner": {"id": stable_hex(account, "canonical", length=64)},
            "defaultServerSideEncryption": {"encryptionType": "AES256"},
            "publicAccess": {"effectivePermission": "NOT_PUBLIC"}, "tags": []}],
    })


def action(kind: str, *, ip: dict | None = None, api: str = "ListBuckets", service: str = "s3.amazonaws.com",
           port: int = 22) -> dict:
    ip = ip or remote_ip()
    if kind == "api":
        return {"actionType": "AWS_API_CALL",
                "awsApiCallAction": {"api": api, "callerType": "Remote IP", "remoteIpDetails": ip,
                                     "serviceName": service, "affectedResources": {}}}
    if kind == "port_probe":
        return {"actionType": "PORT_PROBE",
                "portProbeAction": {"blocked": False, "portProbeDetails": [{
                    "localPortDetails": {"port": port, "portName": _PORT_NAMES.get(port, "Unknown")},
                    "remoteIpDetails": ip}]}}
    if kind == "dns":
        return {"actionType": "DNS_REQUEST",
                "dnsRequestAction": {"domain": "guarddutyc2activityb.com", "protocol": "UDP", "blocked": False}}
    direction = "OUTBOUND" if kind == "outbound" else "INBOUND"
    local, remote = (43120, 8443) if direction == "OUTBOUND" else (port, 51234)
    return {"actionType": "NETWORK_CONNECTION",
            "networkConnectionAction": {
                "connectionDirection": direction, "blocked": False, "protocol": "TCP",
                "localPortDetails": {"port": local, "portName": _PORT_NAMES.get(local, "Unknown")},
                "remotePortDetails": {"port": remote, "portName": "Unknown"},
                "localIpDetails": {"ipAddressV4": "10.0.1.15"}, "remoteIpDetails": ip}}


def guardduty_defaults(ftype: str, *, account: str, region: str, finding_id: str,
                       created: str = "2026-11-01T10:00:00.123Z", updated: str | None = None,
                       resource: dict | None = None, ip: dict | None = None, count: int = 1,
                       archived: bool = False, sample: bool = False, api: str = "ListBuckets",
                       port: int = 22) -> dict[str, Any]:
    """A complete finding of ``ftype`` (unknown types fall back on the ``:EC2/``/``:S3/`` prefix)."""
    known = FINDING_TYPES.get(ftype)
    if known is None:
        kind = "instance" if ":EC2/" in ftype else "s3" if ":S3/" in ftype else "access_key"
        act = {"instance": "inbound", "s3": "api", "access_key": "api"}[kind]
        known = (5.0, kind, act, f"{ftype} finding.", f"GuardDuty reported {ftype}.")
    severity, kind, act_kind, title, description = known
    ip = ip or remote_ip()
    if resource is None:
        if kind == "instance":
            resource = instance_resource(f"i-0{stable_hex(account, region, 'i', length=16)}", account, region)
        elif kind == "s3":
            resource = s3_resource(f"app-data-{account}", account)
        else:
            resource = access_key_resource(stable_id("ASIA", account, "web-role", "i"), "web-role", account,
                                           user_type="AssumedRole")
    details = resource.get("accessKeyDetails") or {}
    inst = (resource.get("instanceDetails") or {}).get("instanceId", "")
    buckets = resource.get("s3BucketDetails") or [{}]
    fmt = {"user": details.get("userName", ""), "user_type": details.get("userType", ""),
           "ip": ip["ipAddressV4"], "instance": inst, "bucket": buckets[0].get("name", ""), "trail": "trail"}
    service_name = "cloudtrail.amazonaws.com" if api == "StopLogging" else (
        "iam.amazonaws.com" if api.startswith(("List", "Get", "Create", "Attach")) and kind == "access_key"
        else "s3.amazonaws.com")
    detector = stable_hex(account, region, "detector")
    info: dict[str, Any] = {"value": "{}", "type": "default"}
    if sample:
        info = {"sample": True}
    finding = {
        "schemaVersion": "2.0",
        "accountId": account,
        "region": region,
        "partition": "aws",
        "id": finding_id,
        "arn": f"arn:aws:guardduty:{region}:{account}:detector/{detector}/finding/{finding_id}",
        "type": ftype,
        "resource": resource,
        "service": {
            "serviceName": "guardduty",
            "detectorId": detector,
            "action": action(act_kind, ip=ip, api=api, service=service_name, port=port),
            "resourceRole": "ACTOR" if act_kind == "outbound" or kind == "access_key" else "TARGET",
            "additionalInfo": info,
            "featureName": "CloudTrail" if act_kind == "api" else ("DnsLogs" if act_kind == "dns" else "FlowLogs"),
            "eventFirstSeen": created,
            "eventLastSeen": updated or created,
            "archived": archived,
            "count": count,
        },
        "severity": severity,
        "createdAt": created,
        "updatedAt": updated or created,
        "title": title.format(**fmt),
        "description": description.format(**fmt),
    }
    return finding


_SCANNERS = [("Netherlands", "60781", "LeaseWeb Netherlands B.V."), ("United States", "14061", "DigitalOcean, LLC"),
             ("Germany", "24940", "Hetzner Online GmbH"), ("China", "4134", "CHINANET-BACKBONE"),
             ("Russia", "49505", "OOO Network of data-centers Selectel"), ("Brazil", "28573", "Claro NXT")]
_BENIGN_TYPES = [("Recon:EC2/PortProbeUnprotectedPort", 0.7), ("UnauthorizedAccess:EC2/TorIPCaller", 0.15),
                 ("Behavior:EC2/NetworkPortUnusual", 0.15)]
_SAMPLE_TYPES = ["Backdoor:EC2/C&CActivity.B!DNS", "CryptoCurrency:EC2/BitcoinTool.B!DNS",
                 "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"]


def _gd_time(t: float) -> str:
    return gd_time(int(t), int((t % 1) * 1000))


def benign_findings(rng: Any, accounts: list[str], workloads: list[str], regions: tuple[str, ...] | list[str],
                    start: int, end: int, count: int) -> list[dict]:
    """``count`` background findings: internet noise on instances (many archived), a handful of
    GuardDuty sample findings (``additionalInfo.sample``), plus one later re-export of a finding
    with the same id and a new ``updatedAt``."""
    if count <= 0:
        return []
    out: list[dict] = []
    n_sample = min(count, max(1, count // 13))
    types, weights = zip(*_BENIGN_TYPES, strict=True)
    for _ in range(count - n_sample):
        acct = rng.choice(workloads) if rng.random() < 0.85 else rng.choice(accounts)
        region = rng.choice(list(regions))
        ftype = rng.choices(types, weights)[0]
        t = start + rng.randrange(0, max(1, end - start - 900)) + rng.random()
        country, asn, org = rng.choice(_SCANNERS)
        ip = remote_ip(f"192.0.2.{rng.randrange(2, 250)}", country, asn, org)
        inst = f"i-0{stable_hex(acct, region, 'i', rng.randrange(6), length=16)}"
        f = guardduty_defaults(ftype, account=acct, region=region, finding_id=rng.randbytes(16).hex(),
                               created=_gd_time(t), resource=instance_resource(inst, acct, region, name="web"),
                               ip=ip, count=rng.randrange(1, 30), port=rng.choice((80, 443, 8080)),
                               archived=ftype.startswith("Recon") and rng.random() < 0.4)
        f["service"]["eventFirstSeen"] = _gd_time(t - rng.randrange(0, 6 * 3600))
        out.append(f)
    sample_acct = workloads[0] if len(accounts) < 2 else accounts[1]
    t = start + rng.randrange(0, max(1, end - start - 900)) + rng.random()
    for k in range(n_sample):
        ftype = _SAMPLE_TYPES[k % len(_SAMPLE_TYPES)]
        resource = (access_key_resource("GeneratedFindingAccessKeyId", "GeneratedFindingUserName", sample_acct,
                                        "AssumedRole") if ":IAMUser/" in ftype else
                    instance_resource("i-99999999", sample_acct, regions[0], group_id="GeneratedFindingSecurityId",
                                      group_name="GeneratedFindingSecurityGroupName", name="GeneratedFindingInstance"))
        if "accessKeyDetails" in resource:
            resource["accessKeyDetails"]["principalId"] = "GeneratedFindingPrincipalId"
        out.append(guardduty_defaults(ftype, account=sample_acct, region=regions[0], finding_id=rng.randbytes(16).hex(),
                                      created=_gd_time(t), resource=resource, ip=remote_ip("198.51.100.0"),
                                      sample=True))
    first = next((f for f in out if f["type"].startswith("Recon") and not f["service"]["archived"]), None)
    if first is not None:
        created = datetime.fromisoformat(first["createdAt"].replace("Z", "+00:00")).timestamp()
        later = min(created + rng.randrange(2 * 3600, 10 * 3600), end - 600) + rng.random()
        if later > created:
            upd = copy.deepcopy(first)
            upd["updatedAt"] = upd["service"]["eventLastSeen"] = _gd_time(later)
            upd["service"]["count"] += rng.randrange(3, 40)
            out.append(upd)
    return out
