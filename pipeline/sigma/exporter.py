"""``soclake rules export-sigma``: soclake rules whose SQL is a conjunction/disjunction of field
conditions, written back as Sigma rules (AWS CloudTrail).

The rule's SQL is parsed by DuckDB itself (``json_serialize_sql``, as :mod:`pipeline.detect.sqlshape`
does) and must be one ``SELECT ... FROM cloudtrail WHERE ...`` without joins, CTEs, subqueries,
aggregates, windows or ``unnest``. The ``WHERE`` is walked into Sigma selections and a condition:

| SQL | Sigma |
|---|---|
| ``col = 'v'``, ``col IN (...)``, ``col = 22``, ``col = true`` | ``col: v`` (a list for ``IN``) |
| ``col ILIKE '%v%'`` / ``'v%'`` / ``'%v'`` (``LIKE``: ``|cased``) | ``col|contains`` / ``|startswith`` / ``|endswith`` (other patterns: ``*``/``?`` wildcards) |
| ``starts_with`` / ``ends_with`` / ``contains(col, 'v')`` | the same modifiers with ``|cased`` |
| ``regexp_matches(col, 're'[, 'i'])`` | ``col|re`` (``|i``) |
| the IPv4 range test the importer writes, ``BETWEEN`` an aligned block | ``col|cidr`` |
| ``col IS NULL`` / ``col IS NOT NULL`` | ``col: null`` / ``col|exists: true`` |
| ``col IS DISTINCT FROM 'v'`` | not ``col: v`` |
| ``col <> 'v'``, ``col NOT IN``, ``NOT col ILIKE`` | ``col|exists: true`` and not ``col: v`` (SQL's NULL: an absent field is not "not v") |
| ``NOT coalesce((x), false)`` (the importer's negation) | ``not x`` |
| ``requestParameters->>'$.a.b'`` | ``requestParameters.a.b`` |

Anything else (another negation of a compound expression, whose NULL semantics Sigma cannot say;
functions; comparisons between columns) makes the rule inexpressible, and the export says why.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import uuid
from dataclasses import dataclass

import yaml

from pipeline.detect.sqlshape import analyse, parse, walk

LEVELS = {"info": "informational", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "soclake-rules")


class Inexpressible(Exception):
    """The rule cannot be written as Sigma: the message is the reason."""


@dataclass
class Leaf:
    key: str  # field|modifiers
    value: object
    field: str

    def item(self) -> dict:
        return {self.key: self.value}


# -- expressions ------------------------------------------------------------------------------------


def _args(n: dict) -> list[dict]:
    if "arguments" in n:
        return [a["expression"] for a in n["arguments"]]
    return n.get("children", [])


def _const(n: dict):
    if n.get("class") != "CONSTANT":
        raise Inexpressible(f"expected a constant, found {n.get('class', '?').lower()}")
    lit = n["literal"]
    kind, text = lit.get("kind"), lit.get("text")
    if kind == "STRING":
        return text
    if kind == "BOOLEAN":
        return text == "true"
    if kind in ("INTEGER", "BIGINT", "HUGEINT", "DECIMAL", "DOUBLE", "INTEGER_LITERAL"):
        return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
    if kind == "NULL":
        return None
    raise Inexpressible(f"constant of type {kind}")


def field_of(n: dict, alias: str) -> str:
    """A Sigma field name for a column expression (struct paths dotted, JSON paths too)."""
    cls = n.get("class")
    if cls == "COLUMN_REF":
        names = list(n["column_names"])
        if alias and len(names) > 1 and names[0] == alias:
            names = names[1:]
        return ".".join(names)
    if cls == "FUNCTION" and n.get("function_name") in ("->>",):
        col, path = _args(n)
        base = field_of(col, alias)
        text = _const(path)
        if not isinstance(text, str) or not text.startswith("$"):
            raise Inexpressible(f"JSON path {text!r}")
        parts = re.findall(r'\.(?:"((?:[^"\\]|\\.)*)"|([A-Za-z_][A-Za-z0-9_]*))', text)
        keys = [q.replace('\\"', '"') or k for q, k in parts]
        if "".join(f".{k}" for k in keys) != text[1:] and not parts:
            raise Inexpressible(f"JSON path {text!r}")
        if any("." in k for k in keys):
            raise Inexpressible(f"JSON key with a dot in {text!r}")
        return ".".join([base, *keys])
    if cls == "CAST":
        return field_of(n["child"], alias)
    raise Inexpressible(f"{(n.get('function_name') or cls or '?').lower()} is not a field")


def _sigma_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


def like_leaf(field: str, pattern: str, cased: bool, escape: str | None) -> Leaf:
    """A LIKE pattern as Sigma: contains/startswith/endswith when it is one, else wildcards."""
    tokens, i = [], 0
    while i < len(pattern):  # (is_wildcard, text)
        ch = pattern[i]
        if escape and ch == escape and i + 1 < len(pattern):
            tokens.append((False, pattern[i + 1]))
            i += 2
            continue
        tokens.append((True, "*") if ch == "%" else (True, "?") if ch == "_" else (False, ch))
        i += 1
    mods = "|cased" if cased else ""
    inner = tokens
    if len(tokens) >= 2 and tokens[0] == (True, "*") and tokens[-1] == (True, "*"):
        mod, inner = "|contains", tokens[1:-1]
    elif tokens and tokens[-1] == (True, "*"):
        mod, inner = "|startswith", tokens[:-1]
    elif tokens and tokens[0] == (True, "*"):
        mod, inner = "|endswith", tokens[1:]
    else:
        mod = ""
    if any(w for w, _ in inner):
        mod, inner = "", tokens
    value = "".join(t if w else _sigma_escape(t) for w, t in inner)
    return Leaf(f"{field}{mod}{mods}", value, field)


def _cidr(n: dict, alias: str) -> Leaf | None:
    """The importer's IPv4 range test: ``CASE WHEN ... THEN list_reduce(...) END BETWEEN lo AND hi``."""
    if n.get("type") != "COMPARE_BETWEEN":
        return None
    inp = n.get("input", {})
    cols = {field_of(c, alias) for c in walk(inp) if c.get("class") == "COLUMN_REF" and c["column_names"] not in (["o"], ["a"], ["b"])}
    if inp.get("class") != "CASE" or len(cols) != 1:
        return None
    lo, hi = _const(n["lower"]), _const(n["upper"])
    nets = list(ipaddress.summarize_address_range(ipaddress.IPv4Address(int(lo)), ipaddress.IPv4Address(int(hi))))
    if len(nets) != 1:
        raise Inexpressible(f"IPv4 range {lo}..{hi} is not one CIDR block")
    field = cols.pop()
    return Leaf(f"{field}|cidr", str(nets[0]), field)




_LIKE = {"~~": False, "~~*": True, "like_escape": False, "ilike_escape": True}
_NOT_LIKE = {"!~~": False, "!~~*": True, "not_like_escape": False, "not_ilike_escape": True}
_CASED = {"starts_with": "|startswith", "prefix": "|startswith", "ends_with": "|endswith", "suffix": "|endswith",
          "contains": "|contains"}


def leaf(n: dict, alias: str):
    """A positive leaf (Leaf), or ("not", Leaf) for a negated field condition, or None if not a leaf."""
    typ, cls = n.get("type"), n.get("class")
    if typ in ("COMPARE_EQUAL", "COMPARE_NOTEQUAL", "COMPARE_DISTINCT_FROM", "COMPARE_NOT_DISTINCT_FROM"):
        left, right = n["left"], n["right"]
        if left.get("class") == "CONSTANT":
            left, right = right, left
        f = field_of(left, alias)
        lf = Leaf(f, _const(right), f)
        if typ == "COMPARE_DISTINCT_FROM":  # NULL-safe: exactly Sigma's `not` (an absent field is distinct)
            return ("distinct", lf)
        return lf if typ in ("COMPARE_EQUAL", "COMPARE_NOT_DISTINCT_FROM") else ("not", lf)
    if typ in ("COMPARE_IN", "COMPARE_NOT_IN"):
        first, *rest = _args(n)
        f = field_of(first, alias)
        lf = Leaf(f, [_const(c) for c in rest], f)
        return lf if typ == "COMPARE_IN" else ("not", lf)
    if typ == "OPERATOR_IS_NULL":
        f = field_of(_args(n)[0], alias)
        return Leaf(f, None, f)
    if typ == "OPERATOR_IS_NOT_NULL":
        f = field_of(_args(n)[0], alias)
        return Leaf(f"{f}|exists", True, f)
    if typ == "COMPARE_BETWEEN":
        return _cidr(n, alias) or None
    if cls == "FUNCTION":
        name = n["function_name"]
        args = _args(n)
        if name in _LIKE or name in _NOT_LIKE:
            f = field_of(args[0], alias)
            esc = _const(args[2]) if len(args) > 2 else None
            lf = like_leaf(f, _const(args[1]), not {**_LIKE, **_NOT_LIKE}[name], esc)
            return lf if name in _LIKE else ("not", lf)
        if name == "regexp_matches":
            f = field_of(args[0], alias)
            opts = _const(args[2]) if len(args) > 2 else ""
            if opts not in ("", "i"):
                raise Inexpressible(f"regexp_matches options {opts!r}")
            return Leaf(f"{f}|re" + ("|i" if opts == "i" else ""), _const(args[1]), f)
        if name in _CASED:
            f = field_of(args[0], alias)
            return Leaf(f"{f}{_CASED[name]}|cased", _sigma_escape(_const(args[1])), f)
    return None


# -- boolean structure -----------------------------------------------------------------------------


class Builder:
    def __init__(self, alias: str):
        self.alias = alias
        self.selections: dict[str, dict] = {}

    def add(self, item: dict, hint: str) -> str:
        for name, existing in self.selections.items():
            if existing == item:
                return name
        base = re.sub(r"\W+", "_", hint.split("|")[0].split(".")[-1]).strip("_").lower() or "sel"
        name, i = f"selection_{base}", 2
        while name in self.selections:
            name, i = f"selection_{base}_{i}", i + 1
        self.selections[name] = item
        return name

    def negated(self, lf: Leaf) -> str:
        exists = self.add({f"{lf.field}|exists": True}, lf.field + "_exists")
        return f"({exists} and not {self.add(lf.item(), lf.field)})"

    def cond(self, n: dict, top: bool = False) -> str:
        typ = n.get("type")
        if typ in ("CONJUNCTION_AND", "CONJUNCTION_OR"):
            kids = n["children"]
            if typ == "CONJUNCTION_AND":
                leaves = [leaf(k, self.alias) for k in kids]
                if all(isinstance(lf, Leaf) for lf in leaves) and len({lf.key for lf in leaves}) == len(leaves):
                    item = {}
                    for lf in leaves:
                        item.update(lf.item())
                    return self.add(item, leaves[0].field)
            else:
                leaves = [leaf(k, self.alias) for k in kids]
                if all(isinstance(lf, Leaf) and not isinstance(lf.value, list | None) for lf in leaves) \
                        and len({lf.key for lf in leaves}) == 1:
                    return self.add({leaves[0].key: [lf.value for lf in leaves]}, leaves[0].field)
            joined = f" {'and' if typ == 'CONJUNCTION_AND' else 'or'} ".join(self.cond(k) for k in kids)
            return joined if top else f"({joined})"
        if typ == "OPERATOR_NOT":
            inner = _args(n)[0]
            if inner.get("type") == "OPERATOR_COALESCE":
                x, fallback = _args(inner)
                if _const(fallback) is not False:
                    raise Inexpressible("NOT coalesce(x, true)")
                return f"not {self.cond(x)}"
            lf = leaf(inner, self.alias)
            if isinstance(lf, Leaf):
                return self.negated(lf)
            raise Inexpressible("NOT over a compound expression: SQL's NULLs make it differ from Sigma's `not` "
                                "(write NOT coalesce((...), false))")
        lf = leaf(n, self.alias)
        if isinstance(lf, Leaf):
            return self.add(lf.item(), lf.field)
        if isinstance(lf, tuple) and lf[0] == "distinct":
            return f"not {self.add(lf[1].item(), lf[1].field)}"
        if isinstance(lf, tuple):
            return self.negated(lf[1])
        raise Inexpressible(f"{(n.get('function_name') or typ or '?').lower()} is not a field condition")


def detection(sql: str) -> dict:
    """Sigma ``detection`` for a rule's SQL, or Inexpressible with the reason."""
    try:
        tree = parse(sql)
    except ValueError as e:
        raise Inexpressible(f"SQL does not parse: {e}") from None
    stmts = tree["statements"]
    node = stmts[0]["node"] if len(stmts) == 1 else {}
    if node.get("type") != "SELECT_NODE":
        raise Inexpressible("not a single SELECT (UNION or other set operation)")
    if node.get("cte_map", {}).get("map"):
        raise Inexpressible("uses WITH (CTEs)")
    frm = node.get("from_table", {})
    if frm.get("type") != "BASE_TABLE" or frm.get("table_name") != "cloudtrail":
        raise Inexpressible("does not read the cloudtrail table alone (joins, other tables, subqueries)")
    shape = analyse(sql)
    if shape.stateful:
        raise Inexpressible("aggregates, GROUP BY, windows or DISTINCT: a threshold, not a single-event rule")
    if any(n.get("class") == "FUNCTION" and n.get("function_name") in ("unnest", "generate_series", "range")
           for n in walk(node.get("select_list", []))):
        raise Inexpressible("the SELECT list unnests: one event can alert more than once")
    if any(n.get("class") == "SUBQUERY" for n in walk(node)):
        raise Inexpressible("uses a subquery")
    where = node.get("where_clause")
    if where is None:
        raise Inexpressible("no WHERE: every event would alert")
    b = Builder(frm.get("alias") or "")
    condition = b.cond(where, top=True)
    return {**b.selections, "condition": condition}


# -- rules ------------------------------------------------------------------------------------------


def sigma_rule(rule) -> dict:
    if rule.correlation is not None:
        raise Inexpressible("a correlation rule: only single-event rules are exported")
    if rule.source == "guardduty":
        raise Inexpressible("a GuardDuty rule: Sigma's AWS logsource here is cloudtrail")
    det = detection(rule.query)
    from pipeline.detect.coverage import attack_table

    table = attack_table()
    tags = [f"attack.{table.tactics[t][1]}" for t in rule.attack.tactics if t in table.tactics]
    tags += [f"attack.{t.lower()}" for t in rule.attack.techniques]
    sigma_id = next((t.split(":", 1)[1] for t in rule.tags if t.startswith("sigma-id:")), None)
    status = next((t.split(":", 1)[1] for t in rule.tags if t.startswith("sigma-status:")), "experimental")
    return {
        "title": rule.title,
        "id": sigma_id or str(uuid.uuid5(NAMESPACE, rule.id)),
        "name": rule.id,
        "status": status,
        "description": rule.description.strip(),
        "references": list(rule.references),
        "author": "soclake",
        "date": dt.date.today().isoformat(),
        "tags": tags,
        "logsource": {"product": "aws", "service": "cloudtrail"},
        "detection": det,
        "falsepositives": list(rule.false_positives),
        "level": LEVELS[rule.severity],
    }


def dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110)


def export_sigma(rules, ids: list[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """(rule id → Sigma rule) for the expressible ones, (rule id → why not) for the rest."""
    by_id = {r.id: r for r in rules}
    done, reasons = {}, {}
    for rid in ids:
        try:
            done[rid] = sigma_rule(by_id[rid])
        except Inexpressible as e:
            reasons[rid] = str(e)
    return done, reasons
