"""Rule parameters: values a rule declares once and uses as ``${name}`` in its SQL or correlation,
so a deployment tunes a threshold or an allow-list without copying the rule (docs/rules.md).

```yaml
parameters:
  min_secrets: {default: 10, description: distinct secrets one principal reads within the window}
  window: {default: 1h, type: duration, description: how far back the reads are counted}
  trusted: {default: [ci-deploy], description: role names allowed to do this}
```

``${name}`` cannot collide with DuckDB SQL (DuckDB's own prepared parameters are ``$name``
and ``$1``, never followed by ``{``; a literal ``${`` in a string is written ``'$' || '{'``).
In SQL a value is pasted as a literal DuckDB parses back to exactly that value: numbers as
numbers, strings single-quoted with quotes doubled, lists as list literals (``x IN ${trusted}``
or ``list_contains(${trusted}, x)``), durations as ``INTERVAL n SECOND``, booleans as
TRUE/FALSE. Where a correlation key takes a value rather than SQL (``timespan``,
``condition.gte``, a stage's ``min``), the whole value is ``${name}`` and gets the plain value.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.detect.rules_base import parse_duration

ParamType = Literal["int", "number", "string", "bool", "list", "duration"]
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Correlation keys whose strings are SQL (placeholders become SQL literals); any other string
#: that is exactly ``${name}`` becomes the plain value.
SQL_KEYS = ("where", "query", "select")


class Parameter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    default: Any = Field(description="the value used unless a rule config overrides it")
    description: str = Field(min_length=1, description="what the value means, for the person tuning it")
    type: ParamType | None = Field(None, description="int, number, string, bool, list or duration "
                                   "(default: from the default's YAML type; durations must say so)")

    @model_validator(mode="after")
    def _default(self):
        if self.default is None:
            raise ValueError("a parameter needs a default (the value its tests run with)")
        check_value(self.kind, self.default)
        return self

    @property
    def kind(self) -> str:
        return self.type or infer_type(self.default)


def infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "list"
    return "string"


def check_value(kind: str, value: Any) -> Any:
    """The value if it fits the type; ValueError saying what was expected otherwise."""
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value),
        "string": isinstance(value, str),
        "list": isinstance(value, list) and all(isinstance(x, (str, int, float)) and not isinstance(x, bool)
                                                for x in value)
        and len({type(x) is str for x in value}) <= 1,
        "duration": isinstance(value, str),
    }[kind]
    if not ok:
        want = {"list": "a list of strings or of numbers", "int": "an integer", "bool": "true or false",
                "duration": "a duration like 15m, 1h or 2d"}.get(kind, f"a {kind}")
        raise ValueError(f"{value!r} is not {want}")
    if kind == "duration":
        parse_duration(value)
    return value


def _sql_scalar(v) -> str:
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def sql_literal(kind: str, value: Any, default: Any = None) -> str:
    """``value`` as DuckDB SQL that evaluates to exactly it (never SQL text of its own)."""
    if kind == "bool":
        return "TRUE" if value else "FALSE"
    if kind in ("int", "number"):
        return repr(value)
    if kind == "duration":
        return f"INTERVAL {int(parse_duration(value).total_seconds())} SECOND"
    if kind == "list":
        if value:
            return "[" + ", ".join(_sql_scalar(x) for x in value) + "]"
        sample = (default or [""])[0]  # an empty list keeps the element type of the default
        return f"CAST([] AS {'VARCHAR' if isinstance(sample, str) else 'DOUBLE'}[])"
    return _sql_scalar(value)


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def render_sql(text: str, params: dict[str, Parameter], values: dict[str, Any]) -> str:
    """Replace each ``${name}`` in SQL by its value's literal; an undeclared name is a ValueError."""
    def sub(m: re.Match) -> str:
        name = m.group(1).strip()
        if name not in params:
            raise ValueError(f"${{{name}}} is not a declared parameter ({', '.join(sorted(params)) or 'none declared'})")
        p = params[name]
        return sql_literal(p.kind, values[name], p.default)

    return PLACEHOLDER.sub(sub, text)


def render_value(text: str, params: dict[str, Parameter], values: dict[str, Any]) -> Any:
    """A non-SQL key: exactly ``${name}`` becomes the plain value; other text stays as written."""
    m = PLACEHOLDER.fullmatch(text.strip())
    if not m:
        if placeholders(text):
            raise ValueError(f"{text!r}: outside SQL a parameter is the whole value (e.g. `timespan: ${{window}}`)")
        return text
    name = m.group(1).strip()
    if name not in params:
        raise ValueError(f"${{{name}}} is not a declared parameter ({', '.join(sorted(params)) or 'none declared'})")
    return values[name]


def render_correlation(data: Any, params: dict[str, Parameter], values: dict[str, Any], sql: bool = False) -> Any:
    """The ``correlation:`` block with every placeholder replaced (SQL keys get literals)."""
    if isinstance(data, dict):
        return {k: render_correlation(v, params, values, sql or k in SQL_KEYS) for k, v in data.items()}
    if isinstance(data, list):
        return [render_correlation(v, params, values, sql) for v in data]
    if isinstance(data, str):
        return render_sql(data, params, values) if sql else render_value(data, params, values)
    return data


def used(query: str, correlation: Any) -> set[str]:
    """Parameter names a rule's query or correlation block mention."""
    found: set[str] = set()

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str):
            found.update(n.strip() for n in placeholders(x))

    walk(query)
    walk(correlation)
    return found


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))

