"""CloudTrail log object (gzip ``{"Records": [...]}``) → Arrow table per ``schemas/cloudtrail.yml``.

Fast path: the compiled parser (``_records``, when built) reads the text straight into Arrow
column parts; whatever it does not plainly take, one msgspec decode of the whole file into typed
Structs generated from the schema, with the free-form objects kept as ``msgspec.Raw`` (their
bytes, never parsed and re-serialised), then one Arrow array per column. Both give the same
arrays. Structs forbid unknown fields, so a record carrying a field the schema does not know (or
a value of an unexpected type) sends that file down the slow path, which decodes record by record
and moves what does not fit into ``unmapped``: nothing is dropped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
from array import array
from dataclasses import dataclass

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema
from pipeline.errors import ObjectError
from pipeline.layout import LogObject
from pipeline.normalize.common import (
    ACCOUNT_PATTERN,
    DEFAULT_MAX_OBJECT_BYTES,
    EARLIEST_EVENT,
    JSON,
    MAX_AFTER_DELIVERY,
    REGION_PATTERN,
    Normalized,
    Rejected,
    compile_builder,
    compile_direct,
    compile_parsed,
    compile_struct,
    delivered_at,
    event_times,
    gunzip,
    json_from_python,
    partition_value,
    truncation_hint,
)

try:  # compiled by pip install (setup.py); without it msgspec decodes every object
    from pipeline.normalize import _records
except ImportError:  # pragma: no cover - no C compiler where soclake was installed
    _records = None

TABLE = "cloudtrail"
_SCHEMA = schema.load(TABLE)
_RAW_COLUMNS = [c for c in _SCHEMA.file_columns if not c.derived]
_ARROW = schema.arrow_schema(TABLE)

_TS = pa.timestamp("us", tz="UTC")
_SCALAR_PY = {"string": str, "bool": bool, "int64": int, "double": float}


def _py_type(col: schema.Column, strict: bool, name: str):
    if col.type == "json":
        return msgspec.Raw
    if col.type in ("struct", "list<struct>"):
        st = _struct(col.fields or [], f"{name}_{col.name}", strict)
        return (st if col.type == "struct" else list[st]) | None
    return _SCALAR_PY[col.type] | None


def _default(col: schema.Column):
    return msgspec.Raw() if col.type == "json" else None


def _struct(fields: list[schema.Column], name: str, strict: bool, required=(), raw=()):
    spec = []
    for f in fields:
        t = msgspec.Raw if f.name in raw else _py_type(f, strict, name)
        default = msgspec.Raw() if f.name in raw else _default(f)
        spec.append((f.name, t) if f.name in required else (f.name, t, default))
    return msgspec.defstruct(name, spec, kw_only=True, forbid_unknown_fields=strict, gc=False)


#: Struct columns whose values repeat within an object (one principal's session, one TLS
#: setup): kept as raw bytes while decoding the file; each distinct value is then decoded
#: (strictly) and converted to Arrow once, and the column is a `take` of those.
_SHARED = ("userIdentity", "tlsDetails")
_SHARED_DECODERS = {
    c.name: msgspec.json.Decoder(_struct(c.fields or [], c.name, strict=True)).decode for c in _RAW_COLUMNS if c.name in _SHARED
}

Record = _struct(_RAW_COLUMNS, "Record", strict=True, required=("eventTime",), raw=_SHARED)
LenientRecord = _struct(_RAW_COLUMNS, "LenientRecord", strict=False, required=("eventTime",), raw=_SHARED)
_File = msgspec.defstruct("File", [("Records", list[Record])])
_RawFile = msgspec.defstruct("RawFile", [("Records", list[msgspec.Raw])])
_decode_file = msgspec.json.Decoder(_File).decode
_decode_raw_file = msgspec.json.Decoder(_RawFile).decode
_decode_record = msgspec.json.Decoder(Record).decode
_decode_lenient = msgspec.json.Decoder(LenientRecord).decode
_decode_any = msgspec.json.Decoder().decode



def _distinct_builder(col: schema.Column):
    """(distinct raw values, int32 index per row) → the struct column: each distinct value decoded once."""
    decode, build = _SHARED_DECODERS[col.name], compile_struct(col.fields or [])

    def from_distinct(distinct, indices) -> pa.Array:
        values = [None if k is None else decode(k) for k in distinct]  # ValidationError → slow path
        return build(values).take(pa.Array.from_buffers(pa.int32(), len(indices) // 4, [None, pa.py_buffer(indices)]))

    return from_distinct


def _shared_builder(col: schema.Column):
    """The pure-Python form: distinct values found with a dict of the raw bytes."""
    from_distinct = _distinct_builder(col)

    def build_shared(raws) -> pa.Array:
        seen: dict[bytes, int] = {}
        idx = [seen.setdefault(k if k != b"null" else b"", len(seen)) for k in map(bytes, raws)]
        return from_distinct([k or None for k in seen], array("i", idx).tobytes())

    return build_shared


_BUILDERS = [_shared_builder(c) if c.name in _SHARED else compile_builder(c) for c in _RAW_COLUMNS]
#: The compiled column build (None without the extension): same columns, no per-row Python objects.
_DIRECT = compile_direct(_RAW_COLUMNS, {c.name: _distinct_builder(c) for c in _RAW_COLUMNS if c.name in _SHARED})
_ACTOR_FIELDS = ("arn", "invokedBy", "userName", "principalId", "accountId")


def _parser():
    """The compiled parser of this schema (None without the extension): the text straight into column parts."""
    if _records is None:
        return None
    kinds = {"string": _records.STRING, "json": _records.JSON, "bool": _records.BOOL, "list<struct>": _records.LIST}
    items = next(c for c in _RAW_COLUMNS if c.type == "list<struct>").fields or []
    if any(f.type != "string" for f in items) or sum(c.type == "list<struct>" for c in _RAW_COLUMNS) != 1:
        return None
    return _records.Parser([c.name for c in _RAW_COLUMNS],
                           [_records.SHARED if c.name in _SHARED else kinds[c.type] for c in _RAW_COLUMNS],
                           [f.name for f in items], required="eventTime")


#: The compiled parser (None without the extension) and the build of its parts into arrays.
_PARSER = _parser()
_FROM_PARSED = compile_parsed(_RAW_COLUMNS, {c.name: _distinct_builder(c) for c in _RAW_COLUMNS if c.name in _SHARED})


def _build_parsed(parsed: list) -> dict[str, pa.Array]:
    """The raw columns of objects the compiled parser took, rows in order (one build for the batch)."""
    arrays = _FROM_PARSED(sum(map(len, parsed)), _PARSER.columns(parsed))
    return {c.name: a for c, a in zip(_RAW_COLUMNS, arrays)}


def _build_columns(records: list) -> dict[str, pa.Array]:
    arrays = _DIRECT(records) if _DIRECT is not None else None
    if arrays is None:
        return _build_columns_python(records)
    return {c.name: a for c, a in zip(_RAW_COLUMNS, arrays)}


def _build_columns_python(records: list) -> dict[str, pa.Array]:
    columns = zip(*map(msgspec.structs.astuple, records)) if records else [[] for _ in _RAW_COLUMNS]
    return {c.name: build(list(values)) for c, build, values in zip(_RAW_COLUMNS, _BUILDERS, columns)}
_PATH_RE = re.compile(r"at `\$\.([A-Za-z0-9_]+)")


def normalize(data: bytes, obj: LogObject, uri: str, ingested_at: dt.datetime,
              max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> Normalized:
    """Normalise one CloudTrail object.

    Raises ObjectError (the quarantine reason) when the object as a whole is unusable; a record
    that is unusable on its own (not an object, no or an implausible ``eventTime``) is left out
    and listed in ``rejected`` with its index and reason.
    """
    out = decode(data, obj, uri, ingested_at, max_bytes)
    return finish(out, ingested_at) if isinstance(out, Decoded) else out


@dataclass
class Decoded:
    """An object whose records decoded on the fast path; its rows are built later, alone or with others."""

    text: bytes | bytearray | memoryview  # kept for the slow path, should the build find a mistyped nested value
    records: list | None  # the msgspec Structs; None when the compiled parser took the object
    obj: LogObject
    uri: str
    sha256: str
    parsed: object = None  # the compiled parser's ``Parsed`` (it reads ``text``, which it keeps alive)

    @property
    def rows(self) -> int:
        return len(self.records) if self.records is not None else len(self.parsed)

    def columns(self) -> dict[str, pa.Array]:
        return _build_columns(self.records) if self.records is not None else _build_parsed([self.parsed])


def decode(data: bytes, obj: LogObject, uri: str, ingested_at: dt.datetime,
           max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> Decoded | Normalized:
    """Gunzip, hash and decode one object: Decoded on the fast path (rows built later by :func:`finish`
    or :func:`build_many`), or the finished Normalized when it took the slow path."""
    # What a CloudTrail digest lists for this file: SHA-256 of every uncompressed byte (BOM included).
    hasher = hashlib.sha256()
    text = gunzip(data, max_bytes, hasher)
    sha256 = hasher.hexdigest()
    if len(text) <= 64 and not bytes(text).strip():
        raise ObjectError("no JSON in it: the gzip stream decompresses to nothing (or only whitespace)")
    parsed = _PARSER.parse(text) if _PARSER is not None else None
    if parsed is not None:  # else: not plainly what the Structs take; msgspec decides, as without the parser
        return Decoded(text, None, obj, uri, sha256, parsed)
    try:
        return Decoded(text, _decode_file(text).Records, obj, uri, sha256)
    except msgspec.ValidationError:
        pass  # an unknown field or an unexpected type somewhere: map record by record
    except msgspec.DecodeError as e:
        raise ObjectError(f"invalid JSON ({e}){truncation_hint(e)}") from e
    except RecursionError as e:
        raise ObjectError(_TOO_DEEP) from e
    return _slow(text, obj, uri, ingested_at, sha256)


def _slow(text, obj: LogObject, uri: str, ingested_at: dt.datetime, sha256: str) -> Normalized:
    records, unmapped, indices, rejected = _decode_slow(text)
    out = _to_table(_build_columns(records), unmapped, indices, rejected, obj, uri, ingested_at)
    out.sha256 = sha256
    return out


def finish(d: Decoded, ingested_at: dt.datetime) -> Normalized:
    """The rows of one decoded object (the slow path if a repeated struct holds a mistyped value)."""
    try:
        out = _to_table(d.columns(), None, range(d.rows), [], d.obj, d.uri, ingested_at)
    except (msgspec.ValidationError, msgspec.DecodeError):  # DecodeError: invalid UTF-8 inside a repeated struct
        return _slow(d.text, d.obj, d.uri, ingested_at, d.sha256)
    out.sha256 = d.sha256
    return out


def build_many(batch: list[Decoded], ingested_at: dt.datetime) -> tuple[pa.Table, list[Normalized]]:
    """One table for several decoded objects, rows in order (the column build's fixed costs paid once).

    Returns the table (rejected records left out) and per object a Normalized without a table:
    its row count in the table (``rows``), its rejected records and its SHA-256. The same rows
    as :func:`finish` per object and concatenated (tests compare both). Raises whatever the build
    raises (e.g. a mistyped value in a repeated struct): the caller then finishes each object alone.
    """
    sizes = [d.rows for d in batch]
    n = sum(sizes)
    if all(d.records is None for d in batch):
        cols = _build_parsed([d.parsed for d in batch])
    else:  # some object the parser declined but msgspec took: Structs for all (the parser takes no more than msgspec)
        cols = _build_columns([r for d in batch for r in (d.records if d.records is not None else _decode_file(d.text).Records)])
    starts = list(itertools.accumulate(sizes, initial=0))
    event_time, bad = _event_times_many(cols["eventTime"], batch, starts)
    cols["event_time"] = event_time
    cols["actor"] = pc.coalesce(*(pc.struct_field(cols["userIdentity"], f) for f in _ACTOR_FIELDS))
    cols["unmapped"] = pa.nulls(n, JSON)
    owner = pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(array("i", _repeat_each(range(len(batch)), sizes)))])
    cols["source_object"] = pa.array([d.uri for d in batch], pa.string()).take(owner)
    cols["source_index"] = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(array("q", _ranges(sizes)))])
    cols["ingested_at"] = pa.repeat(pa.scalar(ingested_at, pa.timestamp("us", tz="UTC")), n)
    cols["event_date"] = event_time.cast(pa.date32())
    cols["account_id"] = _partition_many(cols["recipientAccountId"], ACCOUNT_PATTERN, [d.obj.account for d in batch], starts)
    cols["region"] = _partition_many(cols["awsRegion"], REGION_PATTERN, [d.obj.region for d in batch], starts)
    table = pa.Table.from_arrays([cols[f.name] for f in _ARROW], schema=_ARROW)
    outs = [Normalized(None, [], d.sha256) for d in batch]
    if bad:
        ids = cols["eventID"].to_pylist()
        obj_of = owner.to_pylist()
        for pos, why in sorted(bad.items()):
            k = obj_of[pos]
            i = pos - starts[k]
            outs[k].rejected.append(Rejected(i, f"record {i} (eventID {ids[pos]}) {why}" if why.startswith("has no")
                                             else f"record {i} (eventID {ids[pos]}): {why}"))
        table = table.filter(pa.array([i not in bad for i in range(n)], pa.bool_()))
    for out, size in zip(outs, sizes):
        out.rows = size - len(out.rejected)
    return table, outs


def _repeat_each(values, counts):
    return itertools.chain.from_iterable(itertools.repeat(v, k) for v, k in zip(values, counts))


def _ranges(sizes):
    return itertools.chain.from_iterable(map(range, sizes))


def _event_times_many(strings: pa.Array, batch: list[Decoded], starts: list[int]) -> tuple[pa.Array, dict[int, str]]:
    """:func:`event_times` over several objects: one check when every time is plausible for all of them."""
    latest = min(delivered_at(d.obj)[0] for d in batch) + MAX_AFTER_DELIVERY
    try:
        ts = strings.cast(_TS)
        bounds = pc.min_max(ts).as_py() if len(ts) else None
        if ts.null_count == 0 and (bounds is None or (bounds["min"] >= EARLIEST_EVENT and bounds["max"] <= latest)):
            return ts, {}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    pieces, bad = [], {}
    for d, a, b in zip(batch, starts, starts[1:]):
        t, why = event_times(strings.slice(a, b - a), d.obj, "eventTime")
        pieces.append(t)
        bad.update({a + i: w for i, w in why.items()})
    return pa.concat_arrays(pieces), bad


def _partition_many(values: pa.Array, pattern: str, fallbacks: list[str], starts: list[int]) -> pa.Array:
    """:func:`partition_value` over several objects, each with its own key's value as the fallback."""
    if len(set(fallbacks)) == 1:
        return partition_value(values, pattern, fallbacks[0])
    distinct = pc.unique(values)
    if distinct.null_count == 0 and pc.all(pc.match_substring_regex(distinct, pattern)).as_py():
        return values
    return pa.concat_arrays([partition_value(values.slice(a, b - a), pattern, f)
                             for f, a, b in zip(fallbacks, starts, starts[1:])])


_TOO_DEEP = "JSON nested deeper than the decoder's limit (~1000 levels); no AWS log nests like this"


def _decode_slow(text) -> tuple[list, list, list[int], list[Rejected]]:
    try:
        raws = _decode_raw_file(text).Records
    except msgspec.ValidationError as e:
        raise ObjectError(f'not a CloudTrail log file: expected {{"Records": [...]}} ({e})') from e
    except RecursionError as e:
        raise ObjectError(_TOO_DEEP) from e
    records, unmapped, indices, rejected = [], [], [], []
    for i, raw in enumerate(raws):
        try:
            rec = _decode_record(raw)
            for name, decode in _SHARED_DECODERS.items():
                value = getattr(rec, name)
                if value and value != b"null":
                    decode(value)
            extra = None
        except msgspec.ValidationError:  # (a DecodeError too: caught first)
            try:
                rec, extra = _decode_record_lenient(i, raw)
            except ObjectError as e:
                rejected.append(Rejected(i, str(e)))
                continue
            except msgspec.DecodeError as e:
                rejected.append(Rejected(i, f"record {i}: not valid JSON ({e})"))
                continue
        except msgspec.DecodeError as e:  # invalid UTF-8 inside a value kept raw (userIdentity, tlsDetails)
            rejected.append(Rejected(i, f"record {i}: not valid JSON ({e})"))
            continue
        records.append(rec)
        unmapped.append(extra or None)
        indices.append(i)
    return records, unmapped, indices, rejected


def _decode_record_lenient(i: int, raw: msgspec.Raw):
    """Decode one record that the strict Struct rejected; what does not fit goes to ``unmapped``."""
    obj = _decode_any(raw)
    if not isinstance(obj, dict):
        raise ObjectError(f"record {i} is not a JSON object (a {_JSON_KIND.get(type(obj), type(obj).__name__)})")
    when = obj.get("eventTime")
    if when is None:
        raise ObjectError(f"record {i} (eventID {obj.get('eventID')}) has no eventTime (missing or null)")
    if not isinstance(when, str):
        raise ObjectError(f"record {i} (eventID {obj.get('eventID')}): eventTime {when!r} is not a string")
    extra: dict = {}
    _split_unknown(obj, _RAW_COLUMNS, "", extra)
    for _ in range(len(obj) + 1):
        try:
            rec = _decode_lenient(msgspec.json.encode(obj))
            for name, decode in _SHARED_DECODERS.items():
                raw = getattr(rec, name)
                try:
                    if raw and raw != b"null":
                        decode(raw)
                except msgspec.ValidationError:  # a nested value of an unexpected type
                    extra[name] = obj.get(name)
                    setattr(rec, name, msgspec.Raw())
            return rec, extra
        except msgspec.ValidationError as e:
            m = _PATH_RE.search(str(e))
            key = m.group(1) if m else None
            if key is None or key == "eventTime" or key not in obj:
                raise ObjectError(f"record {i}: {e}") from e
            extra[key] = obj.pop(key)  # wrong type for the schema: keep the value, unmapped
    raise ObjectError(f"record {i}: cannot be mapped onto the schema")


_JSON_KIND = {int: "number", float: "number", str: "string", list: "list", bool: "boolean", type(None): "null"}


def _split_unknown(obj: dict, cols: list[schema.Column], prefix: str, extra: dict) -> None:
    known = {c.name: c for c in cols}
    for key in list(obj):
        col = known.get(key)
        if col is None:
            extra[prefix + key] = obj.pop(key)
        elif col.type == "struct" and isinstance(obj[key], dict):
            _split_unknown(obj[key], col.fields or [], f"{prefix}{key}.", extra)
        elif col.type == "list<struct>" and isinstance(obj[key], list):
            for n, item in enumerate(obj[key]):
                if isinstance(item, dict):
                    _split_unknown(item, col.fields or [], f"{prefix}{key}[{n}].", extra)


def _to_table(cols: dict[str, pa.Array], unmapped: list | None, indices, rejected: list[Rejected], obj: LogObject,
              uri: str, ingested_at: dt.datetime) -> Normalized:
    n = len(cols["eventTime"])
    event_time, bad = event_times(cols["eventTime"], obj, "eventTime")
    cols["event_time"] = event_time
    cols["actor"] = pc.coalesce(*(pc.struct_field(cols["userIdentity"], f) for f in _ACTOR_FIELDS))
    cols["unmapped"] = json_from_python(unmapped if unmapped is not None else [None] * n)
    cols["source_object"] = pa.repeat(pa.scalar(uri, pa.string()), n)
    cols["source_index"] = pa.array(indices, pa.int64())
    cols["ingested_at"] = pa.repeat(pa.scalar(ingested_at, pa.timestamp("us", tz="UTC")), n)
    cols["event_date"] = event_time.cast(pa.date32())
    cols["account_id"] = partition_value(cols["recipientAccountId"], ACCOUNT_PATTERN, obj.account)
    cols["region"] = partition_value(cols["awsRegion"], REGION_PATTERN, obj.region)
    table = pa.Table.from_arrays([cols[f.name] for f in _ARROW], schema=_ARROW)
    if bad:
        ids = cols["eventID"].to_pylist()
        for pos, why in bad.items():
            rejected.append(Rejected(indices[pos], f"record {indices[pos]} (eventID {ids[pos]}) {why}"
                                     if why.startswith("has no") else f"record {indices[pos]} (eventID {ids[pos]}): {why}"))
        rejected.sort(key=lambda r: r.index)
        table = table.filter(pa.array([i not in bad for i in range(n)], pa.bool_()))
    return Normalized(table, rejected)
