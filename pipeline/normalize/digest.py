"""CloudTrail digest object (gzip JSON, ``CloudTrail-Digest/``) → one row per ``schemas/cloudtrail_digests.yml``.

The row keeps the digest's documented fields as written, plus the SHA-256 of the uncompressed
content (the next digest's ``previousDigestHashValue``). The signature is S3 metadata, not part
of the bytes: ``soclake verify`` reads it from the source.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import orjson
import pyarrow as pa

from pipeline import schema
from pipeline.errors import ObjectError
from pipeline.layout import LogObject
from pipeline.normalize.common import (
    ACCOUNT_PATTERN,
    DEFAULT_MAX_OBJECT_BYTES,
    Normalized,
    gunzip,
    json_from_python,
    partition_value,
)
from pipeline.schema import arrow_type

TABLE = "cloudtrail_digests"
_SCHEMA = schema.load(TABLE)
_ARROW = schema.arrow_schema(TABLE)
_RAW = [c for c in _SCHEMA.file_columns if not c.derived]
_RAW_NAMES = {c.name for c in _RAW}
_NAME_RE = re.compile(r"_CloudTrail-Digest_[^_]+_(?P<trail>.+)_(?P<home>[a-z]{2}(?:-[a-z]+)+-\d)_\d{8}T\d{6}Z\.json\.gz$")
_REQUIRED = ("digestStartTime", "digestEndTime", "logFiles")


def _time(s, name: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(dt.UTC)
    except (AttributeError, TypeError, ValueError) as e:
        raise ObjectError(f"not a CloudTrail digest file: {name} {s!r} is not an ISO-8601 time") from e


def normalize(data: bytes, obj: LogObject, uri: str, ingested_at: dt.datetime,
              max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> Normalized:
    text = gunzip(data, max_bytes)
    whole = text.obj if isinstance(text, memoryview) else text  # hash what AWS hashes: every byte
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise ObjectError(f"invalid JSON ({e})") from e
    if not isinstance(doc, dict) or any(k not in doc for k in _REQUIRED):
        raise ObjectError("not a CloudTrail digest file: expected a JSON object with digestStartTime, "
                          "digestEndTime and logFiles")
    if not isinstance(doc["logFiles"], list) or not all(isinstance(f, dict) for f in doc["logFiles"]):
        raise ObjectError("not a CloudTrail digest file: logFiles is not a list of objects")
    start, end = _time(doc["digestStartTime"], "digestStartTime"), _time(doc["digestEndTime"], "digestEndTime")
    cols: dict[str, pa.Array] = {}
    for c in _RAW:
        value = doc.get(c.name)
        if c.type == "list<struct>":
            names = [f.name for f in c.fields or ()]
            value = [{n: (x.get(n) if isinstance(x.get(n), str) else None) for n in names} for x in value]
        elif not isinstance(value, str):
            value = None
        cols[c.name] = pa.array([value], arrow_type(c))
    m = _NAME_RE.search(obj.key)
    cols["trail"] = pa.array([m["trail"] if m else None], pa.string())
    cols["home_region"] = pa.array([m["home"] if m else None], pa.string())
    cols["digest_start"] = pa.array([start], pa.timestamp("us", tz="UTC"))
    cols["event_time"] = pa.array([end], pa.timestamp("us", tz="UTC"))
    cols["log_file_count"] = pa.array([len(doc["logFiles"])], pa.int64())
    cols["digest_sha256"] = pa.array([hashlib.sha256(whole).hexdigest()], pa.string())
    extra = {k: v for k, v in doc.items() if k not in _RAW_NAMES}
    cols["unmapped"] = json_from_python([extra or None])
    cols["source_object"] = pa.array([uri], pa.string())
    cols["source_index"] = pa.array([0], pa.int64())
    cols["ingested_at"] = pa.array([ingested_at], pa.timestamp("us", tz="UTC"))
    cols["event_date"] = pa.array([end.date()], pa.date32())
    cols["account_id"] = partition_value(cols["awsAccountId"], ACCOUNT_PATTERN, obj.account)
    cols["region"] = pa.array([obj.region], pa.string())
    return Normalized(pa.Table.from_arrays([cols[f.name] for f in _ARROW], schema=_ARROW), sha256=cols["digest_sha256"][0].as_py())
