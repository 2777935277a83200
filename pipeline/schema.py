"""Table contracts from ``schemas/<table>.yml``: the one source of Arrow schemas, views and docs."""

from __future__ import annotations

import functools
from typing import Literal

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.errors import SchemaError
from pipeline.resources import resource_dir

SCHEMA_DIR = resource_dir("schemas")
LOG_TABLES = ("cloudtrail", "guardduty", "cloudtrail_digests")

ColumnType = Literal["string", "bool", "int64", "double", "timestamp", "date", "json", "struct", "list<struct>"]


class Column(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: ColumnType
    source: str | None = None
    description: str = ""
    example: str | None = None
    fields: list[Column] | None = None

    @property
    def derived(self) -> bool:
        return (self.source or "").startswith("derived")


class TableSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str
    description: str
    partition_by: list[str] = []
    columns: list[Column]

    @property
    def file_columns(self) -> list[Column]:
        """Columns stored inside the Parquet files (partition columns live in folder names)."""
        return [c for c in self.columns if c.name not in self.partition_by]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


_SCALARS = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int64": pa.int64(),
    "double": pa.float64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "json": pa.json_(pa.string()),
}


def arrow_type(col: Column) -> pa.DataType:
    if col.type == "struct":
        return pa.struct([pa.field(f.name, arrow_type(f)) for f in col.fields or ()])
    if col.type == "list<struct>":
        return pa.list_(pa.struct([pa.field(f.name, arrow_type(f)) for f in col.fields or ()]))
    return _SCALARS[col.type]


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: every command loads the schemas (20 -> 2 ms)


@functools.cache
def load(table: str) -> TableSchema:
    path = SCHEMA_DIR / f"{table}.yml"
    try:
        data = yaml.load(path.read_text(), Loader=_LOADER)
        return TableSchema.model_validate(data)
    except FileNotFoundError as e:
        raise SchemaError(f"no schema for table {table!r} ({path.name} missing under schemas/)") from e
    except (yaml.YAMLError, ValidationError) as e:
        raise SchemaError(f"schemas/{path.name}: {e}") from e


def arrow_schema(table: str, with_partitions: bool = True) -> pa.Schema:
    s = load(table)
    cols = s.columns if with_partitions else s.file_columns
    return pa.schema([pa.field(c.name, arrow_type(c)) for c in cols])


def duckdb_type(t: pa.DataType) -> str:
    """DuckDB type name of an Arrow type (used for empty views and hive partition types)."""
    if pa.types.is_struct(t):
        return "STRUCT(" + ", ".join(f'"{f.name}" {duckdb_type(f.type)}' for f in t) + ")"
    if pa.types.is_list(t):
        return duckdb_type(t.value_type) + "[]"
    if isinstance(t, pa.JsonType):
        return "JSON"
    return {
        pa.string(): "VARCHAR",
        pa.bool_(): "BOOLEAN",
        pa.int64(): "BIGINT",
        pa.float64(): "DOUBLE",
        pa.date32(): "DATE",
        pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
    }[t]
