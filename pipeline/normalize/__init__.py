"""Pure normalisers: bytes of one log object in, an Arrow table out (or ObjectError).

Every runner calls these; nothing here does I/O. :func:`normalize_object` is the dead-lettering
form (unusable records are left out and listed with their index and reason); :func:`normalize`
is the strict form (any unusable record makes the whole object an ObjectError).
"""

from __future__ import annotations

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


def normalize_object(data: bytes, obj: layout.LogObject, uri: str, ingested_at: dt.datetime,
                     max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> Normalized:
    """Normalise one object of an event kind: its rows, and the records left out (with reasons).

    Raises ObjectError with the quarantine reason when the object as a whole is unusable.
    """
    fn = NORMALIZERS.get(obj.kind)
    if fn is None:
        raise ObjectError(f"{obj.kind} objects hold no events to ingest")
    # The collector walking millions of fresh containers roughly halves parse speed; nothing
    # built here has cycles, so pause it for the object.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return fn(data, obj, uri, ingested_at, max_bytes)
    finally:
        if enabled:
            gc.enable()


def normalize(data: bytes, obj: layout.LogObject, uri: str, ingested_at: dt.datetime,
              max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> pa.Table:
    """Strict form: the object's rows, or ObjectError naming the first record that is unusable."""
    out = normalize_object(data, obj, uri, ingested_at, max_bytes)
    if out.rejected:
        first = out.rejected[0].reason
        more = f" (and {len(out.rejected) - 1} more record(s))" if len(out.rejected) > 1 else ""
        raise ObjectError(first + more)
    return out.table


__all__ = ["DEFAULT_MAX_OBJECT_BYTES", "NORMALIZERS", "TABLES", "Normalized", "Rejected", "normalize", "normalize_object"]
