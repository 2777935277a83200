"""GuardDuty export object (gzip JSON Lines, one finding per line) → Arrow per ``schemas/guardduty.yml``.

Findings are few next to CloudTrail records, so this path favours clarity: each line is decoded
to a dict, the common pivots are lifted into columns, and ``resource``/``service`` stay whole as JSON.
"""

from __future__ import annotations

import datetime as dt

import msgspec
import pyarrow as pa

from pipeline import schema
from pipeline.errors import ObjectError
from pipeline.layout import LogObject
from pipeline.normalize.common import gunzip, json_from_python, parse_utc

TABLE = "guardduty"
_ARROW = schema.arrow_schema(TABLE)
_RAW = [c for c in schema.load(TABLE).file_columns if not c.derived and "." not in (c.source or "")]
_RAW_NAMES = {c.name for c in _RAW}
#: Top-level keys that feed partition columns rather than a column of their own.
_CONSUMED = {"region"}
_ACTIONS = ("awsApiCallAction", "networkConnectionAction", "kubernetesApiCallAction", "rdsLoginAttemptAction")
_decode = msgspec.json.Decoder().decode


def severity_label(score: float | None) -> str | None:
    """GuardDuty's console bands: Low 1.0–3.9, Medium 4.0–6.9, High 7.0–8.9, Critical 9.0–10.0."""
    if score is None:
        return None
    return "Low" if score < 4 else "Medium" if score < 7 else "High" if score < 9 else "Critical"


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _remote(service: dict) -> dict | None:
    action = _get(service, "action") or {}
    for name in _ACTIONS:
        ip = _get(action, name, "remoteIpDetails")
        if ip:
            return ip
    probes = _get(action, "portProbeAction", "portProbeDetails")
    if isinstance(probes, list) and probes and isinstance(probes[0], dict):
        return probes[0].get("remoteIpDetails")
    return None


def _pivots(f: dict) -> dict:
    res, svc = f.get("resource") or {}, f.get("service") or {}
    key = _get(res, "accessKeyDetails") or {}
    remote = _remote(svc) or {}
    sample = _get(svc, "additionalInfo", "sample")
    sev = f.get("severity")
    return {
        "severity_label": severity_label(sev if isinstance(sev, (int, float)) else None),
        "resource_type": _get(res, "resourceType"),
        "instance_id": _get(res, "instanceDetails", "instanceId"),
        "access_key_id": key.get("accessKeyId"),
        "principal_id": key.get("principalId"),
        "user_name": key.get("userName"),
        "user_type": key.get("userType"),
        "action_type": _get(svc, "action", "actionType"),
        "api": _get(svc, "action", "awsApiCallAction", "api"),
        "remote_ip": remote.get("ipAddressV4"),
        "remote_country": _get(remote, "country", "countryName"),
        "first_seen": _get(svc, "eventFirstSeen"),
        "last_seen": _get(svc, "eventLastSeen"),
        "finding_count": _get(svc, "count"),
        "archived": _get(svc, "archived"),
        # Absent means "not a sample": False (not NULL) so `WHERE NOT sample` keeps real findings.
        "sample": sample if isinstance(sample, bool) else str(sample).lower() == "true",
        "detector_id": _get(svc, "detectorId"),
    }


def parse_findings(text: bytes) -> list[dict]:
    findings = []
    for n, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            f = _decode(line)
        except msgspec.DecodeError as e:
            raise ObjectError(f"line {n + 1}: invalid JSON ({e}); a truncated upload looks like this") from e
        if not isinstance(f, dict) or "id" not in f or "type" not in f:
            raise ObjectError(f"line {n + 1}: not a GuardDuty finding (no 'id'/'type')")
        if not isinstance(f.get("updatedAt"), str):
            raise ObjectError(f"line {n + 1}: finding {f['id']} has no updatedAt")
        findings.append(f)
    return findings


def normalize(data: bytes, obj: LogObject, uri: str, ingested_at: dt.datetime) -> pa.Table:
    findings = parse_findings(gunzip(data))
    n = len(findings)
    rows = [_pivots(f) for f in findings]
    cols: dict[str, pa.Array] = {}
    for c in _RAW:
        values = [f.get(c.name) for f in findings]
        if c.type == "json":
            cols[c.name] = json_from_python(values)
        else:
            try:
                cols[c.name] = pa.array(values, schema.arrow_type(c))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise ObjectError(f"field {c.name!r} has an unexpected type: {e}") from e
    for name in ("severity_label", "resource_type", "instance_id", "access_key_id", "principal_id", "user_name",
                 "user_type", "action_type", "api", "remote_ip", "remote_country", "detector_id"):
        cols[name] = pa.array([r[name] if isinstance(r[name], str) else None for r in rows], pa.string())
    cols["first_seen"] = parse_utc(pa.array([r["first_seen"] for r in rows], pa.string()), "service.eventFirstSeen")
    cols["last_seen"] = parse_utc(pa.array([r["last_seen"] for r in rows], pa.string()), "service.eventLastSeen")
    cols["finding_count"] = pa.array([r["finding_count"] if isinstance(r["finding_count"], int) else None for r in rows], pa.int64())
    cols["archived"] = pa.array([r["archived"] if isinstance(r["archived"], bool) else None for r in rows], pa.bool_())
    cols["sample"] = pa.array([r["sample"] for r in rows], pa.bool_())
    cols["created_at"] = parse_utc(cols["createdAt"], "createdAt")
    event_time = parse_utc(cols["updatedAt"], "updatedAt")
    cols["event_time"] = event_time
    cols["actor"] = pa.array([r["user_name"] or r["principal_id"] or r["instance_id"] for r in rows], pa.string())
    cols["unmapped"] = json_from_python(
        [{k: v for k, v in f.items() if k not in _RAW_NAMES and k not in _CONSUMED} or None for f in findings]
    )
    cols["source_object"] = pa.repeat(pa.scalar(uri, pa.string()), n)
    cols["source_index"] = pa.array(range(n), pa.int64())
    cols["ingested_at"] = pa.repeat(pa.scalar(ingested_at, pa.timestamp("us", tz="UTC")), n)
    cols["event_date"] = event_time.cast(pa.date32())
    cols["account_id"] = pa.array([f.get("accountId") or obj.account for f in findings], pa.string())
    cols["region"] = pa.array([f.get("region") or obj.region for f in findings], pa.string())
    return pa.Table.from_arrays([cols[f.name] for f in _ARROW], schema=_ARROW)
