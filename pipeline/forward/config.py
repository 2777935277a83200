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
Each sink type defines its own options in its module; unknown keys are errors.
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
    max_delay: float = Field(30.0, ge=0)
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
    streams: list[Literal["alerts", "incidents"]] = Field(
        default_factory=lambda: ["alerts"], description="what to deliver: alerts, incidents (as alert-shaped messages), or both")
    retry: Retry = Field(default_factory=Retry)

    def routes(self, alert: Alert) -> bool:
        from pipeline.forward.incidents import INCIDENT_RULE

        if ("incidents" if alert.rule_id == INCIDENT_RULE else "alerts") not in self.streams:
            return False
        if RANK.index(alert.severity) < RANK.index(self.min_severity):
            return False
        if not any(fnmatch.fnmatchcase(alert.rule_id, p) for p in self.rules):
            return False
        return not any(fnmatch.fnmatchcase(alert.rule_id, p) for p in self.exclude_rules)


class ForwardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lake: str | None = None
    sinks: list[dict[str, Any]] = Field(default_factory=list)


def load_config(path: str | Path) -> tuple[ForwardConfig, list[SinkConfig]]:
    """Parse the config file; each sink's options are validated by its type's model."""
    from pipeline.forward.registry import SINK_TYPES

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
        cfg = ForwardConfig.model_validate(data)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (yaml.YAMLError, ValidationError) as e:
        raise ConfigError(f"{path}: {e}") from None
    sinks, names = [], set()
    for i, raw in enumerate(cfg.sinks):
        kind = raw.get("type")
        if kind not in SINK_TYPES:
            raise ConfigError(f"{path}: sinks[{i}]: unknown type {kind!r} (one of: {', '.join(sorted(SINK_TYPES))})")
        model = SINK_TYPES[kind][0]
        try:
            sc = model.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(f"{path}: sinks[{i}] ({raw.get('name', kind)}): {e}") from None
        if sc.min_severity not in RANK:
            raise ConfigError(f"{path}: sinks[{i}]: min_severity must be one of {', '.join(RANK)}")
        if sc.name in names:
            raise ConfigError(f"{path}: two sinks are named {sc.name!r}")
        names.add(sc.name)
        sinks.append(sc)
    return cfg, sinks
