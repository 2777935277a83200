"""The lake's ``incidents`` table: rebuilt from all current alerts on every detect run and
replaced in one atomic write (incidents are derived data; ids are stable across rebuilds)."""

from __future__ import annotations

import datetime as dt
import json
import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.correlate.incidents import DEFAULT_WINDOW, Incident, build_incidents

PATH = "incidents/incidents.parquet"
_TS = pa.timestamp("us", tz="UTC")
_LIST = pa.list_(pa.string())
ARROW_SCHEMA = pa.schema([
    ("id", pa.string()), ("title", pa.string()), ("severity", pa.string()), ("status", pa.string()),
    ("first_seen", _TS), ("last_seen", _TS), ("alert_count", pa.int64()), ("alert_ids", _LIST), ("rule_ids", _LIST),
    ("tactics", _LIST), ("techniques", _LIST), ("entities", _LIST), ("accounts", _LIST), ("actors", _LIST),
    ("timeline", pa.json_(pa.string())), ("created_at", _TS), ("updated_at", _TS),
])


def rebuild(con: duckdb.DuckDBPyConnection, store, alerts_view: str = "alerts",
            window: dt.timedelta = DEFAULT_WINDOW) -> list[Incident]:
    # Suppressed alerts stay in the alerts table but are no part of any incident.
    rows = con.sql(f"SELECT * FROM {alerts_view} WHERE suppressed_by IS NULL").to_arrow_table().to_pylist()
    incidents = build_incidents(rows, window)
    table = pa.Table.from_pylist([{
        **{k: getattr(i, k) for k in ARROW_SCHEMA.names if k not in ("alert_count", "timeline")},
        "alert_count": i.alert_count, "timeline": json.dumps(i.timeline, default=str),
    } for i in incidents], schema=ARROW_SCHEMA)
    with store.writing(PATH) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return incidents


def register_incidents_view(con: duckdb.DuckDBPyConnection, lake: str, prefix: str = "") -> None:
    from pipeline.lake.datasets import dataset_view, empty_select, s3_dataset

    name, empty = f"{prefix}incidents", empty_select(ARROW_SCHEMA)
    if lake.startswith("s3://"):
        dataset_view(con, name, s3_dataset(lake, "incidents", ARROW_SCHEMA), empty)
        return
    path = os.path.join(os.path.abspath(lake), PATH)
    source = f"SELECT * FROM read_parquet('{path.replace(chr(39), chr(39) * 2)}')" if os.path.exists(path) else empty
    con.execute(f"CREATE OR REPLACE VIEW {name} AS {source}")
