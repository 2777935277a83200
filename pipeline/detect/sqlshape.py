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
import orjson

from pipeline import schema

LOG_TABLES = ("cloudtrail", "guardduty", "guardduty_latest")


@dataclass
class SqlShape:
    tables: set[str] = field(default_factory=set)
    columns: dict[str, set[str] | None] = field(default_factory=dict)  # None: every column
    prefilters: dict[str, list[str] | None] = field(default_factory=dict)  # None: every row
    stateful: bool = False
    names: dict[str, list[frozenset[str] | None]] = field(default_factory=dict)  # eventName sets per prefilter
    #: Per column name, the field paths the SQL reads below it (``userIdentity.type`` → ("type",));
    #: an empty path means the whole column. Lets the shared scan copy only the struct fields used.
    paths: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)
    #: False when the SQL can return rows from no input rows (an aggregate without GROUP BY, a
    #: SELECT without FROM, VALUES, a table function): such a rule always runs.
    needs_rows: bool = True

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
    tree = orjson.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if tree.get("error"):
        raise ValueError(tree.get("error_message", "unparseable SQL"))
    return tree


@functools.lru_cache(maxsize=1024)
def _parse_shared(sql: str) -> dict:
    """:func:`parse`, cached for the readers here that never change the tree."""
    return parse(sql)


def _copy(tree: dict) -> dict:
    return orjson.loads(orjson.dumps(tree))  # a JSON tree: many times faster than copy.deepcopy


def walk(node):
    """Every dict in the tree, parents before children, in document order (no recursion: trees of
    long rules are deep and this runs over every rule at each start)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            yield n
            stack.extend(v for v in reversed(n.values()) if isinstance(v, (dict, list)))
        elif isinstance(n, list):
            stack.extend(v for v in reversed(n) if isinstance(v, (dict, list)))


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
    """An expression of the rule (its WHERE, a select item) as SQL over the table's bare column
    names, or None if it reaches outside them (a subquery, ``*``, another table's columns)."""
    node = _bare(where, alias, table)
    return None if node is None else render(node)


def _bare(node: dict, alias: str, table: str) -> dict | None:
    """A copy of the expression with ``alias.``/``table.`` prefixes dropped from column names."""
    cols = _table_columns(table)
    node = _copy(node)
    for n in walk(node):
        cls = n.get("class")
        if cls in ("SUBQUERY", "STAR"):
            return None
        if cls == "COLUMN_REF":
            names = n["column_names"]
            if len(names) > 1 and names[0] in {alias, table} - {""} and names[0] not in cols:
                names = n["column_names"] = names[1:]
            if names[0] not in cols and not _is_lambda_param(node, names[0]):
                return None
    return node


def render(node: dict) -> str:
    """SQL text of one parsed expression, as DuckDB itself prints it (fully parenthesised): the
    parse tree's text offsets do not cover postfix operators such as ``IS NOT NULL``."""
    stmt = _template("SELECT 1")
    stmt["statements"][0]["node"]["select_list"] = [{**node, "alias": ""}]
    text = _parser().execute("SELECT json_deserialize_sql(?)", [json.dumps(stmt)]).fetchone()[0]
    if not text.startswith("SELECT "):
        raise ValueError(f"cannot print expression: {text[:80]}")
    return text[len("SELECT "):]


def _template(sql: str) -> dict:
    return _copy(_parsed(sql))


@functools.cache
def _parsed(sql: str) -> dict:
    return parse(sql)


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


def _aggregates_in(exprs, aggregates: frozenset[str]) -> bool:
    """An aggregate function at this SELECT's own level (not inside a subquery or a window)."""
    todo = [e for e in exprs if isinstance(e, dict)]
    while todo:
        n = todo.pop()
        if n.get("class") in ("SUBQUERY", "WINDOW"):
            continue
        if n.get("class") in ("FUNCTION", "AGGREGATE") and str(n.get("function_name", "")).lower() in aggregates:
            return True
        for v in n.values():
            todo += [c for c in (v if isinstance(v, list) else [v]) if isinstance(c, dict)]
    return False


def _add_path(paths: dict[str, set[tuple[str, ...]]], names: list[str]) -> None:
    """Record ``col.a.b`` (or ``alias.col.a.b``) as path ("a", "b") under ``col``, for every
    candidate reading of the dotted name: the parse tree cannot tell an alias from a column."""
    for i in (0, 1):
        if len(names) > i:
            paths.setdefault(names[i], set()).add(tuple(names[i + 1:]))


#: SQL text → (analyse, simple_select) results loaded from the on-disk cache (shape_cache.prime).
SEEDED: dict[str, tuple[SqlShape, SimpleSelect | None]] = {}


def analyse(sql: str) -> SqlShape:
    """What ``sql`` reads (see the module docstring)."""
    seeded = SEEDED.get(sql)
    return seeded[0] if seeded is not None else _analyse(sql)


@functools.lru_cache(maxsize=1024)
def _analyse(sql: str) -> SqlShape:
    tree = _parse_shared(sql)
    shape = SqlShape()
    aggregates = _aggregates()
    words: set[str] = set()
    for n in walk(tree):
        cls = n.get("class")
        if cls == "COLUMN_REF":
            words.update(n["column_names"])
            _add_path(shape.paths, n["column_names"])
        elif cls == "WINDOW":
            shape.stateful = True
        elif cls in ("FUNCTION", "AGGREGATE") and str(n.get("function_name", "")).lower() in aggregates:
            shape.stateful = True
        if n.get("type") in ("EMPTY", "TABLE_FUNCTION", "EXPRESSION_LIST") and "alias" in n and "sample" in n:
            shape.needs_rows = False  # a table reference that yields rows of its own
        if n.get("type") != "SELECT_NODE":
            continue
        if not n.get("group_expressions") and not n.get("group_sets") and _aggregates_in(
                n.get("select_list", []) + [n.get("having")], aggregates):
            shape.needs_rows = False  # one row of aggregates over nothing
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


@dataclass(frozen=True)
class SimpleSelect:
    """A rule of the shape ``SELECT expr AS name, ... FROM <table> WHERE pred``: one output row
    per matching input row, nothing else. Such rules can share one query (:func:`fused_sql`)."""

    table: str
    names: tuple[str, ...]  # output column names, in order
    exprs: tuple[str, ...]  # the select items' parse trees (JSON text, bare column names)
    where: str  # the WHERE's parse tree (JSON text)


def simple_select(sql: str) -> SimpleSelect | None:
    """The rule as a :class:`SimpleSelect`, or None when it is anything more (CTEs, joins,
    aggregates, windows, DISTINCT/ORDER/LIMIT, subqueries, ``*``, unnamed expressions)."""
    seeded = SEEDED.get(sql)
    return seeded[1] if seeded is not None else _simple_select(sql)


@functools.lru_cache(maxsize=1024)
def _simple_select(sql: str) -> SimpleSelect | None:
    try:
        tree = _parse_shared(sql)
    except (ValueError, duckdb.Error):
        return None
    statements = tree.get("statements", [])
    if len(statements) != 1 or analyse(sql).stateful:
        return None
    node = statements[0]["node"]
    base = node.get("from_table") or {}
    if (node.get("type") != "SELECT_NODE" or (node.get("cte_map") or {}).get("map") or node.get("modifiers")
            or base.get("type") != "BASE_TABLE" or base.get("table_name") not in LOG_TABLES
            or base.get("schema_name") or base.get("sample") or node.get("where_clause") is None
            or node.get("sample")):
        return None
    table, alias = base["table_name"], base.get("alias") or ""
    where = _bare(node["where_clause"], alias, table)
    names, exprs = [], []
    for item in node.get("select_list", []):
        expr = _bare(item, alias, table)
        name = item.get("alias") or (item["column_names"][-1] if item.get("class") == "COLUMN_REF" else None)
        if expr is None or not name:
            return None
        names.append(name)
        exprs.append(json.dumps({**expr, "alias": name}))
    if where is None or not names or len(set(names)) != len(names):
        return None
    return SimpleSelect(table, tuple(names), tuple(exprs), json.dumps(where))


def fused_sql(selects: list[SimpleSelect]) -> str:
    """One query for many simple selects over one table: per select ``i`` a column ``r{i}``
    holding its output row as a struct where its WHERE holds (NULL elsewhere), rows where at
    least one holds. Built as a parse tree and printed by DuckDB, so no text is spliced."""
    case = _template("SELECT CASE WHEN true THEN struct_pack(a := 1) END AS r0 FROM t")
    stmt = _template(f"SELECT 1 FROM {selects[0].table}")
    items = []
    for i, sel in enumerate(selects):
        col = _copy(case["statements"][0]["node"]["select_list"][0])
        col["alias"] = f"r{i}"
        check = col["case_checks"][0]
        check["when_expr"] = json.loads(sel.where)
        check["then_expr"]["arguments"] = [{"name": n, "expression": json.loads(e)}
                                           for n, e in zip(sel.names, sel.exprs, strict=True)]
        items.append(col)
    stmt["statements"][0]["node"]["select_list"] = items
    inner = _parser().execute("SELECT json_deserialize_sql(?)", [json.dumps(stmt)]).fetchone()[0]
    hit = " OR ".join(f"r{i} IS NOT NULL" for i in range(len(selects)))
    return f"SELECT * FROM ({inner}) WHERE {hit}"
