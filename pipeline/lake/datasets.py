"""The lake's tables as DuckDB sources: hive partition types, empty stand-ins, S3 datasets.

The pieces every view over the lake is built from (``pipeline.views`` for the log tables, the alert,
incident and lifecycle stores for theirs), so that none of them needs the module that registers
all the views.
"""

from __future__ import annotations

import duckdb

from pipeline import schema

PARTITION_TYPES = {"event_date": "DATE", "account_id": "VARCHAR", "region": "VARCHAR"}


def empty_select(arrow_schema) -> str:
    """A query with these columns and no rows: a table nothing has been written to yet."""
    cols = ", ".join(f'CAST(NULL AS {schema.duckdb_type(f.type)}) AS "{f.name}"' for f in arrow_schema)
    return f"SELECT {cols} WHERE false"


def empty_table_select(table: str) -> str:
    """``empty_select`` of one of the lake's tables (schemas/*.yml)."""
    return empty_select(schema.arrow_schema(table))


def dataset_view(con: duckdb.DuckDBPyConnection, name: str, dataset, empty_sql: str) -> None:
    """View ``name`` over a pyarrow dataset (an S3 lake table), or empty when it has no files."""
    if dataset is None:
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {empty_sql}")
    else:
        con.register(f"_{name}_dataset", dataset)
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _{name}_dataset")


def s3_dataset(uri: str, table: str, table_schema, settings=None):
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    from pipeline import aws
    from pipeline.sources.s3 import split_s3_uri

    fs = aws.s3_filesystem(settings)  # the profile's region when --region is not given
    bucket, prefix = split_s3_uri(uri)
    base = f"{bucket}/{prefix}{table}"
    part_schema = pa.schema([(k, pa.date32() if v == "DATE" else pa.string()) for k, v in PARTITION_TYPES.items()
                             if k in table_schema.names])
    try:
        files = [f.path for f in fs.get_file_info(pafs.FileSelector(base, recursive=True)) if f.path.endswith(".parquet")]
    except FileNotFoundError:
        files = []
    if not files:
        return None
    return ds.dataset(
        files, schema=table_schema, filesystem=fs, format="parquet",
        partitioning=ds.partitioning(part_schema, flavor="hive"), partition_base_dir=base,
    )
