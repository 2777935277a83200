"""``soclake athena-ddl``: the statements that make an ``s3://`` lake queryable from Amazon Athena.

Why partition projection: Athena then computes the partitions from the query's filters and the
table properties instead of a Glue crawler or ``MSCK REPAIR TABLE`` having to register every new
day, account and region; a day soclake wrote a minute ago is queryable at once, and a filter on
``event_date`` reads only that day's folders. ``event_date`` is a date projection, ``region`` an
enum of AWS regions, ``account_id`` ``injected`` (every query names its accounts) unless the
accounts are listed, then an enum.

Column types come from the same Arrow schemas the lake writer uses (``pipeline.schema`` for the
log tables, the alert and incident stores for theirs), so the DDL cannot drift from the files:
structs stay structs (``userIdentity.arn`` works in Athena), JSON columns are strings (use
``json_extract_scalar``), timestamps are timestamps.
"""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa

from pipeline.errors import ConfigError

#: Regions a projection enumerates by default (the commercial partition, 2025); --regions replaces the list.
#: An extra name costs nothing; a missing one hides that region's data from Athena.
AWS_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "ca-west-1", "mx-central-1", "sa-east-1",
    "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1",
    "il-central-1", "me-south-1", "me-central-1", "af-south-1",
    "ap-east-1", "ap-east-2", "ap-south-1", "ap-south-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
    "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6",
    "ap-southeast-7",
)
_SCALARS = {
    pa.string(): "string", pa.bool_(): "boolean", pa.int64(): "bigint", pa.float64(): "double",
    pa.date32(): "date", pa.timestamp("us", tz="UTC"): "timestamp",
}
#: Partition columns of the log tables, in folder order, with their Athena types.
LOG_PARTITIONS = (("event_date", "date"), ("account_id", "string"), ("region", "string"))


def athena_type(t: pa.DataType) -> str:
    """Athena (Hive DDL) type of an Arrow type: struct<…>, array<…>, JSON as string, timestamps as timestamp."""
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"`{f.name}`:{athena_type(f.type)}" for f in t) + ">"
    if pa.types.is_list(t):
        return f"array<{athena_type(t.value_type)}>"
    if isinstance(t, pa.JsonType):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp"
    try:
        return _SCALARS[t]
    except KeyError:
        raise ConfigError(f"no Athena type for Arrow type {t}") from None


def table_schemas() -> dict[str, tuple[pa.Schema, tuple[tuple[str, str], ...]]]:
    """Athena table → (the Arrow schema of its files, its partition columns)."""
    from pipeline import schema
    from pipeline.correlate.store import ARROW_SCHEMA as INCIDENTS
    from pipeline.detect.alert_store import ARROW_SCHEMA as ALERTS

    out = {t: (schema.arrow_schema(t, with_partitions=False), LOG_PARTITIONS) for t in schema.LOG_TABLES}
    out["alerts"] = (ALERTS, (("event_date", "date"),))
    out["incidents"] = (INCIDENTS, ())
    return out


def _props(props: dict[str, str]) -> str:
    return ",\n".join(f"  '{k}' = '{v}'" for k, v in props.items())


def projection(location: str, partitions, accounts: list[str], regions: list[str], since: str) -> dict[str, str]:
    props = {"projection.enabled": "true"}
    for name, _ in partitions:
        if name == "event_date":
            props.update({f"projection.{name}.type": "date", f"projection.{name}.format": "yyyy-MM-dd",
                          f"projection.{name}.range": f"{since},NOW", f"projection.{name}.interval": "1",
                          f"projection.{name}.interval.unit": "DAYS"})
        elif name == "account_id" and accounts:
            props.update({f"projection.{name}.type": "enum", f"projection.{name}.values": ",".join(accounts)})
        elif name == "account_id":
            props[f"projection.{name}.type"] = "injected"
        elif name == "region":
            props.update({f"projection.{name}.type": "enum", f"projection.{name}.values": ",".join(regions)})
    props["storage.location.template"] = location + "/".join(f"{n}=${{{n}}}" for n, _ in partitions) + "/"
    return props


def table_ddl(database: str, table: str, location: str, file_schema: pa.Schema, partitions,
              accounts: list[str], regions: list[str], since: str) -> str:
    cols = ",\n".join(f"  `{f.name}` {athena_type(f.type)}" for f in file_schema)
    parts = ""
    props = {"classification": "parquet"}
    if partitions:
        parts = "PARTITIONED BY (" + ", ".join(f"`{n}` {t}" for n, t in partitions) + ")\n"
        props.update(projection(location, partitions, accounts, regions, since))
    return (f"CREATE EXTERNAL TABLE IF NOT EXISTS {database}.{table} (\n{cols}\n)\n{parts}"
            f"STORED AS PARQUET\nLOCATION '{location}'\nTBLPROPERTIES (\n{_props(props)}\n)")


def latest_view(database: str, view: str, table: str, columns: list[str], key: list[str], order: str) -> str:
    """A Trino view keeping the newest row per key (Athena views are Trino SQL; no QUALIFY, no SELECT * EXCEPT).

    Keys start with the partitions a query must constrain (account_id when it is injected), so
    Athena can push such filters through the window function down to the table scan.
    """
    cols = ", ".join(f'"{c.lower()}"' for c in columns)
    return (f'CREATE OR REPLACE VIEW {database}.{view} AS\nSELECT {cols}\nFROM (\n'
            f"  SELECT *, row_number() OVER (PARTITION BY {', '.join(key)} ORDER BY {order}) AS soclake_rn\n"
            f'  FROM {database}.{table}\n) WHERE soclake_rn = 1')


def athena_ddl(lake: str, database: str = "soclake", accounts: list[str] | None = None,
               regions: list[str] | None = None, since: str = "2020-01-01") -> list[str]:
    """CREATE DATABASE, the four tables, the two views and the four OCSF views, one statement each (Athena runs
    one at a time)."""
    if not lake or not lake.startswith("s3://"):
        raise ConfigError(f"athena-ddl needs the lake's S3 location, not {lake or 'nothing'}: "
                          "--lake s3://bucket/prefix (or SOCLAKE_LAKE)")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", database):
        raise ConfigError(f"--database {database!r}: Glue names are lowercase letters, digits and _")
    accounts = list(accounts or [])
    bad = [a for a in accounts if not re.fullmatch(r"\d{12}", a)]
    if bad:
        raise ConfigError(f"--accounts: not 12-digit account ids: {', '.join(bad)}")
    regions = list(regions or AWS_REGIONS)
    bad = [r for r in regions if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", r)]
    if bad:
        raise ConfigError(f"--regions: not region names: {', '.join(bad)}")
    try:
        dt.date.fromisoformat(since)
    except ValueError:
        raise ConfigError(f"--since {since!r} is not a date: use YYYY-MM-DD") from None
    root = lake.rstrip("/") + "/"
    out = [f"CREATE DATABASE IF NOT EXISTS {database}"]
    schemas = table_schemas()
    for table, (file_schema, partitions) in schemas.items():
        out.append(table_ddl(database, table, f"{root}{table}/", file_schema, partitions, accounts, regions, since))
    gd_cols = schemas["guardduty"][0].names + [n for n, _ in LOG_PARTITIONS]
    out.append(latest_view(database, "guardduty_latest", "guardduty", gd_cols, ["account_id", "id"],
                           "event_time DESC, ingested_at DESC"))
    alert_cols = schemas["alerts"][0].names + ["event_date"]
    out.append(latest_view(database, "alerts_current", "alerts", alert_cols, ["id"], "detected_at DESC"))
    from pipeline.analyst.athena_ocsf import view_statements

    out += view_statements(database)  # ocsf_api_activity, ocsf_authentication, ocsf_account_change, ocsf_detection_finding
    return out
