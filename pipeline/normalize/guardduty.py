"""GuardDuty export object (gzip JSON Lines, one finding per line) → Arrow per ``schemas/guardduty.yml``.

Findings are few next to CloudTrail records, so this path favours clarity: each line is decoded
to a dict, the common pivots are lifted into columns, and ``resource``/``service`` stay whole as JSON.
"""

from __future__ import annotations

import datetime as dt
import re

import msgspec
import pyarrow as pa

from pipeline import schema
from pipeline.layout import LogObject
from pipeline.normalize.common import (
    ACCOUNT_PATTERN,
    DEFAULT_MAX_OBJECT_BYTES,
    REGION_PATTERN,
    Normalized,
    Rejected,
    event_times,
    gunzip,
    json_from_python,
    partition_value,
    times_or_null,
    truncation_hint,
)

TABLE = "guardduty"
_ARROW = schema.arrow_schema(TABLE)
_RAW = [c for c in schema.load(TABLE).file_columns if not c.derived and "." not in (c.source or "")]
_RAW_NAMES = {c.name for c in _RAW}
#: Top-level keys that feed partition columns rather than a column of their own.
_CONSUMED = {"region"}
_ACTIONS = ("awsApiCallAction", "networkConnectionAction", "kubernetesApiCallAction", "rdsLoginAttemptAction")
_decode = msgspec.json.Decoder().decode
_REGION_RE = re.compile(REGION_PATTERN)


def _REGION_OK(v) -> bool:  # noqa: N802 - reads as the constant it stands beside
    return isinstance(v, str) and _REGION_RE.match(v) is not None


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


def parse_findings(text) -> tuple[list[dict], list[int], list[Rejected]]:
    """Findings, their 0-based line numbers, and the lines that are not findings (with why)."""
    findings, lines, rejected = [], [], []
    for n, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            f = _decode(line)
        except msgspec.DecodeError as e:
            rejected.append(Rejected(n, f"line {n + 1}: invalid JSON ({e}){truncation_hint(e)}"))
            continue
        except RecursionError:
            rejected.append(Rejected(n, f"line {n + 1}: JSON nested deeper than the decoder's limit (~1000 levels)"))
            continue
        if not isinstance(f, dict) or "id" not in f or "type" not in f:
            rejected.append(Rejected(n, f"line {n + 1}: not a GuardDuty finding (no 'id'/'type')"))
            continue
        if not isinstance(f.get("updatedAt"), str):
            rejected.append(Rejected(n, f"line {n + 1}: finding {f['id']} has no updatedAt (or not a string)"))
            continue
        findings.append(f)
        lines.append(n)
    return findings, lines, rejected


def _column(c: schema.Column, findings: list[dict], unmapped: list[dict]) -> pa.Array:
    """One scalar column; a value of an unexpected type goes to ``unmapped`` (as CloudTrail's do)."""
    values = [f.get(c.name) for f in findings]
    typ = schema.arrow_type(c)
    try:
        return pa.array(values, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    for k, v in enumerate(values):
        try:
            pa.array([v], typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            unmapped[k][c.name] = v
            values[k] = None
    return pa.array(values, typ)


def normalize(data: bytes, obj: LogObject, uri: str, ingested_at: dt.datetime,
              max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> Normalized:
    findings, lines, rejected = parse_findings(gunzip(data, max_bytes))
    event_time, bad = event_times(pa.array([f["updatedAt"] for f in findings], pa.string()), obj, "updatedAt")
    if bad:
        for pos, why in bad.items():
            rejected.append(Rejected(lines[pos], f"line {lines[pos] + 1}: finding {findings[pos]['id']} {why}"
                                     if why.startswith("has no") else f"line {lines[pos] + 1}: finding {findings[pos]['id']}: {why}"))
        rejected.sort(key=lambda r: r.index)
        keep = [k for k in range(len(findings)) if k not in bad]
        findings, lines = [findings[k] for k in keep], [lines[k] for k in keep]
        event_time = event_time.take(pa.array(keep, pa.int64()))
    n = len(findings)
    rows = [_pivots(f) for f in findings]
    unmapped = [{k: v for k, v in f.items() if k not in _RAW_NAMES and not (k in _CONSUMED and _REGION_OK(v))}
                for f in findings]
    cols: dict[str, pa.Array] = {}
    for c in _RAW:
        cols[c.name] = json_from_python([f.get(c.name) for f in findings]) if c.type == "json" else _column(c, findings, unmapped)
    for name in ("severity_label", "resource_type", "instance_id", "access_key_id", "principal_id", "user_name",
                 "user_type", "action_type", "api", "remote_ip", "remote_country", "detector_id"):
        cols[name] = pa.array([r[name] if isinstance(r[name], str) else None for r in rows], pa.string())
    cols["first_seen"] = times_or_null(pa.array([_str(r["first_seen"]) for r in rows], pa.string()))
    cols["last_seen"] = times_or_null(pa.array([_str(r["last_seen"]) for r in rows], pa.string()))
    cols["finding_count"] = pa.array([r["finding_count"] if _int64(r["finding_count"]) else None for r in rows], pa.int64())
    cols["archived"] = pa.array([r["archived"] if isinstance(r["archived"], bool) else None for r in rows], pa.bool_())
    cols["sample"] = pa.array([r["sample"] for r in rows], pa.bool_())
    cols["created_at"] = times_or_null(cols["createdAt"])
    cols["event_time"] = event_time
    cols["actor"] = pa.array([r["user_name"] or r["principal_id"] or r["instance_id"] for r in rows], pa.string())
    cols["unmapped"] = json_from_python([u or None for u in unmapped])
    cols["source_object"] = pa.repeat(pa.scalar(uri, pa.string()), n)
    cols["source_index"] = pa.array(lines, pa.int64())
    cols["ingested_at"] = pa.repeat(pa.scalar(ingested_at, pa.timestamp("us", tz="UTC")), n)
    cols["event_date"] = event_time.cast(pa.date32())
    cols["account_id"] = partition_value(pa.array([_str(f.get("accountId")) for f in findings], pa.string()),
                                         ACCOUNT_PATTERN, obj.account)
    cols["region"] = partition_value(pa.array([_str(f.get("region")) for f in findings], pa.string()), REGION_PATTERN, obj.region)
    return Normalized(pa.Table.from_arrays([cols[f.name] for f in _ARROW], schema=_ARROW), rejected)


def _str(v):
    return v if isinstance(v, str) else None


def _int64(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -(1 << 63) <= v < (1 << 63)
