"""``soclake catalog``: a DuckDB database file of views over the lake, for tools that know nothing of soclake.

Why a file: the DuckDB CLI, DBeaver, notebooks and pandas all open a ``.duckdb`` file. With these
views in it, analysts get the tables soclake itself queries (typed hive partitions so account ids
keep their leading zeros and ``event_date`` filters prune folders; the newest version of each
finding and alert) without installing soclake or learning the lake's layout.

How: each view reads ``soclake_lake() || '/<table>/**/*.parquet'``, where ``soclake_lake()`` is a
macro stored in the file that returns the lake root (an absolute local path, or ``s3://bucket/prefix``
read through DuckDB's httpfs extension). DuckDB binds a view when it is created, which means
reading a file's schema: for an ``s3://`` lake that would need httpfs, credentials and network on
the machine writing the catalog, and a table with no files yet could not be bound at all. So the
views are created while the macro points at a throwaway folder of empty Parquet files with the
lake's exact schemas, then the macro is repointed at the lake; DuckDB binds views again on every
query, against the lake's files. Analysts can repoint a copy the same way
(``CREATE OR REPLACE MACRO soclake_lake() AS '/new/place'``).
"""

from __future__ import annotations

import os
import tempfile

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import ConfigError, LakeError

MACRO = "soclake_lake"
_HIVE = "hive_partitioning = true, hive_types = {{{types}}}, union_by_name = true"
_LOG_PARTS = "event_date=1970-01-01/account_id=000000000000/region=none"

COMMENTS = {
    "cloudtrail": "CloudTrail records, one row each; partitions event_date, account_id, region (docs/schema.md)",
    "guardduty": "GuardDuty findings, every version exported; partitions event_date, account_id, region",
    "guardduty_latest": "The newest version of each GuardDuty finding (by id)",
    "cloudtrail_digests": "CloudTrail digest files, one row each (soclake verify checks them; docs/integrity.md)",
    "alert_versions": "Every version of every soclake alert; partition event_date (the alert window's day)",
    "alerts": "The current version of each soclake alert (by id)",
    "incidents": "soclake incidents: alerts grouped by the entities they share",
    "ocsf_api_activity": "OCSF 1.1 API Activity (6003): every CloudTrail management event (docs/ocsf.md)",
    "ocsf_authentication": "OCSF 1.1 Authentication (3002): console and federation sign-ins",
    "ocsf_account_change": "OCSF 1.1 Account Change (3001): IAM user and credential changes",
    "ocsf_detection_finding": "OCSF 1.1 Detection Finding (2004): GuardDuty findings (newest version) and soclake alerts",
}


def _stub_tables() -> dict[str, tuple[str, pa.Schema]]:
    """Table → (a file path under the lake root, the schema soclake writes there)."""
    from pipeline import schema
    from pipeline.correlate.store import ARROW_SCHEMA as INCIDENTS
    from pipeline.correlate.store import PATH as INCIDENTS_PATH
    from pipeline.detect.alert_store import ARROW_SCHEMA as ALERTS
    from pipeline.detect.alert_store import TABLE as ALERTS_TABLE

    tables = {t: (f"{t}/{_LOG_PARTS}/stub.parquet", schema.arrow_schema(t, with_partitions=False)) for t in schema.LOG_TABLES}
    tables[ALERTS_TABLE] = (f"{ALERTS_TABLE}/event_date=1970-01-01/stub.parquet", ALERTS)
    tables["incidents"] = (INCIDENTS_PATH, INCIDENTS)
    return tables


def _write_stubs(root: str) -> None:
    for path, table_schema in _stub_tables().values():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        pq.write_table(pa.table([pa.nulls(0, f.type) for f in table_schema], schema=table_schema), full)


def _hive(types: dict[str, str]) -> str:
    return _HIVE.format(types=", ".join(f"'{k}': '{v}'" for k, v in types.items()))


def view_statements() -> list[tuple[str, str]]:
    """(view, CREATE VIEW statement) in dependency order; paths go through the ``soclake_lake()`` macro."""
    from pipeline.correlate.store import PATH as INCIDENTS_PATH
    from pipeline.lake.datasets import PARTITION_TYPES
    from pipeline.schema import LOG_TABLES

    out = [
        (t, f"CREATE VIEW {t} AS SELECT * FROM read_parquet({MACRO}() || '/{t}/**/*.parquet', {_hive(PARTITION_TYPES)})")
        for t in LOG_TABLES
    ]
    out.append(("guardduty_latest", "CREATE VIEW guardduty_latest AS SELECT * FROM guardduty QUALIFY row_number() "
                "OVER (PARTITION BY id ORDER BY event_time DESC, ingested_at DESC) = 1"))
    out.append(("alert_versions", "CREATE VIEW alert_versions AS SELECT * FROM read_parquet("
                f"{MACRO}() || '/alerts/**/*.parquet', {_hive({'event_date': 'DATE'})})"))
    out.append(("alerts", "CREATE VIEW alerts AS SELECT * FROM alert_versions "
                "QUALIFY row_number() OVER (PARTITION BY id ORDER BY detected_at DESC) = 1"))
    out.append(("incidents", f"CREATE VIEW incidents AS SELECT * FROM read_parquet({MACRO}() || '/{INCIDENTS_PATH}')"))
    from pipeline import ocsf

    out += [(name, f"CREATE VIEW {name} AS {sql}") for name, sql in ocsf.view_sql().items()]
    return out


def _literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def lake_root(lake: str) -> str:
    """The root the catalog stores: an absolute local path (any working directory works), or the s3:// URI."""
    from pipeline.options import NO_LAKE, require_lake

    if not lake:
        raise ConfigError(NO_LAKE)
    if lake.startswith("s3://"):
        return lake.rstrip("/")  # not read here: the catalog needs no AWS access
    return os.path.abspath(require_lake(lake))


def write_catalog(lake: str, output: str) -> dict[str, str]:
    """Write the DuckDB file ``output`` with views over ``lake``; return view → "ok" or why it is empty.

    The file is written beside ``output`` and renamed over it, so a tool holding the old file open
    never sees half a catalog. For a local lake every view is then queried once (``LIMIT 0``) to
    prove it binds against the real files; an ``s3://`` lake is not read (no httpfs needed here).
    """
    root = lake_root(lake)
    output = os.path.abspath(output)
    tmp = f"{output}.{os.getpid()}.tmp"
    for stale in (tmp, tmp + ".wal"):
        if os.path.exists(stale):
            os.remove(stale)
    statements = view_statements()
    with tempfile.TemporaryDirectory(prefix="soclake-catalog-") as stubs:
        _write_stubs(stubs)
        try:
            con = duckdb.connect(tmp)
        except duckdb.Error as e:
            raise ConfigError(f"cannot write {output}: {str(e).splitlines()[0]}") from e
        try:
            con.execute(f"CREATE MACRO {MACRO}() AS {_literal(stubs)}")
            for view, sql in statements:
                con.execute(sql)
                con.execute(f"COMMENT ON VIEW {view} IS {_literal(COMMENTS[view])}")
            con.execute(f"CREATE OR REPLACE MACRO {MACRO}() AS {_literal(root)}")
        finally:
            con.close()
    status = {view: "ok" for view, _ in statements}
    if not root.startswith("s3://"):
        status = _check(tmp, status)
    if os.path.exists(output + ".wal"):
        os.remove(output + ".wal")  # a WAL left by an old file would be replayed onto the new one
    os.replace(tmp, output)
    return status


def _check(path: str, status: dict[str, str]) -> dict[str, str]:
    """Bind every view against the local lake: "no files yet" is fine, anything else is a broken catalog."""
    con = duckdb.connect(path, read_only=True)
    try:
        for view in status:
            try:
                con.execute(f"SELECT * FROM {view} LIMIT 0")
            except duckdb.IOException as e:
                if "No files found" not in str(e):
                    raise LakeError(f"catalog view {view} cannot read the lake: {str(e).splitlines()[0]}") from e
                status[view] = "no files yet: the view errors until soclake writes some, then reads them"
            except duckdb.Error as e:
                raise LakeError(f"catalog view {view} does not match the lake's files: {str(e).splitlines()[0]}") from e
    finally:
        con.close()
    return status


#: What an s3:// catalog needs where it is opened (DuckDB httpfs with the AWS credential chain).
S3_SETUP = "INSTALL httpfs; LOAD httpfs; CREATE SECRET (TYPE s3, PROVIDER credential_chain);"
