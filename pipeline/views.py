"""DuckDB over the lake: views ``cloudtrail``, ``guardduty`` and ``guardduty_latest``.

Local lakes are read with ``read_parquet`` over the hive layout (partition columns typed from
the schema, so account ids keep their leading zeros and filters on ``event_date`` prune
folders). S3 lakes are read through a pyarrow dataset on pyarrow's S3 filesystem, with
credentials resolved by boto3's standard chain; DuckDB pushes filters and projections into it,
and it works offline against any S3 endpoint (no DuckDB extension download).
"""

from __future__ import annotations

import glob
import os

import duckdb

from pipeline import schema
from pipeline.lake.datasets import PARTITION_TYPES, dataset_view, empty_table_select, s3_dataset


def local_pattern(root: str, table: str) -> str:
    """The glob of a local lake table's files (what its view reads)."""
    return os.path.join(os.path.abspath(root), table, "**", "*.parquet")


def read_local(paths: str | list[str]) -> str:
    """``read_parquet`` over a glob or a list of lake files: hive partition columns typed as the schema says."""
    hive_types = "{" + ", ".join(f"'{k}': '{v}'" for k, v in PARTITION_TYPES.items()) + "}"
    quoted = [("'" + p.replace("'", "''") + "'") for p in ([paths] if isinstance(paths, str) else paths)]
    files = quoted[0] if isinstance(paths, str) else "[" + ", ".join(quoted) + "]"
    return f"read_parquet({files}, hive_partitioning = true, hive_types = {hive_types}, union_by_name = true)"


def _local_select(root: str, table: str) -> str:
    pattern = local_pattern(root, table)
    if not glob.glob(pattern, recursive=True):
        return empty_table_select(table)
    return f"SELECT * FROM {read_local(pattern)}"


def _s3_dataset(uri: str, table: str, settings=None):
    return s3_dataset(uri, table, schema.arrow_schema(table), settings)


def _latest_view(con, prefix: str) -> None:
    con.execute(
        f"CREATE OR REPLACE VIEW {prefix}guardduty_latest AS SELECT * FROM {prefix}guardduty "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY event_time DESC, ingested_at DESC) = 1"
    )


def register_empty(con: duckdb.DuckDBPyConnection, prefix: str = "") -> None:
    """Empty tables with the lake's exact columns (for checking rule SQL)."""
    for table in schema.LOG_TABLES:
        con.execute(f"CREATE OR REPLACE VIEW {prefix}{table} AS {empty_table_select(table)}")
    _latest_view(con, prefix)
    _enrichment(con)


def register_arrow(con: duckdb.DuckDBPyConnection, tables: dict, prefix: str = "") -> None:
    """Views over in-memory Arrow tables (rule tests: events through the real normaliser)."""
    for table in schema.LOG_TABLES:
        data = tables.get(table)
        if data is None or data.num_rows == 0:
            con.execute(f"CREATE OR REPLACE VIEW {prefix}{table} AS {empty_table_select(table)}")
        else:
            con.register(f"_{prefix}{table}_arrow", data)
            con.execute(f"CREATE OR REPLACE VIEW {prefix}{table} AS SELECT * FROM _{prefix}{table}_arrow")
    _latest_view(con, prefix)
    _enrichment(con)


def _enrichment(con: duckdb.DuckDBPyConnection) -> None:
    """An empty ``accounts`` view and the ip_* functions, so rule SQL that uses them checks and tests."""
    from pipeline.enrich import sql

    sql.register_accounts(con, None)
    sql.register_functions(con)


def register(con: duckdb.DuckDBPyConnection, lake: str, prefix: str = "", ocsf_views: bool = True,
             tables: tuple[str, ...] = schema.LOG_TABLES) -> None:
    """Views ``cloudtrail``, ``guardduty``, ``guardduty_latest``, ``alerts``, ``incidents`` and the OCSF views
    (``pipeline/ocsf.py``) over the lake. ``tables``: the log tables to register (creating a view
    reads every file's footer: the digests of a long archive are thousands of files)."""
    con.execute("SET enable_progress_bar = false")  # soclake reports progress itself
    for table in tables:
        if lake.startswith("s3://"):
            dataset_view(con, f"{prefix}{table}", _s3_dataset(lake, table), empty_table_select(table))
        else:
            con.execute(f"CREATE OR REPLACE VIEW {prefix}{table} AS {_local_select(lake, table)}")
    _latest_view(con, prefix)
    from pipeline.correlate.store import register_incidents_view
    from pipeline.detect.alert_store import register_alerts_view

    register_alerts_view(con, lake, prefix)
    register_incidents_view(con, lake, prefix)
    from pipeline.correlate.lifecycle import register_views

    register_views(con, lake, prefix)  # alert_events, alert_status, incident_status
    from pipeline.enrich.sql import register_lake

    register_lake(con, lake, prefix)  # accounts (the enrichment cache), ip_class() and friends
    if ocsf_views:  # analysts' views; detection does not read them (each view costs a bind over the lake's files)
        from pipeline import ocsf

        ocsf.register(con, prefix)  # ocsf_api_activity, ocsf_authentication, ocsf_account_change, ocsf_detection_finding


def empty_ocsf_connection() -> duckdb.DuckDBPyConnection:
    """The OCSF views over empty tables with the lake's exact columns (docs, checks)."""
    from pipeline import ocsf
    from pipeline.detect.alert_store import empty_alerts_select

    con = duckdb.connect()
    register_empty(con)
    con.execute(f"CREATE VIEW alerts AS {empty_alerts_select()}")
    ocsf.register(con)
    return con


def connect(lake: str, con: duckdb.DuckDBPyConnection | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake's views registered."""
    con = con or duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    register(con, lake)
    return con
