"""Forwarding configuration: sinks by ``type`` (an explicit registry), routing, retry policy.

```yaml
sinks:
  - name: splunk
    type: splunk_hec
    min_severity: medium        # routing: severity floor
    rules: ["*"]                # fnmatch patterns of rule ids (default all)
    exclude_rules: [guardduty_finding]
    url: https://splunk.example.com:8088
    token: {env: SPLUNK_HEC_TOKEN}
```
Each sink type defines its own options in its module; unknown keys are errors. Errors name the
file, line and key, never a value: a misplaced token or webhook URL must not reach a terminal or log.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.detect.alerts import Alert
from pipeline.errors import ConfigError

RANK = ("info", "low", "medium", "high", "critical")


class Retry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    attempts: int = Field(5, ge=1, description="tries per batch before the sink is left for the next run")
    base_delay: float = Field(0.5, ge=0, description="seconds; doubled each attempt, with full jitter")
    max_delay: float = Field(30.0, ge=0, description="seconds; the longest backoff between two attempts")
    max_retry_after: float = Field(
        300.0, ge=0, description="seconds; a destination's Retry-After is honoured up to this ceiling "
        "(independent of max_delay; default 5 minutes)")
    timeout: float = Field(10.0, gt=0, description="seconds per request")


class SinkConfig(BaseModel):
    """Options every sink has; each sink type subclasses it with its own."""

    model_config = ConfigDict(extra="forbid")
    name: str
    type: str
    min_severity: str = "info"
    rules: list[str] = Field(default_factory=lambda: ["*"])
    exclude_rules: list[str] = Field(default_factory=list)
    batch_size: int | None = Field(None, ge=1, description="alerts per request (default: the sink's own)")
    streams: list[Literal["alerts", "incidents", "status"]] = Field(
        default_factory=lambda: ["alerts"], description="what to deliver: alerts, incidents (as alert-shaped messages), "
        "status (each lifecycle change of an alert or incident, once), or several")
    retry: Retry = Field(default_factory=Retry)

    def routes(self, alert: Alert) -> bool:
        from pipeline.forward.incidents import INCIDENT_RULE
        from pipeline.forward.status import STATUS_RULE

        stream = {INCIDENT_RULE: "incidents", STATUS_RULE: "status"}.get(alert.rule_id, "alerts")
        if stream not in self.streams:
            return False
        if RANK.index(alert.severity) < RANK.index(self.min_severity):
            return False
        rule = alert.rule_id
        if stream == "status":  # a change is routed by the rule of the alert it is about (incidents: none)
            rule = next((e.fields.get("rule_id") for e in alert.evidence), None)
            if rule is None:
                return True
        if not any(fnmatch.fnmatchcase(rule, p) for p in self.rules):
            return False
        return not any(fnmatch.fnmatchcase(rule, p) for p in self.exclude_rules)


class ForwardConfig(BaseModel):
    """The config file as forwarding reads it: the sinks. The other sections of the one config file
    (pipeline.ops.settings, which validates them key by key) are accepted here as they are."""

    model_config = ConfigDict(extra="forbid")
    lake: str | None = None
    sinks: list[dict[str, Any]] = Field(default_factory=list)
    source: Any = None
    aws: Any = None
    ingest: Any = None
    detect: Any = None
    status: Any = None
    enrich: Any = None
    metrics: Any = None


def has_sinks(path: str | Path) -> bool:
    """Whether a config file lists sinks (``run`` forwards only then)."""
    from pipeline.ops.settings import read_file

    return bool(read_file(path)[0].get("sinks"))


SECRET_WORDS = ("token", "secret", "password", "passwd", "key", "url", "auth", "credential", "header", "webhook")


def load_config(path: str | Path) -> tuple[ForwardConfig, list[SinkConfig]]:
    """Parse the config file; each sink's options are validated by its type's model."""
    from pipeline.forward.registry import SINK_TYPES
    from pipeline.ops.settings import read_file

    path = Path(path)
    data, root = read_file(path)  # one reader for every config file: errors name the line, never quote it
    secrets = _secret_values(data)
    try:
        cfg = ForwardConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_problems(e, path, root, (), secrets)) from None
    if not cfg.sinks:
        raise ConfigError(f"{path}: no sinks: add a `sinks:` list (see deploy/soclake.example.yml)")
    sinks, names = [], set()
    for i, raw in enumerate(cfg.sinks):
        kind = raw.get("type")
        line = _line(root, ("sinks", i, "type")) or _line(root, ("sinks", i))
        if kind not in SINK_TYPES:
            raise ConfigError(f"{path}:{line}: sinks[{i}]: unknown type {kind!r} (one of: {', '.join(sorted(SINK_TYPES))})")
        model = SINK_TYPES[kind][0]
        try:
            sc = model.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(_problems(e, path, root, ("sinks", i), secrets, f" (sink {_mask(str(raw.get('name', kind)), secrets)})")) from None
        if sc.min_severity not in RANK:
            line = _line(root, ("sinks", i, "min_severity"))
            raise ConfigError(f"{path}:{line}: sinks[{i}].min_severity: must be one of {', '.join(RANK)}")
        if sc.name in names:
            raise ConfigError(f"{path}:{_line(root, ('sinks', i, 'name'))}: two sinks are named {sc.name!r}")
        names.add(sc.name)
        sinks.append(sc)
    return cfg, sinks


def _secret_values(data: Any, secret: bool = False) -> list[str]:
    """Every string under a key that looks like it holds a credential (longest first)."""
    out: list[str] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _secret_values(v, secret or any(w in str(k).lower() for w in SECRET_WORDS))
    elif isinstance(data, list):
        for v in data:
            out += _secret_values(v, secret)
    elif secret and isinstance(data, str | int) and len(str(data)) >= 4:
        out.append(str(data))
    return sorted(set(out), key=len, reverse=True)


def _mask(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, "***")
    return text


def _child(node, part):
    """(key node or None, value node) of ``part`` under a composed YAML node, or None."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def _resolve(root, loc: tuple) -> tuple[list, int | None]:
    """The leading parts of ``loc`` found in the file, and the line of the deepest one."""
    found, node, line = [], root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        hit = _child(node, part)
        if hit is None:
            break
        key, node = hit
        found.append(part)
        line = (key or node).start_mark.line + 1
    return found, line


def _line(root, loc: tuple) -> int | None:
    return _resolve(root, loc)[1]


def _dotted(parts) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def _problems(e: ValidationError, path: Path, root, base: tuple, secrets: list[str], label: str = "") -> str:
    """pydantic's errors as ``file:line: key: message``, joined on one line; never an input value."""
    out = []
    for err in e.errors(include_url=False, include_input=False, include_context=False):
        loc = base + tuple(err["loc"])
        found, line = _resolve(root, loc)
        if err["type"] == "missing" and len(found) < len(loc):
            found.append(loc[-1])
        where = _dotted(found) or "(top level)"
        msg = _mask(err["msg"].removeprefix("Value error, "), secrets)
        out.append(f"{path}:{line}: {where}{label if found[:2] == list(base) and base else ''}: {msg}")
    return "; ".join(dict.fromkeys(out))
