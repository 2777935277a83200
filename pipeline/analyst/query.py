"""``soclake query``: an analyst's SQL over the lake's views, printed or saved in the format the next tool wants.

Why a command and not "open DuckDB yourself": it registers exactly the views detection uses
(``views.connect``: typed hive partitions, so filters on ``event_date``/``account_id``/``region``
prune folders, for a local or an ``s3://`` lake alike), and it turns DuckDB's multi-line errors into
one line that also names the lake's tables and the columns a misspelt name probably meant, nested
struct fields included (``userIdentity.usrName`` → ``userIdentity.userName``).

Files are written by DuckDB itself (``COPY``), so large results stream to disk instead of going
through Python objects; stdout gets the same bytes through a temporary file.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator

import duckdb

from pipeline.errors import ConfigError, SoclakeError

#: The views ``views.connect`` registers, in the order errors list them.
VIEWS = ("cloudtrail", "guardduty", "guardduty_latest", "alerts", "alert_versions", "incidents", "alert_events",
         "alert_status", "incident_status", "ocsf_api_activity", "ocsf_authentication", "ocsf_account_change",
         "ocsf_detection_finding")
FORMATS = ("table", "json", "jsonl", "csv", "parquet")
#: Rows a table shows without --limit (DuckDB's CLI default): the footer still gives the total.
TABLE_ROWS = 40
_COPY_OPTIONS = {"csv": "FORMAT csv, HEADER true", "jsonl": "FORMAT json", "json": "FORMAT json, ARRAY true",
                 "parquet": "FORMAT parquet, COMPRESSION zstd"}
_NESTED = ("struct", "list", "map", "array", "union")
_UNKNOWN_NAME = [
    re.compile(r'Referenced column "([^"]+)" not found'),
    re.compile(r'Could not find key "([^"]+)" in struct'),
    re.compile(r'does not have a column named "([^"]+)"'),
]


class QueryError(SoclakeError):
    """The analyst's SQL failed: DuckDB's reason, the lake's tables, the closest column names."""


# ---------------------------------------------------------------- columns and suggestions


def _flatten(name: str, t) -> Iterator[str]:
    """Paths of a column and of every field nested in it, from its DuckDB type (DESCRIBE's type)."""
    yield name
    if t.id == "struct":
        for child, child_type in t.children:
            yield from _flatten(f"{name}.{child}", child_type)
    elif t.id == "list":
        element = t.children[0][1]
        if element.id == "struct":
            yield from (p for p in _flatten(f"{name}[]", element) if p != f"{name}[]")


def column_paths(con: duckdb.DuckDBPyConnection, tables=VIEWS) -> dict[str, list[str]]:
    """Every column path of these views (``userIdentity.arn``, ``resources[].ARN``) → the views that have it."""
    paths: dict[str, list[str]] = {}
    for table in tables:
        try:
            rel = con.sql(f"SELECT * FROM {table}")
        except duckdb.Error:
            continue
        for name, t in zip(rel.columns, rel.types):
            for p in _flatten(name, t):
                paths.setdefault(p, []).append(table)
    return paths


def _written_path(sql: str, name: str) -> list[str]:
    """The dotted expression the unknown name was written in (``c.userIdentity.usrName``), as segments."""
    seg = r'(?:"[^"]+"|[A-Za-z_]\w*)'
    m = re.search(rf'((?:{seg}\.)*)("{re.escape(name)}"|\b{re.escape(name)}\b)', sql, re.IGNORECASE)
    if not m:
        return [name]
    return [s.strip('"') for s in re.findall(seg, m.group(1))] + [name]


def closest_columns(sql: str, name: str, paths: dict[str, list[str]], n: int = 3) -> list[str]:
    """Column paths closest to an unknown ``name`` as written in ``sql`` (case-insensitive, like DuckDB).

    The name is compared with the siblings it was written among: the fields of the struct path
    before it (``userIdentity.usrName`` → ``userIdentity.userName``), after dropping leading
    segments that are no column (a table alias), or the top-level columns for a bare name. When
    nothing is close there, with every leaf name of the lake.
    """
    by_lower: dict[str, str] = {}
    for p in paths:
        by_lower.setdefault(p.lower(), p)
    segments = _written_path(sql, name)
    for i in range(len(segments)):
        parent = ".".join(segments[i:-1]).lower()
        if parent and parent not in by_lower:
            continue
        siblings = {low.rpartition(".")[2]: p for low, p in by_lower.items() if low.rpartition(".")[0] == parent}
        found = difflib.get_close_matches(name.lower(), list(siblings), n=n, cutoff=0.6)
        if found:
            return [siblings[f] for f in found]
    leaves: dict[str, list[str]] = {}
    for low, p in by_lower.items():
        leaves.setdefault(low.rpartition(".")[2], []).append(p)
    found = difflib.get_close_matches(name.lower(), list(leaves), n=n, cutoff=0.6)
    return [p for leaf in found for p in leaves[leaf]][:n]


def _one_line(message: str, drop_candidates: bool) -> str:
    """DuckDB's message on one line: no ``LINE 1:``/caret context, optionally without its own candidates."""
    keep = []
    for line in message.splitlines():
        s = line.strip()
        if not s or s.startswith("LINE ") or set(s) <= {"^", " "}:
            continue
        if drop_candidates and s.startswith(("Candidate bindings:", "Candidate Entries:")):
            continue
        keep.append(s.rstrip("!"))
    return " ".join(k if k.endswith((".", "?", ":")) else k + "." for k in keep).removesuffix(".")


def query_error(con: duckdb.DuckDBPyConnection, sql: str, error: duckdb.Error) -> QueryError:
    """A one-line QueryError: DuckDB's reason, then for SQL mistakes the closest columns and the tables."""
    message = str(error)
    unknown = next((m.group(1) for rx in _UNKNOWN_NAME if (m := rx.search(message))), None)
    close, paths = [], {}
    if unknown:
        named = [t for t in VIEWS if re.search(rf"\b{t}\b", sql, re.IGNORECASE)]
        paths = column_paths(con, named or VIEWS)
        close = closest_columns(sql, unknown, paths)
    parts = [_one_line(message, drop_candidates=bool(close))]
    if close:
        many = len({t for p in close for t in paths[p]}) > 1
        parts.append("Closest columns: " + ", ".join(f"{p} ({', '.join(paths[p])})" if many else p for p in close))
    if isinstance(error, duckdb.ProgrammingError):  # parser, binder, catalog errors: the SQL itself is wrong
        parts.append(f"Tables: {', '.join(VIEWS)} (columns: docs/schema.md)")
    return QueryError(" ".join([*(p if p.endswith((".", "?")) else p + "." for p in parts[:-1]), parts[-1]]))


# ---------------------------------------------------------------- running and writing


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column(name: str, type_id: str, fmt: str) -> str:
    """CSV gets nested values as JSON text; text formats get times as RFC 3339 (UTC, ``Z``)."""
    q = _quote(name)
    if fmt == "csv" and type_id in _NESTED:
        return f"to_json({q})::VARCHAR AS {q}"
    if fmt != "parquet" and type_id in ("timestamp with time zone", "timestamp"):
        utc = f"timezone('UTC', {q})" if type_id == "timestamp with time zone" else q
        return f"regexp_replace(strftime({utc}, '%Y-%m-%dT%H:%M:%S.%f'), '\\.?0*$', '') || 'Z' AS {q}"
    return q


def _copy(con, rel, fmt: str, path: str) -> int:
    """Write the relation with DuckDB's COPY; CSV gets nested values as JSON text. Returns the row count."""
    con.register("_soclake_query_result", rel)
    cols = [_column(c, t.id, fmt) for c, t in zip(rel.columns, rel.types)]
    target = path.replace("'", "''")
    try:
        row = con.execute(f"COPY (SELECT {', '.join(cols)} FROM _soclake_query_result) TO '{target}' ({_COPY_OPTIONS[fmt]})").fetchone()
    finally:
        con.unregister("_soclake_query_result")
    return int(row[0]) if row else 0


def _box(rel, max_rows: int, width: int | None) -> str:
    """DuckDB's own box rendering (head and tail rows, a footer with the total, types under the names)."""
    if rel.columns == ["explain_key", "explain_value"]:  # EXPLAIN [ANALYZE]: the plan text itself
        return "\n".join(r[1] for r in rel.fetchall()) + "\n"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rel.show(max_rows=max_rows, max_width=width)
    return buf.getvalue()


def check_options(fmt: str, output: str | None, limit: int | None) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet" and not output:
        raise ConfigError("--format parquet writes a file: add --output FILE")
    if output and output.startswith("s3://"):
        raise ConfigError("--output must be a local file (copy it to S3 afterwards)")
    if limit is not None and limit < 0:
        raise ConfigError("--limit must be 0 or more")


def run_query(con: duckdb.DuckDBPyConnection, sql: str, fmt: str = "table", output: str | None = None,
              limit: int | None = None, out=None) -> int | None:
    """Run ``sql`` on a connection holding the lake's views; print it to ``out`` or write ``output``.

    Returns the number of rows written to CSV, JSON Lines or Parquet (None for a table; 0 for a
    statement without a result, such as SET, which prints nothing). Raises QueryError for SQL
    mistakes and failed statements, ConfigError for bad options or an unwritable --output.
    """
    check_options(fmt, output, limit)
    out = out or sys.stdout
    try:
        rel = con.sql(sql)
        if rel is None:
            return 0
        if limit is not None:
            rel = rel.limit(limit)
        if fmt == "table":
            width = shutil.get_terminal_size().columns if not output and getattr(out, "isatty", bool)() else None
            text = _box(rel, limit if limit is not None else TABLE_ROWS, width)
            if output:
                with open(output, "w") as f:
                    f.write(text)
            else:
                out.write(text)
            return None
        if output:
            return _copy(con, rel, fmt, os.path.abspath(output))
        with tempfile.TemporaryDirectory(prefix="soclake-query-") as tmp:
            path = os.path.join(tmp, f"result.{fmt}")
            n = _copy(con, rel, fmt, path)
            with open(path, encoding="utf-8") as f:
                shutil.copyfileobj(f, out)
            return n
    except duckdb.Error as e:
        raise query_error(con, sql, e) from e
    except OSError as e:
        raise ConfigError(f"cannot write {output}: {e.strerror}") from e


def connect(lake: str) -> duckdb.DuckDBPyConnection:
    """The lake's views (``views.connect``), after checking the lake exists (a typo would look empty)."""
    from pipeline import views
    from pipeline.options import require_lake

    return views.connect(require_lake(lake))
