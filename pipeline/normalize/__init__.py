"""Pure normalisers: bytes of one log object in, an Arrow table out (or ObjectError).

Every runner (the local process pool, Apache Beam) calls :func:`normalize`; nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
import gc

import pyarrow as pa

from pipeline import layout
from pipeline.errors import ObjectError
from pipeline.normalize import cloudtrail, guardduty

NORMALIZERS = {layout.CLOUDTRAIL: cloudtrail.normalize, layout.GUARDDUTY: guardduty.normalize}
TABLES = {layout.CLOUDTRAIL: cloudtrail.TABLE, layout.GUARDDUTY: guardduty.TABLE}


def normalize(data: bytes, obj: layout.LogObject, uri: str, ingested_at: dt.datetime) -> pa.Table:
    """Normalise one object of an event kind. Raises ObjectError with the quarantine reason."""
    fn = NORMALIZERS.get(obj.kind)
    if fn is None:
        raise ObjectError(f"{obj.kind} objects hold no events to ingest")
    # The collector walking millions of fresh containers roughly halves parse speed; nothing
    # built here has cycles, so pause it for the object.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return fn(data, obj, uri, ingested_at)
    finally:
        if enabled:
            gc.enable()
