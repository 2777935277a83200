"""What a rule's SQL reads, learnt from DuckDB's own parser (``json_serialize_sql``), not regexes.

For each rule the engine needs three facts to plan one shared scan instead of one scan per rule:

- **columns**: which columns of each lake table the SQL names (CTEs, aliases, ``t.*`` and
  ``SELECT *`` over a base table handled), so the scan copies only those;
- **prefilter**: per base-table reference, the ``WHERE`` of the ``SELECT`` that reads it, as SQL
  over that table's own columns. A row no reference's prefilter accepts can never reach the
  rule's output, so the shared scan keeps only rows some rule's prefilter accepts. A reference
  without a usable ``WHERE`` (a join, a subquery in the predicate, no ``WHERE``) makes the rule
  *wide*: it reads the lake itself;
- **stateful**: whether an output row depends on other rows (aggregates, ``GROUP BY``, window
  functions, ``QUALIFY``), which decides how the run may be cut into windows.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import duckdb

from pipeline import schema

LOG_TABLES = ("cloudtrail", "guardduty", "guardduty_latest")


@dataclass
class SqlShape:
    tables: set[str] = field(default_factory=set)
    columns: dict[str, set[str] | None] = field(default_factory=dict)  # None: every column
    prefilters: dict[str, list[str] | None] = field(default_factory=dict)  # None: every row
    stateful: bool = False
    names: dict[str, list[frozenset[str] | None]] = field(default_factory=dict)  # eventName sets per prefilter

    def event_names(self, table: str) -> frozenset[str] | None:
        """The ``eventName`` values every row the rule can use from ``table`` has (None: any)."""
        sets = self.names.get(table)
        if not sets or any(s is None for s in sets):
            return None
        return frozenset().union(*sets)

    def prefilter(self, table: str) -> str | None:
        """One predicate accepting every row this rule can use from ``table`` (None: all rows)."""
        preds = self.prefilters.get(table)
        if preds is None:
            return None
        return " OR ".join(f"({p})" for p in dict.fromkeys(preds)) if preds else "false"


@functools.cache
def _parser() -> duckdb.DuckDBPyConnection:
    """One private connection for parsing (made on first use, never at import)."""
    return duckdb.connect()


#: Aggregate functions rules use (``stateful`` is informational: it is shown, not relied on).
_AGGREGATES = frozenset({
    "count", "count_star", "sum", "min", "max", "avg", "mean", "list", "array_agg", "string_agg", "group_concat",
    "arg_max", "arg_min", "max_by", "min_by", "argmax", "argmin", "any_value", "first", "last", "mode", "median",
    "quantile", "quantile_cont", "quantile_disc", "bool_or", "bool_and", "approx_count_distinct", "histogram",
    "stddev", "variance", "bit_or", "bit_and", "product", "entropy", "kurtosis", "skewness", "fsum", "favg",
})


def _aggregates() -> frozenset[str]:
    return _AGGREGATES


@functools.cache
def _table_columns(table: str) -> frozenset[str]:
    base = "guardduty" if table.startswith("guardduty") else table
    return frozenset(schema.arrow_schema(base).names)


def parse(sql: str) -> dict:
    con = _parser()
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if tree.get("error"):
        raise ValueError(tree.get("error_message", "unparseable SQL"))
    return tree


def walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def _base_tables(from_table) -> list[dict]:
    """Base tables directly in a FROM clause (through joins, not into subqueries)."""
    if not isinstance(from_table, dict):
        return []
    if from_table.get("type") == "BASE_TABLE":
        return [from_table]
    if from_table.get("type") == "JOIN":
        return _base_tables(from_table.get("left")) + _base_tables(from_table.get("right"))
    return []


def _predicate_sql(sql: str, where: dict, alias: str, table: str) -> str | None:
    """The WHERE clause's text over the table's bare column names, or None if it reaches outside."""
    cols = _table_columns(table)
    edits = []
    for n in walk(where):
        cls = n.get("class")
        if cls in ("SUBQUERY", "STAR"):
            return None
        if cls == "COLUMN_REF":
            names = n["column_names"]
            if alias and len(names) > 1 and names[0] == alias:
                edits.append((n["query_location"], len(alias) + 1))
                names = names[1:]
            if names[0] not in cols and not _is_lambda_param(where, names[0]):
                return None
    start = where.get("query_location")
    length = where.get("query_location_length")
    if start is None or length is None:
        return None
    text = sql[start:start + length]
    for loc, n in sorted(edits, reverse=True):  # drop "alias." prefixes, last first
        off = loc - start
        if text[off:off + n].rstrip(".").strip('"') != alias:
            return None
        text = text[:off] + text[off + n:]
    return text


def _is_lambda_param(where: dict, name: str) -> bool:
    for n in walk(where):
        if n.get("class") == "LAMBDA":
            lhs = n.get("lhs") or {}
            for p in walk(lhs):
                if p.get("class") == "COLUMN_REF" and name in p.get("column_names", []):
                    return True
    return False


def _const(node: dict) -> str | None:
    if node.get("class") == "CONSTANT" and node.get("literal", {}).get("kind") == "STRING":
        return node["literal"]["text"]
    return None


def _names(node: dict, alias: str) -> frozenset[str] | None:
    """eventName values a predicate requires (a top-level ``eventName = / IN`` conjunct, through
    ANDs and ORs), or None when it admits any eventName."""
    def is_col(n):
        names = n.get("column_names", []) if n.get("class") == "COLUMN_REF" else []
        return names in (["eventName"], [alias, "eventName"])
    typ = node.get("type")
    if typ == "CONJUNCTION_AND":
        found = [s for s in (_names(c, alias) for c in node["children"]) if s is not None]
        return frozenset.intersection(*found) if found else None
    if typ == "CONJUNCTION_OR":
        found = [_names(c, alias) for c in node["children"]]
        return None if any(s is None for s in found) else frozenset().union(*found)
    if typ == "COMPARE_EQUAL":
        for a, b in ((node.get("left", {}), node.get("right", {})), (node.get("right", {}), node.get("left", {}))):
            if is_col(a) and _const(b) is not None:
                return frozenset([_const(b)])
    if typ == "COMPARE_IN":
        first, *rest = node.get("children", [None])
        values = [_const(c) for c in rest]
        if first and is_col(first) and rest and all(v is not None for v in values):
            return frozenset(values)
    return None


@functools.lru_cache(maxsize=1024)
def analyse(sql: str) -> SqlShape:
    tree = parse(sql)
    shape = SqlShape()
    aggregates = _aggregates()
    words: set[str] = set()
    for n in walk(tree):
        cls = n.get("class")
        if cls == "COLUMN_REF":
            words.update(n["column_names"])
        elif cls == "WINDOW":
            shape.stateful = True
        elif cls in ("FUNCTION", "AGGREGATE") and str(n.get("function_name", "")).lower() in aggregates:
            shape.stateful = True
        if n.get("type") != "SELECT_NODE":
            continue
        if n.get("group_expressions") or n.get("group_sets") or n.get("having") or n.get("qualify"):
            shape.stateful = True
        if any(m.get("type") == "DISTINCT_MODIFIER" for m in n.get("modifiers", [])):
            shape.stateful = True
        bases = [b for b in _base_tables(n.get("from_table")) if b.get("table_name") in LOG_TABLES
                 and not b.get("schema_name")]
        stars = [s for s in n.get("select_list", []) if s.get("class") == "STAR"]
        for b in bases:
            t = b["table_name"]
            shape.tables.add(t)
            alias = b.get("alias") or ""
            if any(not s.get("relation_name") or s["relation_name"] in (alias, t) for s in stars):
                shape.columns[t] = None
            else:
                shape.columns.setdefault(t, set())
            where = n.get("where_clause")
            pred = None
            if where is not None and len(bases) == 1 and n.get("from_table", {}).get("type") == "BASE_TABLE":
                pred = _predicate_sql(sql, where, alias, t)
            shape.names.setdefault(t, []).append(_names(where, alias) if pred is not None else None)
            if pred is None:
                shape.prefilters[t] = None
            elif t not in shape.prefilters:
                shape.prefilters[t] = [pred]
            elif shape.prefilters[t] is not None:
                shape.prefilters[t].append(pred)
        # a table function or view over the lake tables we do not model: read everything
    for t in shape.tables:
        if shape.columns.get(t) is not None:
            shape.columns[t] = {w for w in words if w in _table_columns(t)}
    return shape
