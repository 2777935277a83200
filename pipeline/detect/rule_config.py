"""Tuning files: suppressions and per-rule settings, applied without editing the rules.

```yaml
suppressions:            # alerts these match are kept in the lake, marked, and not forwarded
  - {rule: iam_*, principal: "arn:aws:sts::*:assumed-role/terraform/*", reason: IaC pipeline, expires: 2027-03-31}
rules:                   # rule id → settings
  cloudtrail_logging_gap: {parameters: {max_silence: 24h}}
  root_api_call: {enabled: false}
```

``soclake detect``/``run``/``rules profile`` take such files with ``--suppressions FILE`` (env
SOCLAKE_SUPPRESSIONS) and ``--rule-config FILE`` (env SOCLAKE_RULE_CONFIG). Both flags read the
same format, so one file can hold both sections; two flags let different people own them. Every
problem (unknown key, unknown rule id or parameter, a value of the wrong type) is an error naming
the file and line, all reported at once.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.detect.rules import Rule, _display, _line_for, _lines, _pydantic_messages
from pipeline.detect.suppress import Suppression, Suppressions, build
from pipeline.errors import ConfigError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster rule loading


class RuleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    parameters: dict[str, Any] = Field(default_factory=dict, description="parameter name → value (see the rule's parameters)")
    enabled: bool | None = Field(None, description="false: do not run the rule; true: run a rule its file disables")


class TuningFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    suppressions: list[dict] = Field(default_factory=list, description="entries, validated one by one (suppress.Suppression)")
    rules: dict[str, dict] = Field(default_factory=dict, description="rule id → {parameters, enabled}")


class Tuning:
    """What the tuning files say: rule settings (with where each was written) and suppressions."""

    def __init__(self):
        self.settings: dict[str, tuple[RuleSettings, str, dict]] = {}  # rule id → (settings, file, lines)
        self.entries: list[tuple[Suppression, str]] = []
        self.files: list[str] = []

    @property
    def empty(self) -> bool:
        return not self.settings and not self.entries

    def suppressions(self, today: dt.date | None = None) -> Suppressions:
        return build(self.entries, today or dt.datetime.now(dt.UTC).date())

    def apply(self, rules: list[Rule]) -> list[Rule]:
        """The rules with their configured parameter values and enabled flags (disabled ones
        included, as loaded): unknown ids and parameters are errors naming file and line."""
        by_id = {r.id: r for r in rules}
        errors: list[str] = []
        for rid, (settings, rel, lines) in self.settings.items():
            if rid not in by_id:
                errors.append(f"{rel}:{_line_for(lines, ('rules', rid))}: rules: unknown rule id {rid!r} "
                              "(soclake rules list shows them)")
                continue
            rule = by_id[rid]
            if settings.parameters:
                for name, value in settings.parameters.items():
                    try:
                        rule = rule.with_values({name: value})
                    except ValueError as e:
                        errors.append(f"{rel}:{_line_for(lines, ('rules', rid, 'parameters', name))}: "
                                      f"rules.{rid}.parameters: {e}")
            if settings.enabled is not None:
                rule = rule.model_copy(update={"enabled": settings.enabled})
            by_id[rid] = rule
        changed = [by_id[rid] for rid in self.settings if rid in by_id and self.settings[rid][0].parameters]
        if not errors and changed:
            from pipeline.detect.sql import check_sql

            where = {rid: f"{rel} (rules.{rid})" for rid, (_, rel, _) in self.settings.items()}
            errors += [f"{e} with the parameters of {where[r.id]}" for r in changed
                       for e in check_sql([r])]
        if errors:
            raise ConfigError(f"{len(errors)} problem(s) in the rule config:\n  " + "\n  ".join(errors))
        return [by_id[r.id] for r in rules]


def _read(path: str, tuning: Tuning, errors: list[str]) -> None:
    p = Path(path)
    rel = _display(p)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{rel}: cannot read the tuning file: {e.strerror or e}") from None
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        errors.append(f"{rel}:{(mark.line + 1) if mark else 1}: invalid YAML: {getattr(e, 'problem', e)}")
        return
    if data is None:
        errors.append(f"{rel}:1: the file is empty: give `suppressions:` and/or `rules:` (deploy/suppressions.example.yml)")
        return
    lines = _lines(node)
    if not isinstance(data, dict):
        errors.append(f"{rel}:1: a tuning file is a mapping with `suppressions:` and/or `rules:`")
        return
    try:
        doc = TuningFile.model_validate(data)
    except ValidationError as e:
        errors += _pydantic_messages(e, lines, rel)
        return
    for i, item in enumerate(doc.suppressions):
        where = f"{rel}:{_line_for(lines, ('suppressions', i))}"
        try:
            tuning.entries.append((Suppression.model_validate(item), where))
        except ValidationError as e:
            errors += _pydantic_messages(e, lines, rel, prefix=("suppressions", i))
    for rid, item in doc.rules.items():
        if rid in tuning.settings:
            errors.append(f"{rel}:{_line_for(lines, ('rules', rid))}: rule {rid!r} is also configured in "
                          f"{tuning.settings[rid][1]}: configure each rule in one file")
            continue
        try:
            tuning.settings[rid] = (RuleSettings.model_validate(item if item is not None else {}), rel, lines)
        except ValidationError as e:
            errors += _pydantic_messages(e, lines, rel, prefix=("rules", rid))


def load_tuning(*paths: str | None) -> Tuning:
    """Read the tuning files given (None and repeats skipped); ConfigError lists every problem."""
    tuning, errors, seen = Tuning(), [], set()
    for path in paths:
        if not path:
            continue
        key = os.path.realpath(path)
        if key in seen:
            continue
        seen.add(key)
        tuning.files.append(path)
        _read(path, tuning, errors)
    if errors:
        raise ConfigError(f"{len(errors)} problem(s) in the tuning file(s):\n  " + "\n  ".join(errors))
    return tuning


def tune(rules: list[Rule], tuning: Tuning) -> tuple[list[Rule], Suppressions]:
    """The enabled rules with their configured values, and the active suppressions."""
    rules = tuning.apply(rules)
    sup = tuning.suppressions()
    problems = sup.check_rules({r.id for r in rules})
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) in the suppressions:\n  " + "\n  ".join(problems))
    return [r for r in rules if r.enabled], sup
