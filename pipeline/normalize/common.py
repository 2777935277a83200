"""Pieces every normaliser shares: gunzip, JSON columns, struct columns built from msgspec Structs."""

from __future__ import annotations

import itertools
import zlib

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import ObjectError
from pipeline.schema import Column, arrow_type

try:  # ISA-L gunzips ~3x faster than zlib; same format, same errors surfaced below.
    from isal import igzip as _gzip
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover - isal is a dependency; keep working without it
    import gzip as _gzip

    _IsalError = zlib.error

JSON = pa.json_(pa.string())
_NULL = msgspec.Raw(b"null")
_EMPTY = msgspec.Raw()


def gunzip(data: bytes) -> bytes:
    if not data:
        raise ObjectError("empty object (0 bytes): AWS never delivers empty log files")
    if data[:2] != b"\x1f\x8b":
        raise ObjectError("not gzip-compressed (AWS delivers .json.gz / .jsonl.gz)")
    try:
        return _gzip.decompress(data)
    except (OSError, EOFError, zlib.error, _IsalError, ValueError) as e:
        raise ObjectError(f"corrupt gzip: {e}") from e


def json_array(raws) -> pa.Array:
    """A JSON column from msgspec.Raw values (their bytes, never parsed): empty or null → NULL."""
    n = len(raws)
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

    def build_scalar(values):
        if values.count(None) == len(values):
            return pa.nulls(len(values), typ)
        return pa.array(values, typ)
    return build_scalar


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


def parse_utc(strings: pa.Array, what: str) -> pa.Array:
    """ISO-8601 UTC strings → timestamp[us, UTC]; raises ObjectError naming the first bad value."""
    try:
        return strings.cast(pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for i, s in enumerate(strings.to_pylist()):
            if s is None:
                continue
            try:
                pa.array([s]).cast(pa.timestamp("us", tz="UTC"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise ObjectError(f"record {i}: {what} {s!r} is not an ISO-8601 UTC time") from None
        raise
