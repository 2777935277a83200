"""Who a source IP belongs to: its class (aws, private, public, ...) and, from offline MaxMind-format
files the user points at, its ASN, AS organisation and country.

No database is shipped and nothing is downloaded: GeoLite2-ASN/-Country/-City, DB-IP lite and
IPinfo lite ``.mmdb`` files all read (their record layouts differ; :func:`_record_fields` maps
each). Without one, the class is still known (it needs only the ``ipaddress`` module); ASN and
country are NULL.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError

#: Amazon's own autonomous systems (AMAZON-02, AMAZON-AES, AWS EU, Amazon.com): their addresses are "aws".
AMAZON_ASNS = frozenset({16509, 14618, 8987, 7224})
#: What CloudTrail writes as sourceIPAddress when an AWS service made the call for you.
_AWS_NAMES = ("AWS Internal",)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # shared address space: not routed on the internet


@dataclass(frozen=True)
class IpInfo:
    ip_class: str | None = None  # aws, private, loopback, link_local, reserved, public, hostname
    asn: int | None = None
    as_org: str | None = None
    country: str | None = None

    def columns(self) -> dict:
        return {"src_ip_class": self.ip_class, "src_asn": self.asn, "src_as_org": self.as_org,
                "src_country": self.country}


def address_class(value: str) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    """(class, parsed address) from the address alone: AWS service principals and names are ``aws``,
    private and special ranges are labelled, anything routable is ``public``."""
    v = value.strip()
    if v in _AWS_NAMES or v.endswith(".amazonaws.com") or v == "amazonaws.com":
        return "aws", None
    try:
        ip = ipaddress.ip_address(v.split("%", 1)[0])
    except ValueError:
        return "hostname", None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback", ip
    if ip.is_link_local:  # 169.254/16 holds the EC2 instance metadata service
        return "link_local", ip
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "reserved", ip
    if ip.is_private or (ip.version == 4 and ip in _CGNAT):
        return "private", ip
    if not ip.is_global:
        return "reserved", ip
    return "public", ip


def _record_fields(rec: dict) -> dict:
    """ASN, AS org and country from one record of any of the supported layouts."""
    out: dict = {}
    if "autonomous_system_number" in rec:  # GeoLite2-ASN, DB-IP ASN lite
        out["asn"] = int(rec["autonomous_system_number"])
        out["as_org"] = rec.get("autonomous_system_organization")
    elif isinstance(rec.get("asn"), (str, int)):  # IPinfo lite: "AS16509"
        s = str(rec["asn"]).upper().removeprefix("AS")
        out["asn"] = int(s) if s.isdigit() else None
        out["as_org"] = rec.get("as_name")
    country = rec.get("country")
    if isinstance(country, dict) and country.get("iso_code"):  # GeoLite2-Country/-City, DB-IP country lite
        out["country"] = country["iso_code"]
    elif isinstance(rec.get("registered_country"), dict) and rec["registered_country"].get("iso_code"):
        out["country"] = rec["registered_country"]["iso_code"]
    elif isinstance(rec.get("country_code"), str):  # IPinfo lite
        out["country"] = rec["country_code"]
    return {k: v for k, v in out.items() if v is not None}


class AwsRanges:
    """AWS's published ranges (the ``ip-ranges.json`` document, a file the user saved)."""

    def __init__(self, networks: list):
        # (version, prefix length, network bits): one set lookup per prefix length present
        self._nets = {(n.version, n.prefixlen, int(n.network_address) >> (n.max_prefixlen - n.prefixlen)) for n in networks}
        self._lengths = sorted({(n.version, n.prefixlen, n.max_prefixlen) for n in networks})

    @classmethod
    def from_file(cls, path: str) -> AwsRanges:
        try:
            doc = json.loads(Path(path).read_text())
            nets = [ipaddress.ip_network(p["ip_prefix"]) for p in doc.get("prefixes", [])]
            nets += [ipaddress.ip_network(p["ipv6_prefix"]) for p in doc.get("ipv6_prefixes", [])]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}: not an AWS ip-ranges.json document ({type(e).__name__})") from None
        return cls(nets)

    def __contains__(self, ip) -> bool:
        return any((v, n, int(ip) >> (bits - n)) in self._nets for v, n, bits in self._lengths if v == ip.version)


class IpLookup:
    """Classify and look up source IPs; results are cached per address (alerts repeat them)."""

    def __init__(self, db_paths: list[str] | tuple[str, ...] = (), aws_ranges: str | None = None):
        import maxminddb

        self.readers = []
        for path in db_paths:
            try:
                self.readers.append(maxminddb.open_database(str(path)))
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as e:
                raise ConfigError(f"IP database {path}: cannot read it as a MaxMind DB file ({type(e).__name__})") from None
        self.aws = AwsRanges.from_file(aws_ranges) if aws_ranges else None
        self.lookup = functools.lru_cache(maxsize=65536)(self._lookup)

    def _lookup(self, value: str | None) -> IpInfo:
        if not value:
            return IpInfo()
        cls, ip = address_class(str(value))
        if ip is None or cls != "public":
            return IpInfo(cls)
        found: dict = {}
        for reader in self.readers:
            try:
                rec = reader.get(ip)
            except ValueError:  # an IPv6 address in an IPv4-only database
                rec = None
            if isinstance(rec, dict):
                found = {**_record_fields(rec), **found}  # the first file that knows a field wins
        if (self.aws is not None and ip in self.aws) or found.get("asn") in AMAZON_ASNS:
            cls = "aws"
        return IpInfo(cls, found.get("asn"), found.get("as_org"), found.get("country"))

    def close(self) -> None:
        for r in self.readers:
            r.close()
