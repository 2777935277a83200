"""``docs/schema.md``, generated from ``schemas/*.yml`` so the documentation cannot drift."""

from __future__ import annotations

from pipeline import schema

PIPE = "\\|"


def _rows(cols: list[schema.Column], prefix: str = "", source_prefix: str = "") -> list[str]:
    out = []
    for c in cols:
        name = prefix + c.name
        src = c.source if c.source is not None else source_prefix + c.name
        typ = c.type
        example = (f"`{c.example}`" if c.example else "").replace("|", PIPE)
        desc = c.description.replace("|", PIPE).replace("\n", " ")
        out.append(f"| `{name}` | {typ} | `{src}` | {desc} | {example} |")
        if c.fields:
            sep = "[]." if c.type == "list<struct>" else "."
            out += _rows(c.fields, name + sep, (c.source or name) + sep)
    return out


def schema_markdown() -> str:
    parts = [
        "# Lake schema",
        "",
        "Generated from `schemas/*.yml` by `soclake schema --output docs/schema.md`; do not edit by hand "
        "(a test fails when this file is stale).",
        "",
        "Tables live under the lake root, one folder each, hive-partitioned as "
        "`<table>/event_date=YYYY-MM-DD/account_id=<12 digits>/region=<region>/part-*.parquet` (zstd). "
        "Partition columns are in the folder names, not inside the files: read with hive partitioning "
        "and type `account_id` as a string (it has leading zeros). Column names keep AWS's own names and "
        "nesting; columns soclake derives are snake_case. `json` columns are Parquet JSON (DuckDB: `col->>'$.path'`). "
        "Each file's footer holds a `soclake.stats` key-value entry (JSON: `rows`, `min` and `max` `event_time`, "
        "and for CloudTrail the distinct `eventName`s) that detection plans from; readers can ignore it.",
        "",
    ]
    for table in schema.LOG_TABLES:
        s = schema.load(table)
        parts += [
            f"## `{s.table}`",
            "",
            s.description,
            "",
            f"Partitioned by: {', '.join(f'`{p}`' for p in s.partition_by)}.",
            "",
            "| column | type | from the raw record | description | example |",
            "|---|---|---|---|---|",
            *_rows(s.columns),
            "",
        ]
    parts += [
        "## `guardduty_latest` (view)",
        "",
        "The newest version (by `updatedAt`) of each GuardDuty finding id; same columns as `guardduty`.",
        "",
    ]
    from pipeline import views
    from pipeline.ocsf import mapping_markdown

    parts += mapping_markdown(views.empty_ocsf_connection())
    return "\n".join(parts)
