"""Pure normalisers: bytes of one log object in, an Arrow table out (or ObjectError).

Every runner calls these; nothing here does I/O. :func:`normalize_object` is the dead-lettering
form (unusable records are left out and listed with their index and reason); :func:`normalize`
is the strict form (any unusable record makes the whole object an ObjectError).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc

import pyarrow as pa

from pipeline import layout
from pipeline.errors import ObjectError
from pipeline.normalize import cloudtrail, digest, guardduty
from pipeline.normalize.common import DEFAULT_MAX_OBJECT_BYTES, Normalized, Rejected

NORMALIZERS = {layout.CLOUDTRAIL: cloudtrail.normalize, layout.GUARDDUTY: guardduty.normalize,
               layout.DIGEST: digest.normalize}
TABLES = {layout.CLOUDTRAIL: cloudtrail.TABLE, layout.GUARDDUTY: guardduty.TABLE, layout.DIGEST: digest.TABLE}


@contextlib.contextmanager
def _no_gc():
    # The collector walking millions of fresh containers roughly halves parse speed; nothing
    # built here has cycles, so pause it meanwhile.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def normalize_object(data: bytes, obj: layout.LogObject, uri: str, ingested_at: dt.datetime,
                     max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> Normalized:
    """Normalise one object of an event kind: its rows, and the records left out (with reasons).

    Raises ObjectError with the quarantine reason when the object as a whole is unusable.
    """
    fn = NORMALIZERS.get(obj.kind)
    if fn is None:
        raise ObjectError(f"{obj.kind} objects hold no events to ingest")
    with _no_gc():
        return fn(data, obj, uri, ingested_at, max_bytes)


Decoded = cloudtrail.Decoded


def decode_object(data: bytes, obj: layout.LogObject, uri: str, ingested_at: dt.datetime,
                  max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> Normalized | Decoded:
    """:func:`normalize_object`, except that a CloudTrail object on the fast path comes back
    :class:`Decoded`: its rows are built together with other objects' by :func:`build_decoded`
    (the column build's fixed costs are paid once per batch, not once per object)."""
    if obj.kind != layout.CLOUDTRAIL:
        return normalize_object(data, obj, uri, ingested_at, max_bytes)
    with _no_gc():
        return cloudtrail.decode(data, obj, uri, ingested_at, max_bytes)


def build_decoded(batch: list[Decoded], ingested_at: dt.datetime) -> tuple[pa.Table, list[Normalized]]:
    """One table for the batch and per object its row count, rejected records and hash (``cloudtrail.build_many``)."""
    with _no_gc():
        return cloudtrail.build_many(batch, ingested_at)


def finish_decoded(d: Decoded, ingested_at: dt.datetime) -> Normalized:
    """The rows of one decoded object on its own (what :func:`normalize_object` would have returned)."""
    with _no_gc():
        return cloudtrail.finish(d, ingested_at)


def normalize(data: bytes, obj: layout.LogObject, uri: str, ingested_at: dt.datetime,
              max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> pa.Table:
    """Strict form: the object's rows, or ObjectError naming the first record that is unusable."""
    out = normalize_object(data, obj, uri, ingested_at, max_bytes)
    if out.rejected:
        first = out.rejected[0].reason
        more = f" (and {len(out.rejected) - 1} more record(s))" if len(out.rejected) > 1 else ""
        raise ObjectError(first + more)
    return out.table


__all__ = ["DEFAULT_MAX_OBJECT_BYTES", "NORMALIZERS", "TABLES", "Decoded", "Normalized", "Rejected", "build_decoded",
           "decode_object", "finish_decoded", "normalize", "normalize_object"]
