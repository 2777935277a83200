"""Check each rule's SQL against the real table shapes before anything runs it."""

from __future__ import annotations

import re

import duckdb

from pipeline import views

#: Columns every rule's output may use to fill the alert (all optional but the time).
TIME_COLUMNS = ("event_time", "last_seen")


def empty_connection() -> duckdb.DuckDBPyConnection:
    """DuckDB with the tables rules query, empty but with the lake's exact columns."""
    con = duckdb.connect()
    views.register_empty(con)
    return con


def output_columns(con: duckdb.DuckDBPyConnection, query: str) -> list[str]:
    """The query's output column names, from binding it (1 ms; ``DESCRIBE`` also plans: 12 ms)."""
    return list(con.sql(query).columns)


def check_sql(rules) -> list[str]:
    """Bind each rule's SQL against the empty views (output columns of unchanged rules come from the
    shape cache) and check what the alert needs of its output."""
    from pipeline.detect.shape_cache import OutputColumns

    con = None
    errors = []
    with OutputColumns() as known:
        for rule in rules:
            cols = known.get(rule.query)
            if cols is None:
                con = con or empty_connection()
                try:
                    cols = output_columns(con, rule.query)
                except duckdb.Error as e:
                    errors.append(sql_error(rule, e))
                    continue
                known.put(rule.query, cols)
            errors += _output_problems(rule, cols)
    return errors


def _output_problems(rule, cols: list[str]) -> list[str]:
    """What the alert needs of a rule's output: a time column, the dedup keys, the title's fields."""
    from pipeline.detect.alerts import TEMPLATE_FIELDS

    where = f"{rule.path}:{rule.query_line}"
    errors = []
    if not any(c in cols for c in TIME_COLUMNS):
        errors.append(f"{where}: query must return event_time (one row per event) or last_seen (per group)")
    missing = [k for k in rule.dedup.keys if k not in cols]
    if missing:
        errors.append(f"{where}: dedup keys {missing} are not columns of the query's output {cols}")
    unknown = [f for f in rule.title_fields() if f not in cols and f not in TEMPLATE_FIELDS and f not in rule.parameters]
    if unknown:
        errors.append(f"{rule.path}: alert_title uses {unknown}, which the query does not return")
    return errors


_LINE = re.compile(r"^LINE (\d+):(.*)$", re.M)


def sql_error(rule, e: BaseException) -> str:
    """``file:line: query does not run: …`` with the line inside the query DuckDB points at (as a line of
    the rule file) and the closest column names DuckDB offers for an unknown one."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    line = rule.query_line
    m = _LINE.search(text)
    where = ""
    n = int(m.group(1)) if m else _line_naming(rule.query, first)
    if n:
        line = rule.query_line + _query_offset(rule) + n - 1
        shown = m.group(2) if m else rule.query.splitlines()[n - 1]
        where = f" (query line {n}: {shown.strip()[:100]})"
    cand = re.search(r"Candidate bindings: (.+)", text)
    hint = f"; closest columns: {cand.group(1).strip()}" if cand else ""
    return f"{rule.path}:{line}: query does not run: {first}{where}{hint}"


def _line_naming(query: str, message: str) -> int | None:
    """The first line of the query naming what the message quotes (errors without DuckDB's LINE n)."""
    for name in re.findall(r'"([^"]+)"', message) + re.findall(r"with name (\w+)", message):
        for i, text in enumerate(query.splitlines(), 1):
            if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text):
                return i
    return None


def _query_offset(rule) -> int:
    """1 when the query is a YAML block (``query: |``, its text starts on the next line), else 0."""
    from pathlib import Path

    try:
        lines = Path(rule.path).read_text().splitlines()
        key_line = lines[rule.query_line - 1].rstrip()
    except (OSError, IndexError):
        return 1
    return 1 if key_line.endswith(("|", ">", "|-", ">-", "|+", ">+")) else 0
