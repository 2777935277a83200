"""Saved hunting queries: one YAML file each under ``detections/hunts/``, run with ``soclake hunt``.

A hunt is what an analyst would otherwise retype in DuckDB during every investigation ("what did
this key do between 09:00 and 11:00?"), kept as reviewed SQL with typed parameters and its own
tests. Files are validated as strictly as detection rules (unknown keys, bad defaults, ``$name``
placeholders the file does not declare: errors with file and line), parameters are bound as
DuckDB named parameters (never pasted into the SQL), and each hunt's tests run raw AWS records
through the real normaliser and the real SQL, like rule tests, so ``make test`` catches a hunt
that stopped matching the lake's columns.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.detect.rules import DETECTIONS_DIR, _display, _line_for, _lines, _pydantic_messages, collect_files
from pipeline.detect.rules_base import parse_duration
from pipeline.errors import SoclakeError
from pipeline.tables import rfc3339

HUNTS_DIR = DETECTIONS_DIR / "hunts"
ParamType = Literal["string", "int", "timestamp", "duration", "date"]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LITERAL = re.compile(r"('(?:[^']|'')*')")  # SQL string literals: '$.path' in JSON paths is not a parameter
_SQL_TYPES = {"string": "VARCHAR", "int": "BIGINT", "timestamp": "TIMESTAMPTZ", "duration": "INTERVAL", "date": "DATE"}
_NO_LAKE = "/nonexistent/soclake-hunt-test-lake"  # empty alerts/incidents views for tests and checks
MAX_CELL = 60

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster rule loading


class HuntError(SoclakeError):
    """A hunt file is invalid, or a hunt was asked for with bad parameters."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_value(ptype: str, raw: Any) -> Any:
    """A parameter value (CLI text or a YAML scalar) → the Python value DuckDB binds as its type:
    TIMESTAMPTZ (a bare date is its midnight, no zone means UTC), INTERVAL, DATE, BIGINT, VARCHAR."""
    text = str(raw).strip()
    if ptype == "int":
        if isinstance(raw, bool) or not re.fullmatch(r"-?\d+", text):
            raise ValueError(f"{raw!r} is not an integer")
        return int(text)
    if ptype == "duration":
        return raw if isinstance(raw, dt.timedelta) else parse_duration(text)
    if ptype == "date":
        if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
            return raw
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{raw!r} is not a date: use YYYY-MM-DD") from None
    if ptype == "timestamp":
        try:
            t = raw if isinstance(raw, dt.datetime) else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{raw!r} is not a time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]Z") from None
        return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return str(raw)


_SAMPLES = {"string": "x", "int": 1, "timestamp": "2026-01-01T00:00:00Z", "duration": "1h", "date": "2026-01-01"}


def _snake(v: str) -> str:
    if not _NAME.match(v):
        raise ValueError(f"{v!r}: hunt ids and parameter names are lower_snake_case")
    return v


Name = Annotated[str, AfterValidator(_snake)]


class Parameter(_Strict):
    name: Name
    type: ParamType
    required: bool = False
    default: Any = None
    description: str

    @model_validator(mode="after")
    def _default(self):
        if self.required and self.default is not None:
            raise ValueError(f"{self.name}: a required parameter has no default (drop one of them)")
        if self.default is not None:
            parse_value(self.type, self.default)  # ValueError → reported at the default's line
        return self


class HuntTest(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict, description="parameter values for this test")
    events: list[dict[str, Any]] = Field(default_factory=list, description="CloudTrail records")
    findings: list[dict[str, Any]] = Field(default_factory=list, description="GuardDuty findings")
    rows: int = Field(ge=0, description="how many rows the hunt must return")
    expect: list[dict[str, Any]] = Field(default_factory=list, description="columns the first rows must have, in order")

    @model_validator(mode="after")
    def _expect(self):
        if len(self.expect) > self.rows:
            raise ValueError(f"expect describes {len(self.expect)} rows but rows is {self.rows}")
        return self


class Hunt(_Strict):
    id: Name
    title: str
    description: str
    parameters: list[Parameter] = Field(default_factory=list)
    query: str
    tests: list[HuntTest] = Field(min_length=1)
    path: str = Field("", exclude=True)
    query_line: int = Field(1, exclude=True)

    def param(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    @property
    def sql(self) -> str:
        """The query with each ``$name`` cast to its declared type: a parameter left out binds as a
        typed NULL, so ``$since + $window`` or ``event_time >= $since`` still bind when it is NULL."""
        types = {p.name: _SQL_TYPES[p.type] for p in self.parameters}
        cast = lambda m: f"CAST(${m.group(1)} AS {types[m.group(1)]})" if m.group(1) in types else m.group(0)  # noqa: E731
        parts = _LITERAL.split(self.query)  # odd items are string literals, left alone
        return "".join(part if i % 2 else _PLACEHOLDER.sub(cast, part) for i, part in enumerate(parts))

    def placeholder_problems(self) -> list[str]:
        """Every ``$name`` in the SQL is a declared parameter, and every parameter is used."""
        names = [p.name for p in self.parameters]
        used = set(_PLACEHOLDER.findall(_LITERAL.sub("''", self.query)))
        out = [f"parameter {n!r} is declared twice" for n in sorted({n for n in names if names.count(n) > 1})]
        if used - set(names):
            out.append(f"query uses ${', $'.join(sorted(used - set(names)))}, not declared in parameters")
        if set(names) - used:
            out.append(f"parameter(s) {', '.join(sorted(set(names) - used))} declared but never used in the query")
        return out


# -- loading -----------------------------------------------------------------------------------


def load_hunt_file(path: Path) -> tuple[Hunt | None, list[str]]:
    rel = _display(path)
    text = path.read_text()
    try:
        node, data = yaml.compose(text, Loader=_Loader), yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        return None, [f"{rel}:{(mark.line + 1) if mark else 1}: invalid YAML: {getattr(e, 'problem', e)}"]
    if not isinstance(data, dict):
        return None, [f"{rel}:1: a hunt file holds one mapping (id, title, description, parameters, query, tests)"]
    lines = _lines(node)
    for key in ("path", "query_line"):
        if key in data:
            return None, [f"{rel}:{_line_for(lines, (key,))}: unknown key {key!r}"]
    try:
        hunt = Hunt.model_validate({**data, "path": rel})
    except ValidationError as e:
        return None, _pydantic_messages(e, lines, rel)
    errors = [f"{rel}:{_line_for(lines, ('query',))}: {m}" for m in hunt.placeholder_problems()]
    if hunt.id != path.stem:
        errors.append(f"{rel}:{_line_for(lines, ('id',))}: id {hunt.id!r} must equal the file name ({path.stem!r})")
    for i, t in enumerate(hunt.tests if not errors else []):
        try:
            resolve_params(hunt, t.params)
        except HuntError as e:
            errors.append(f"{rel}:{_line_for(lines, ('tests', i, 'params'))}: test {t.name!r}: {e}")
    if not any(t.rows > 0 for t in hunt.tests):
        errors.append(f"{rel}:{_line_for(lines, ('tests',))}: tests need at least one case that returns rows")
    hunt = hunt.model_copy(update={"query_line": _line_for(lines, ("query",))})
    return (hunt if not errors else None), errors


def hunt_dirs(extra: list[str] | None = None) -> list[Path]:
    """The built-in hunts plus the analyst's own folders (``--hunts DIR`` / SOCLAKE_HUNTS)."""
    env = os.environ.get("SOCLAKE_HUNTS")
    return [HUNTS_DIR] + [Path(d) for d in (env.split(os.pathsep) if env else []) + list(extra or []) if d]


def _test_connection(tables: dict | None = None) -> duckdb.DuckDBPyConnection:
    from pipeline import views
    from pipeline.correlate.store import register_incidents_view
    from pipeline.detect.alert_store import register_alerts_view

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    views.register_arrow(con, tables or {})
    register_alerts_view(con, _NO_LAKE)
    register_incidents_view(con, _NO_LAKE)
    return con


def check_sql(hunts: list[Hunt]) -> list[str]:
    """Run each query on empty tables with the lake's exact columns: a typo fails here, not mid-incident."""
    con, errors = _test_connection(), []
    for h in hunts:
        values = {p.name: parse_value(p.type, _SAMPLES[p.type]) for p in h.parameters}  # and optional ones as NULL
        try:
            con.execute(h.sql, values).fetchall()
            con.execute(h.sql, {p.name: values[p.name] if p.required else None for p in h.parameters}).fetchall()
        except duckdb.Error as e:
            errors.append(f"{h.path}:{h.query_line}: query does not run: {str(e).strip().splitlines()[0]}")
    return errors


def load_hunts(dirs: list[Path] | None = None, check: bool = True) -> list[Hunt]:
    """Every hunt under ``dirs``; raise HuntError listing all problems at once."""
    hunts, errors = collect_files(dirs or hunt_dirs(), "*.yml", load_hunt_file, "hunt")
    if check and hunts:
        errors += check_sql(hunts)
    if errors:
        raise HuntError(f"{len(errors)} problem(s) in the hunts:\n  " + "\n  ".join(errors))
    return hunts


def find_hunt(hunts: list[Hunt], name: str) -> Hunt:
    for h in hunts:
        if h.id == name:
            return h
    close = ", ".join(h.id for h in hunts if name in h.id or h.id in name)
    raise HuntError(f"no hunt named {name!r}{f' (did you mean {close}?)' if close else ''}; soclake hunt --list shows them")


# -- parameters and running --------------------------------------------------------------------


def resolve_params(hunt: Hunt, given: dict[str, Any]) -> dict[str, Any]:
    """Given values (text or YAML scalars) → typed values for every parameter; clear errors otherwise."""
    unknown = [k for k in given if hunt.param(k) is None]
    if unknown:
        names = ", ".join(p.name for p in hunt.parameters) or "none"
        raise HuntError(f"hunt {hunt.id} has no parameter {', '.join(map(repr, unknown))} (its parameters: {names})")
    missing = [p for p in hunt.parameters if p.required and p.name not in given]
    if missing:
        listed = "\n".join(f"  --param {p.name}=…  ({p.type}) {p.description}" for p in missing)
        raise HuntError(f"hunt {hunt.id} needs {len(missing)} more parameter(s):\n{listed}")
    out = {}
    for p in hunt.parameters:
        raw = given.get(p.name, p.default)
        try:
            out[p.name] = None if raw is None else parse_value(p.type, raw)
        except ValueError as e:
            raise HuntError(f"hunt {hunt.id}, parameter {p.name} ({p.type}): {e}") from None
    return out


def parse_param_args(pairs: list[str], hunt: Hunt) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise HuntError(f"hunt {hunt.id}: --param takes NAME=VALUE, got {pair!r}")
        out[name.strip()] = value
    return out


def run_hunt(con: duckdb.DuckDBPyConnection, hunt: Hunt, values: dict[str, Any]) -> tuple[list[str], list[tuple]]:
    """Execute with DuckDB named parameters (bound, never formatted into the SQL)."""
    try:
        cur = con.execute(hunt.sql, values)
        return [d[0] for d in cur.description], cur.fetchall()
    except duckdb.Error as e:
        raise HuntError(f"{hunt.path}:{hunt.query_line}: hunt {hunt.id} failed: {str(e).strip().splitlines()[0]}") from None


def run_hunt_page(con: duckdb.DuckDBPyConnection, hunt: Hunt, values: dict[str, Any],
                  limit: int = 0) -> tuple[list[str], list[tuple], int]:
    """The first ``limit`` rows (0: all) and the total, with the LIMIT in the SQL: only those rows
    reach Python."""
    if not limit:
        cols, rows = run_hunt(con, hunt, values)
        return cols, rows, len(rows)
    body = hunt.query.strip().rstrip(";")  # casts of the parameters are added by .sql, as for the hunt itself
    paged = hunt.model_copy(update={"query": f"SELECT *, count(*) OVER () AS __soclake_total FROM (\n{body}\n) "
                                             f"AS hunt LIMIT {int(limit)}"})
    cols, rows = run_hunt(con, paged, values)
    total = rows[0][-1] if rows else 0
    return cols[:-1], [r[:-1] for r in rows], total


# -- the hunts' own tests ----------------------------------------------------------------------


def _same(have: Any, want: Any) -> bool:
    if want is None or have is None:
        return have is None and want is None
    if isinstance(have, dt.datetime):
        try:
            return have == parse_value("timestamp", want)
        except ValueError:
            return False
    if isinstance(have, (list, tuple)):
        if isinstance(want, list):
            return len(have) == len(want) and all(_same(h, w) for h, w in zip(have, want))
        return any(_same(h, want) for h in have)
    if isinstance(have, bool) or isinstance(want, bool):
        return have is want
    if isinstance(have, (int, float)) and not isinstance(want, str):
        return float(have) == float(want)
    return str(have) == str(want)


def run_hunt_test(hunt: Hunt, n: int) -> list[str]:
    """Problems found running test ``n`` of ``hunt`` (empty: it passed)."""
    from pipeline.detect.testing import tables_for  # raw records → the real normaliser → Arrow

    test = hunt.tests[n]
    try:
        tables = tables_for(hunt, n, test)
    except Exception as e:  # the test's own records are broken: say so
        return [f"test events do not normalise: {e}"]
    try:
        cols, rows = run_hunt(_test_connection(tables), hunt, resolve_params(hunt, test.params))
    except HuntError as e:
        return [str(e)]
    problems = []
    if len(rows) != test.rows:
        problems.append(f"expected {test.rows} row(s), got {len(rows)}")
    for i, want in enumerate(test.expect[: len(rows)]):
        row = dict(zip(cols, rows[i]))
        for k, v in want.items():
            have = row.get(k, "<no such column>")
            if not _same(have, v):
                problems.append(f"row {i + 1} column {k}: expected {v!r}, got {have!r}")
    return problems


# -- output ------------------------------------------------------------------------------------


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return rfc3339(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(map(_text, v))
    return json.dumps(v, default=str) if isinstance(v, dict) else str(v)


def _json_value(v: Any) -> Any:
    if isinstance(v, (dt.datetime, dt.date)):
        return rfc3339(v)
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    return v.total_seconds() if isinstance(v, dt.timedelta) else v


def render(cols: list[str], rows: list[tuple], fmt: str, out=None, total: int | None = None) -> None:
    """table for people; csv (lists as JSON) and jsonl for other tools; times RFC 3339 in all."""
    out = out or sys.stdout
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if v is None else json.dumps(_json_value(v)) if isinstance(v, (list, dict))
                        else _json_value(v) for v in r])
        return
    if fmt == "json":
        out.write(json.dumps([{c: _json_value(v) for c, v in zip(cols, r)} for r in rows], indent=2, default=str) + "\n")
        return
    if fmt == "jsonl":
        for r in rows:
            out.write(json.dumps({c: _json_value(v) for c, v in zip(cols, r)}, default=str) + "\n")
        return
    half = MAX_CELL // 2  # cut long cells in the middle: both ends of an ARN or a session name matter
    cells = [[(t if len(t) <= MAX_CELL else t[: half - 1] + "…" + t[-half:]) for t in map(_text, r)] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    out.write(line(cols) + "\n" + line(["-" * w for w in widths]) + "\n")
    for r in cells:
        out.write(line(r) + "\n")
    total = len(rows) if total is None else total
    shown = f"{len(rows)} of " if len(rows) < total else ""
    out.write(f"{shown}{total} row{'s' if total != 1 else ''}\n")


def select_columns(hunt: Hunt, cols: list[str], rows: list[tuple], wanted: str) -> tuple[list[str], list[tuple]]:
    names = [c.strip() for c in wanted.split(",") if c.strip()]
    unknown = [c for c in names if c not in cols]
    if unknown:
        raise HuntError(f"hunt {hunt.id} has no column {', '.join(map(repr, unknown))} (its columns: {', '.join(cols)})")
    idx = [cols.index(c) for c in names]
    return names, [tuple(r[i] for i in idx) for r in rows]


def format_list(hunts: list[Hunt]) -> str:
    out = []
    for h in sorted(hunts, key=lambda h: h.id):
        out.append(f"{h.id}: {h.title}")
        for p in h.parameters:
            state = "required" if p.required else f"default {p.default}" if p.default is not None else "optional"
            out.append(f"    {p.name:<14} {p.type:<9} {state:<14} {p.description}")
    out.append(f"{len(hunts)} hunts (soclake hunt NAME --lake PATH --param name=value …)")
    return "\n".join(out)
