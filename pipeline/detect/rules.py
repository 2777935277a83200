"""Detection rules: one YAML file each (metadata + DuckDB SQL + tests), validated strictly.

Errors name the file and the line (``detections/cloudtrail/x.yml:14: unknown key 'sevrity'``) and
a rule set reports all of its errors at once.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.detect import parameters as params_mod
from pipeline.detect.correlation import Correlation, compile_sql
from pipeline.detect.parameters import Parameter
from pipeline.detect.rules_base import parse_duration
from pipeline.errors import RuleError
from pipeline.resources import resource_dir

__all__ = ["Rule", "RuleTest", "load_rules", "parse_duration", "rule_dirs"]

DETECTIONS_DIR = resource_dir("detections")
Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES = ("info", "low", "medium", "high", "critical")
SOURCES = ("cloudtrail", "guardduty")
_ID = re.compile(r"^[a-z0-9][a-z0-9_]*$")
#: Rules that may leave attack.techniques empty. guardduty_finding passes every GuardDuty finding
#: type through, so its techniques belong to the finding types (the GuardDuty band rules carry them).
TECHNIQUES_OPTIONAL = frozenset({"guardduty_finding"})

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster rule loading


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Attack(Strict):
    tactics: list[str] = Field(min_length=1, description="ATT&CK tactic ids, e.g. TA0005")
    techniques: list[str] = Field(default_factory=list, description="ATT&CK technique ids, e.g. T1562.008 (at least one)")

    @field_validator("tactics")
    @classmethod
    def _tactics(cls, v):
        for t in v:
            if not re.match(r"^TA\d{4}$", t):
                raise ValueError(f"{t!r} is not an ATT&CK tactic id (TA0001 … TA0043)")
        return v

    @field_validator("techniques")
    @classmethod
    def _techniques(cls, v):
        for t in v:
            if not re.match(r"^T\d{4}(\.\d{3})?$", t):
                raise ValueError(f"{t!r} is not an ATT&CK technique id (T1234 or T1234.001)")
        return v


class Dedup(Strict):
    keys: list[str] = Field(default_factory=list, description="output columns that identify one alert")
    window: str = Field("1h", description="alerts of the same keys within this tumbling window are one alert")

    @field_validator("window")
    @classmethod
    def _window(cls, v):
        parse_duration(v)
        return v

    @property
    def delta(self) -> dt.timedelta:
        return parse_duration(self.window)


class RuleTest(Strict):
    name: str
    alerts: int = Field(ge=0, description="how many alerts the events must produce")
    events: list[dict[str, Any]] = Field(default_factory=list, description="CloudTrail records")
    findings: list[dict[str, Any]] = Field(default_factory=list, description="GuardDuty findings")
    expect: dict[str, Any] = Field(default_factory=dict, description="fields the first alert must have")


class Rule(Strict):
    id: str
    title: str
    severity: Severity
    description: str
    attack: Attack
    practice: str = Field(description="the security practice this rule guards")
    references: list[str] = Field(default_factory=list)
    false_positives: list[str] = Field(min_length=1, description="known benign causes (at least one)")
    runbook: str
    dedup: Dedup = Field(default_factory=Dedup)
    alert_title: str = Field(description="template: {column} of the query's output, e.g. 'Root login from {sourceIPAddress}'")
    query: str = ""
    correlation: Correlation | None = Field(None, description="a threshold or sequence, compiled to the query")
    tests: list[RuleTest]
    version: int = 1
    enabled: bool = True
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Parameter] = Field(default_factory=dict, description="name → {default, description, type}: "
                                             "values used as ${name} in the query or correlation")
    # set by the loader, not by the file
    path: str = Field("", exclude=True)
    source: str = Field("", exclude=True)
    query_line: int = Field(1, exclude=True)
    query_template: str = Field("", exclude=True)  # the query as written, before ${name} is replaced
    correlation_template: dict | None = Field(None, exclude=True)
    values: dict[str, Any] = Field(default_factory=dict, exclude=True)  # the parameter values in use

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, v):
        for name in v:
            if not params_mod.valid_name(name):
                raise ValueError(f"{name!r}: parameter names are lower_snake_case")
        return v

    @field_validator("id")
    @classmethod
    def _id(cls, v):
        if not _ID.match(v):
            raise ValueError(f"{v!r}: ids are lower_snake_case")
        return v

    @model_validator(mode="after")
    def _query_or_correlation(self):
        if bool(self.query.strip()) == (self.correlation is not None):
            raise ValueError("a rule has either `query` (SQL) or `correlation`, exactly one of them")
        return self

    def title_fields(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.alert_title) if f]

    def with_values(self, overrides: dict[str, Any]) -> Rule:
        """This rule with some parameters set to other values (checked against their types);
        ValueError names the parameter."""
        values = dict(self.values)
        for name, value in overrides.items():
            if name not in self.parameters:
                have = ", ".join(sorted(self.parameters)) or "none"
                raise ValueError(f"rule {self.id!r} has no parameter {name!r} (it has: {have})")
            try:
                values[name] = params_mod.check_value(self.parameters[name].kind, value)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        return self.model_copy(update=_rendered(self.query_template, self.correlation_template, self.parameters, values))


def _rendered(query: str, correlation: dict | None, parameters: dict, values: dict) -> dict:
    """query (and correlation) with the values in place of ${name}; ValueError if they do not fit."""
    if correlation is not None:
        corr = Correlation.model_validate(params_mod.render_correlation(correlation, parameters, values))
        return {"correlation": corr, "query": compile_sql(corr), "values": values}
    return {"query": params_mod.render_sql(query, parameters, values), "values": values}


# -- loading, with line numbers ----------------------------------------------------------------


def _lines(node, path=()) -> dict[tuple, int]:
    """(key path) → 1-based line, for every key and list item of a YAML document."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = path + (k.value,)
            out[key] = k.start_mark.line + 1
            out.update({p: ln for p, ln in _lines(v, key).items() if p != key})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_lines(item, path + (i,)))
    return out


def _line_for(lines: dict, loc: tuple) -> int:
    loc = tuple(loc)
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def _pydantic_messages(e: ValidationError, lines: dict, rel: str, prefix: tuple = ()) -> list[str]:
    out = []
    for err in e.errors():
        loc = tuple(prefix) + tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
        elif err["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
        else:
            where = ".".join(str(p) for p in loc)
            msg = f"{where}: {err['msg']}"
        out.append(f"{rel}:{_line_for(lines, loc)}: {msg}")
    return out


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_rule_file(path: Path) -> tuple[Rule | None, list[str]]:
    """Parse and validate one file's structure (SQL is checked by :func:`check_sql`)."""
    rel = _display(path)
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        return None, [f"{rel}:{(mark.line + 1) if mark else 1}: invalid YAML: {getattr(e, 'problem', e)}"]
    if not isinstance(data, dict):
        return None, [f"{rel}:1: a rule file holds one mapping (id, title, severity, …)"]
    lines = _lines(node)
    for key in ("path", "source", "query_line", "query_template", "correlation_template", "values"):
        if key in data:
            return None, [f"{rel}:{_line_for(lines, (key,))}: unknown key {key!r}"]
    data, errors = _with_defaults(data, lines, rel)
    if errors:
        return None, errors
    try:
        rule = Rule.model_validate({**data, "path": rel, "source": path.parent.name})
    except ValidationError as e:
        return None, _pydantic_messages(e, lines, rel)
    errors = []
    if rule.id != path.stem:
        errors.append(f"{rel}:{_line_for(lines, ('id',))}: id {rule.id!r} must equal the file name ({path.stem!r})")
    if rule.source not in SOURCES and rule.source not in ("correlation",):
        errors.append(f"{rel}:1: rules live in detections/<source>/ with source one of {', '.join(SOURCES)}")
    from pipeline.detect.coverage import unknown_ids

    unknown = unknown_ids(rule.attack.tactics, rule.attack.techniques)
    if unknown:
        errors.append(f"{rel}:{_line_for(lines, ('attack',))}: unknown ATT&CK id(s) {', '.join(unknown)} "
                      "(not in schemas/attack.yml: fix the id, or add it there with its official name)")
    if not rule.attack.techniques and rule.id not in TECHNIQUES_OPTIONAL:
        errors.append(f"{rel}:{_line_for(lines, ('attack',))}: attack.techniques needs at least one ATT&CK technique id")
    if not any(t.alerts > 0 for t in rule.tests) or not any(t.alerts == 0 for t in rule.tests):
        errors.append(f"{rel}:{_line_for(lines, ('tests',))}: tests need at least one case that alerts and one that does not")
    update = {"query_line": _line_for(lines, ("correlation",) if rule.correlation else ("query",))}
    if rule.correlation is not None:
        update["query"] = compile_sql(rule.correlation)
    rule = rule.model_copy(update=update)
    return (rule if not errors else None), errors


def _with_defaults(data: dict, lines: dict, rel: str) -> tuple[dict, list[str]]:
    """The rule's data with ``${name}`` replaced by the parameters' defaults (the templates kept
    for overrides), or the errors: a bad declaration, an undeclared or unused parameter."""
    raw = data.get("parameters") or {}
    if not isinstance(raw, dict):
        return data, [f"{rel}:{_line_for(lines, ('parameters',))}: parameters is a mapping: name → {{default, description}}"]
    declared, errors = {}, []
    for name, spec in raw.items():
        try:
            declared[name] = Parameter.model_validate(spec if isinstance(spec, dict) else {"default": spec})
        except ValidationError as e:
            errors += _pydantic_messages(e, lines, rel, prefix=("parameters", name))
    query, corr = data.get("query") or "", data.get("correlation")
    names = params_mod.used(query, corr)
    where = ("correlation",) if corr is not None else ("query",)
    have = ", ".join(sorted(declared)) or "none declared"
    for name in sorted(names - set(raw)):
        errors.append(f"{rel}:{_line_for(lines, where)}: ${{{name}}} is not a declared parameter ({have})")
    for name in sorted(set(declared) - names):
        errors.append(f"{rel}:{_line_for(lines, ('parameters', name))}: parameter {name!r} is declared but "
                      "the query never uses it as ${" + name + "}")
    if errors or not names:
        return {**data, "query_template": query}, errors
    values = {n: p.default for n, p in declared.items()}
    try:
        rendered = {"query": params_mod.render_sql(query, declared, values)} if query else {}
        if isinstance(corr, dict):
            rendered["correlation"] = params_mod.render_correlation(corr, declared, values)
    except ValueError as e:
        return data, [f"{rel}:{_line_for(lines, where)}: {e}"]
    return {**data, **rendered, "query_template": query, "correlation_template": corr if isinstance(corr, dict) else None,
            "values": values}, []


def collect_files(dirs: list[Path], pattern: str, load_one, kind: str, skip=lambda path: False) -> tuple[list, list[str]]:
    """Load every file matching ``pattern`` under ``dirs`` with ``load_one(path) -> (item, errors)``;
    ids must be unique across folders. Returns the items and *all* the errors found."""
    items, errors, seen = [], [], {}
    for d in dirs:
        if not d.is_dir():
            errors.append(f"{d}: {kind} folder not found")
            continue
        for path in sorted(d.glob(pattern)):
            if skip(path):
                continue
            item, errs = load_one(path)
            errors += errs
            if item is None:
                continue
            if item.id in seen:
                errors.append(f"{item.path}:1: duplicate {kind} id {item.id!r} (also in {seen[item.id]})")
                continue
            seen[item.id] = item.path
            items.append(item)
    return items, errors


def rule_dirs(extra: list[str] | None = None) -> list[Path]:
    """The built-in catalogue plus the user's folders (``--rules DIR`` / SOCLAKE_RULES)."""
    import os

    dirs = [DETECTIONS_DIR]
    env = os.environ.get("SOCLAKE_RULES")
    for d in (env.split(os.pathsep) if env else []) + list(extra or []):
        if d:
            dirs.append(Path(d))
    return dirs


def load_rules(dirs: list[Path] | None = None, check: bool = True) -> list[Rule]:
    """Load every rule under ``dirs``; raise RuleError listing *all* problems found."""
    dirs = dirs or rule_dirs()
    rules, errors = collect_files(dirs, "**/*.yml", load_rule_file, "rule", skip=lambda p: "hunts" in p.parts)
    if check and rules:
        from pipeline.detect.sql import check_sql

        errors += check_sql(rules)
    if errors:
        raise RuleError(f"{len(errors)} problem(s) in the rules:\n  " + "\n  ".join(errors))
    return rules
