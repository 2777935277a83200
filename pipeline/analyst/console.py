"""AWS console links and short labels for the ARNs and resource ids the report names.

Why built from the ARN alone: the report is rendered offline, so a link is derived from what the
value itself says (partition, service, region, account, name) and never looked up. The console
opens in whatever account the reader is signed in to, so the account is put in the link's
tooltip; the report never embeds credentials or a sign-in URL. Names come from the logs
(attacker-controlled): every path part is percent-encoded and the scheme and host are fixed,
so a name can neither leave the console host nor become a ``javascript:`` URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

#: Console host per partition (aws-cn and aws-us-gov have their own consoles).
HOSTS = {"aws": "console.aws.amazon.com", "aws-us-gov": "console.amazonaws-us-gov.com", "aws-cn": "console.amazonaws.cn"}
_INSTANCE = re.compile(r"^i-[0-9a-f]{8,17}$")
_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
_FINDING = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Link:
    url: str
    kind: str  # what it opens: "IAM user", "S3 bucket", ...
    account: str | None = None


def _q(s: str) -> str:
    return quote(s, safe="")


def _regional(partition: str, region: str | None, path: str) -> str:
    host = HOSTS.get(partition, HOSTS["aws"])
    return f"https://{region}.{host}/{path}" if region else f"https://{host}/{path}"


def parse_arn(value: str) -> tuple[str, str, str, str, str] | None:
    """(partition, service, region, account, resource) of an ARN, or None."""
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    return parts[1], parts[2], parts[3], parts[4], parts[5]


def link(value: str | None, region: str | None = None, *, finding: bool = False) -> Link | None:
    """The console page of an IAM user or role (an assumed-role session links to its role), an S3
    bucket, an EC2 instance or security group, a KMS key, or (``finding=True``) a GuardDuty finding
    id in ``region``. None for anything else (root, access keys, IPs)."""
    if not value:
        return None
    value = str(value)
    if finding:
        if not (_FINDING.match(value) and region):
            return None
        return Link(_regional("aws", region, f"guardduty/home?region={_q(region)}#/findings?macros=current&fId={_q(value)}"),
                    "GuardDuty finding")
    if _INSTANCE.match(value) and region:
        return Link(_regional("aws", region, f"ec2/home?region={_q(region)}#InstanceDetails:instanceId={_q(value)}"),
                    "EC2 instance")
    if _GROUP.match(value) and region:
        return Link(_regional("aws", region, f"ec2/home?region={_q(region)}#SecurityGroup:groupId={_q(value)}"),
                    "security group")
    arn = parse_arn(value)
    if not arn:
        return None
    partition, service, arn_region, account, resource = arn
    region = arn_region or region
    kind, _, rest = resource.partition("/")
    name = rest.rsplit("/", 1)[-1]  # IAM names may carry a path: user/division/alice
    if service == "iam" and kind in ("user", "role") and name:
        page = "users" if kind == "user" else "roles"
        return Link(_regional(partition, None, f"iam/home#/{page}/details/{_q(name)}"), f"IAM {kind}", account or None)
    if service == "sts" and kind == "assumed-role" and rest:
        role = rest.split("/", 1)[0]
        return Link(_regional(partition, None, f"iam/home#/roles/details/{_q(role)}"), "IAM role", account or None)
    if service == "s3" and resource:
        bucket = resource.split("/", 1)[0]
        host = HOSTS.get(partition, HOSTS["aws"])
        return Link(f"https://s3.{host}/s3/buckets/{_q(bucket)}", "S3 bucket", account or None)
    if service == "ec2" and kind == "instance" and region and _INSTANCE.match(rest):
        return Link(_regional(partition, region, f"ec2/home?region={_q(region)}#InstanceDetails:instanceId={_q(rest)}"),
                    "EC2 instance", account or None)
    if service == "ec2" and kind == "security-group" and region and _GROUP.match(rest):
        return Link(_regional(partition, region, f"ec2/home?region={_q(region)}#SecurityGroup:groupId={_q(rest)}"),
                    "security group", account or None)
    if service == "kms" and kind == "key" and region and rest:
        return Link(_regional(partition, region, f"kms/home?region={_q(region)}#/kms/keys/{_q(rest)}"), "KMS key",
                    account or None)
    return None


def shorten(text: str, chars: int) -> str:
    """``text`` in at most ``chars`` characters. An ARN loses its left end first, so the account and
    the name (its most telling parts) stay: ``…303373800728:user/ci-legacy``; when even that is too
    long, the account is kept and the resource loses its left end. Other text loses its middle."""
    text = str(text)
    if len(text) <= chars:
        return text
    arn = parse_arn(text)
    if arn:
        account, resource = arn[3], arn[4]
        tail = text[len(text) - (chars - 1):]
        if not account or f"{account}:" in tail:
            return "…" + tail
        room = chars - len(account) - 2
        if room >= 8:
            end = resource[len(resource) - room:]
            cut = end.find("/", 1)  # start at a path step: …/frank@example.com, not …rank@example.com
            return f"{account}:…{end[cut:] if 0 < cut < len(end) - 3 else end}"
        return "…" + tail
    head = max(1, (chars - 1) * 2 // 5)
    return text[:head] + "…" + text[len(text) - (chars - 1 - head):]
