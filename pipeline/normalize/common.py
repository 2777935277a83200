"""Pieces every normaliser shares: bounded gunzip, event-time checks, JSON and struct columns."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import re
import zlib
from dataclasses import dataclass, field

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import ObjectError
from pipeline.schema import Column, arrow_type

try:  # ISA-L gunzips ~3x faster than zlib; same format, same errors surfaced below.
    from isal.isal_zlib import _GzipReader
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover - isal is a dependency; keep working without it
    import gzip as _gzip

    _IsalError = zlib.error

    def _GzipReader(data):  # noqa: N802 - stands in for the class
        return _gzip.GzipFile(fileobj=io.BytesIO(data))

try:  # compiled by pip install (setup.py); the pure-Python builder below is the fallback
    from pipeline.normalize import _columns
    from pipeline.normalize._columns import json_buffers, utf8_buffers
except ImportError:  # pragma: no cover - no C compiler where soclake was installed
    _columns = json_buffers = utf8_buffers = None

JSON = pa.json_(pa.string())
_NULL = msgspec.Raw(b"null")
_EMPTY = msgspec.Raw()


#: Default cap on the decompressed bytes of one object (``IngestOptions.max_object_bytes``).
DEFAULT_MAX_OBJECT_BYTES = 2 << 30
_CHUNK = 64 << 10  # fits a core's L2 cache: the hasher and the buffer read it while it is there
_BOM = b"\xef\xbb\xbf"


def _mb(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MB" if n >= 1 << 20 else f"{n:,} bytes"


def gunzip(data: bytes, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES, hasher=None) -> bytearray | memoryview:
    """Decompress one object (every gzip member), never holding more than ``max_bytes`` of output.

    Streams in chunks into one growing buffer (no second copy at the end), so a gzip bomb costs
    at most the cap before it is quarantined. A leading UTF-8 byte-order mark is skipped.
    ``hasher`` (a hashlib object) is fed every uncompressed byte, BOM included, chunk by chunk
    while it is still in the core's cache: gunzip and SHA-256 together cost ~20% less than one
    after the other over the whole text.
    """
    if not data:
        raise ObjectError("empty object (0 bytes): AWS never delivers empty log files")
    if data[:2] != b"\x1f\x8b":
        raise ObjectError("not gzip-compressed (AWS delivers .json.gz / .jsonl.gz)")
    out = bytearray()
    try:
        reader = _GzipReader(data)
        while chunk := reader.read(min(_CHUNK, max_bytes + 1 - len(out))):
            if hasher is not None:
                hasher.update(chunk)
            out += chunk
            if len(out) > max_bytes:
                raise ObjectError(
                    f"decompresses to more than {_mb(max_bytes)} ({_mb(len(data))} compressed): over the "
                    "per-object cap; raise it with --max-object-mb to ingest this object")
    except (OSError, EOFError, zlib.error, _IsalError, ValueError) as e:
        raise ObjectError(f"corrupt gzip: {e}") from e
    if out[:3] == _BOM:
        return memoryview(out)[3:]
    return out


#: No AWS log is older than this; anything earlier is a broken clock or a broken record.
EARLIEST_EVENT = dt.datetime(2010, 1, 1, tzinfo=dt.UTC)
#: How far a record's time may lie after its object was delivered (clock skew, generously).
MAX_AFTER_DELIVERY = dt.timedelta(days=1)
_KEY_TIME_RE = re.compile(r"_(\d{8}T\d{4})Z_")
_NANOS_RE = re.compile(r"(\.\d{6})\d+")
_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True, slots=True)
class Rejected:
    """One record of an object that was not ingested: its position (``source_index``) and why."""

    index: int
    reason: str


@dataclass
class Normalized:
    """An object's rows, and the records of it that were dead-lettered instead."""

    table: pa.Table | None  # None: the rows are in a table shared with other objects (``rows`` of them)
    rejected: list[Rejected] = field(default_factory=list)
    sha256: str | None = None  # hex SHA-256 of the uncompressed content, as CloudTrail digests list it
    rows: int = 0  # when ``table`` is None: this object's rows in the shared table


def truncation_hint(e: Exception) -> str:
    return "; a truncated upload looks like this" if "truncated" in str(e) else ""


def delivered_at(obj) -> tuple[dt.datetime, str]:
    """When AWS delivered the object at the latest, and how to say it: the key's ``YYYYMMDDTHHMMZ``,
    else the end of the key's date (GuardDuty keys carry only the date)."""
    m = _KEY_TIME_RE.search(obj.key.rsplit("/", 1)[-1])
    if m:
        try:
            at = dt.datetime.strptime(m[1], "%Y%m%dT%H%M").replace(tzinfo=dt.UTC)
            return at, f"delivered ({at:%Y-%m-%dT%H:%MZ})"
        except ValueError:
            pass
    return dt.datetime.combine(obj.date + dt.timedelta(days=1), dt.time(), dt.UTC), f"delivered (on {obj.date}, per its key)"


def _parse_one(s: str):
    for candidate in (s, _NANOS_RE.sub(r"\1", s, count=1)):
        try:
            return pa.array([candidate]).cast(_TS)[0].as_py()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OverflowError):
            continue
    return None


def _short(s) -> str:
    r = repr(s)
    return r if len(r) <= 80 else r[:77] + "..."


def event_times(strings: pa.Array, obj, what: str) -> tuple[pa.Array, dict[int, str]]:
    """Parse the time that partitions a record; returns the timestamps and {position: why rejected}.

    A time is accepted when it is ISO-8601 with ``Z`` or a numeric offset (converted to UTC),
    not before 2010-01-01 and not more than a day after the object's delivery. Rejected
    positions are NULL in the returned array.
    """
    delivered, delivery = delivered_at(obj)
    latest = delivered + MAX_AFTER_DELIVERY
    try:
        ts = strings.cast(_TS)
        bounds = pc.min_max(ts).as_py() if len(ts) else None
        if ts.null_count == 0 and (bounds is None or (bounds["min"] >= EARLIEST_EVENT and bounds["max"] <= latest)):
            return ts, {}  # every record is fine: the fast path
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values, bad = [], {}
    for i, s in enumerate(strings.to_pylist()):
        t = None if s is None else _parse_one(s)
        if s is None:
            bad[i] = f"has no {what} (missing or null)"
        elif t is None:
            bad[i] = f"{what} {_short(s)} is not an ISO-8601 time with Z or a UTC offset"
        elif t < EARLIEST_EVENT:
            bad[i] = f"{what} {s} is before {EARLIEST_EVENT:%Y-%m-%d}: no AWS log is that old"
        elif t > latest:
            bad[i] = f"{what} {s} is more than {MAX_AFTER_DELIVERY.days} day after the object was {delivery}"
        values.append(None if i in bad else t)
    return pa.array(values, _TS), bad


def times_or_null(strings: pa.Array) -> pa.Array:
    """Secondary times (not partition keys): parsed where they can be, NULL where not (the raw text stays)."""
    try:
        return strings.cast(_TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if s is None else _parse_one(s) for s in strings.to_pylist()], _TS)


def json_array(raws) -> pa.Array:
    """A JSON column from msgspec.Raw values (their bytes, never parsed): empty or null → NULL."""
    n = len(raws)
    if json_buffers is not None:
        offsets, data, validity, nulls = json_buffers(raws)
        if nulls == n:
            return pa.nulls(n, JSON)
        arr = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data),
                                          None if validity is None else pa.py_buffer(validity), nulls)
        return pa.ExtensionArray.from_storage(JSON, arr)
    lens = list(map(len, raws))
    if not any(lens):
        return pa.nulls(n, JSON)
    offsets = pa.array(itertools.accumulate(lens, initial=0), pa.int32())
    arr = pa.StringArray.from_buffers(n, offsets.buffers()[1], pa.py_buffer(b"".join(raws)))
    if 0 in lens or 4 in lens:  # absent, or possibly the literal null (the only 4-byte value that is)
        valid = pa.array([ln > 0 and (ln != 4 or r != _NULL) for ln, r in zip(lens, raws)])
        arr = pc.if_else(valid, arr, pa.scalar(None, pa.string()))
    return pa.ExtensionArray.from_storage(JSON, arr)


def json_from_python(values: list) -> pa.Array:
    """A JSON column from Python values (used on slow paths and for GuardDuty)."""
    if values.count(None) == len(values):
        return pa.nulls(len(values), JSON)
    enc = msgspec.json.encode
    strs = [None if v is None else enc(v).decode() for v in values]
    return pa.ExtensionArray.from_storage(JSON, pa.array(strs, pa.string()))


def compile_builder(col: Column):
    """A function turning a sequence of msgspec values for ``col`` into an Arrow array.

    Per-value Python work is what costs here, so types and field lists are resolved once,
    struct columns are transposed with ``astuple`` + ``zip`` (in C), and all-NULL columns
    (most optional CloudTrail fields) short-cut to ``pa.nulls``.
    """
    typ = arrow_type(col)
    if col.type == "json":
        return json_array  # Structs default free-form fields to Raw(), never None
    if col.type == "struct":
        return compile_struct(col.fields or [])
    if col.type == "list<struct>":
        child = compile_struct(col.fields or [])

        def build_list(values):
            if values.count(None) == len(values):
                return pa.nulls(len(values), typ)
            offsets, flat, mask = [0], [], []
            for v in values:
                if v is None:
                    mask.append(True)
                else:
                    mask.append(False)
                    flat.extend(v)
                offsets.append(len(flat))
            return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), child(flat), mask=pa.array(mask, pa.bool_()))
        return build_list

    if typ == pa.string():
        return build_strings

    def build_scalar(values):
        if values.count(None) == len(values):
            return pa.nulls(len(values), typ)
        return pa.array(values, typ)
    return build_scalar


def build_strings(values: list) -> pa.Array:
    """A utf8 column from ``str`` values (or None): compiled when the extension is built."""
    n = len(values)
    if values.count(None) == n:
        return pa.nulls(n, pa.string())
    if utf8_buffers is None:
        return pa.array(values, pa.string())
    offsets, data, validity, nulls = utf8_buffers(values)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data),
                                       None if validity is None else pa.py_buffer(validity), nulls)


def compile_struct(fields: list[Column]):
    """Builder of a struct array from msgspec Structs whose fields are ``fields``, in order."""
    builders = [compile_builder(f) for f in fields]
    arrow_fields = [pa.field(f.name, arrow_type(f)) for f in fields]
    typ = pa.struct(arrow_fields)
    blank = tuple(_EMPTY if f.type == "json" else None for f in fields)
    astuple = msgspec.structs.astuple

    def build_struct(values):
        n = len(values)
        nulls = values.count(None)
        if nulls == n:
            return pa.nulls(n, typ)
        if nulls:
            rows = [blank if v is None else astuple(v) for v in values]
        else:
            rows = list(map(astuple, values))
        columns = zip(*rows) if rows else [() for _ in fields]
        children = [b(c) for b, c in zip(builders, columns)]
        mask = pa.array([v is None for v in values], pa.bool_()) if nulls else None
        return pa.StructArray.from_arrays(children, fields=arrow_fields, mask=mask)
    return build_struct


def struct_array(fields: list[Column], values, nulls: int = 0) -> pa.Array:
    """A struct array from msgspec Structs (compiles a builder; hot paths keep theirs)."""
    return compile_struct(fields)(values)


ACCOUNT_PATTERN = r"^\d{12}$"
REGION_PATTERN = r"^[a-z]{2}(?:-[a-z]+)+-\d$"


def partition_value(values: pa.Array, pattern: str, fallback: str) -> pa.Array:
    """A partition column from a record field: the value when it is well-formed, else the key's.

    Partition values become folder names: a record's ``awsRegion`` of ``../x`` or ``a/b=c`` must
    not pick where files go. The record's own field keeps whatever it said.
    """
    distinct = pc.unique(values)  # an object's records name one or two accounts: test those, not every row
    if distinct.null_count == 0 and pc.all(pc.match_substring_regex(distinct, pattern)).as_py():
        return values
    ok = pc.fill_null(pc.match_substring_regex(values, pattern), False)
    return pc.if_else(ok, values, pa.scalar(fallback, pa.string()))


def _buf(b) -> pa.Buffer | None:
    return None if b is None else pa.py_buffer(b)


def compile_direct(fields: list[Column], shared: dict | None = None):
    """The compiled form of a table's top-level column build, or None where the extension is not built.

    Returns ``build(records) -> [array per field]`` for a list of msgspec Structs whose fields are
    ``fields`` in order: strings, JSON, bools and lists are read straight from the Structs' slots
    into Arrow buffers (no tuple per row, no list per column). ``shared`` maps a field kept as
    ``msgspec.Raw`` to ``build(distinct raws, int32 indices)``: its distinct values are found in C.
    Same arrays as :func:`compile_builder` per field (tests compare both). ``build`` returns None
    for no records or records of more than one Struct type: the caller takes the pure-Python path.
    """
    if _columns is None:
        return None
    c = _columns
    shared = shared or {}
    kinds, makers = [], []
    for f in fields:
        typ = arrow_type(f)
        if f.name in shared:
            kinds.append(c.SHARED)
            makers.append(lambda n, part, build=shared[f.name]: build(*part))
        elif f.type == "string":
            kinds.append(c.STRING)
            makers.append(_string_maker(pa.string()))
        elif f.type == "json":
            kinds.append(c.JSON)
            makers.append(_string_maker(JSON))
        elif f.type == "bool":
            kinds.append(c.BOOL)
            makers.append(_bool_maker)
        elif f.type == "list<struct>":
            kinds.append(c.LIST)
            makers.append(_list_maker(typ, f.fields or []))
        else:
            kinds.append(c.PYTHON)
            makers.append(lambda n, values, build=compile_builder(f): build(values))
    names = [f.name for f in fields]
    offsets: dict[type, list[int]] = {}

    def build(records: list) -> list[pa.Array] | None:
        n = len(records)
        if not n:
            return None  # nothing to read: the pure-Python path's empty columns
        typ = type(records[0])
        if typ not in offsets:
            offsets[typ] = c.member_offsets(typ, names)
        parts = c.struct_columns(records, typ, offsets[typ], kinds)
        if parts is None:
            return None  # Structs of several types (the slow path mixes strict and lenient ones)
        return [make(n, part) for make, part in zip(makers, parts)]

    build.kinds = kinds
    return build


def compile_parsed(fields: list[Column], shared: dict):
    """The column build from ``_records.Parser.columns`` parts: the same makers as :func:`compile_direct`,
    so the same arrays. Returns ``build(n, parts) -> [array per field]``; ``shared`` as there."""
    makers = []
    for f in fields:
        if f.name in shared:
            makers.append(lambda n, part, build=shared[f.name]: build(*part))
        elif f.type == "string":
            makers.append(_string_maker(pa.string()))
        elif f.type == "json":
            makers.append(_string_maker(JSON))
        elif f.type == "bool":
            makers.append(_bool_maker)
        elif f.type == "list<struct>":
            makers.append(_parsed_list_maker(arrow_type(f), f.fields or []))
        else:
            raise TypeError(f"{f.name}: {f.type} columns are not parsed")

    def build(n: int, parts: list) -> list[pa.Array]:
        return [make(n, part) for make, part in zip(makers, parts)]
    return build


def _parsed_list_maker(typ: pa.DataType, item_fields: list[Column]):
    """:func:`_list_maker` from the items' string parts instead of their Structs."""
    empty, string = compile_struct(item_fields), _string_maker(pa.string())
    item_type = typ.value_type

    def make(n, part):
        if part[2] == n:
            return pa.nulls(n, typ)
        offsets, validity, nulls, m, item_parts = part
        child = (pa.StructArray.from_arrays([string(m, p) for p in item_parts], fields=list(item_type)) if m
                 else empty([]))
        return pa.Array.from_buffers(typ, n, [_buf(validity), pa.py_buffer(offsets)], null_count=nulls, children=[child])
    return make


def _string_maker(typ):
    def make(n, part):
        if part[0] is None:
            return pa.nulls(n, typ)
        offsets, data, validity, nulls = part
        arr = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), _buf(validity), nulls)
        return arr if typ == pa.string() else pa.ExtensionArray.from_storage(typ, arr)
    return make


def _bool_maker(n, part):
    if part[2] == n:
        return pa.nulls(n, pa.bool_())
    data, validity, nulls = part
    return pa.Array.from_buffers(pa.bool_(), n, [_buf(validity), pa.py_buffer(data)], null_count=nulls)


def _list_maker(typ: pa.DataType, item_fields: list[Column]):
    items, python = compile_direct(item_fields), compile_struct(item_fields)
    item_type = typ.value_type

    def make(n, part):
        if part[2] == n:
            return pa.nulls(n, typ)
        offsets, validity, nulls, flat = part
        children = items(flat)
        child = python(flat) if children is None else pa.StructArray.from_arrays(children, fields=list(item_type))
        return pa.Array.from_buffers(typ, n, [_buf(validity), pa.py_buffer(offsets)], null_count=nulls, children=[child])
    return make
