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

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import ConfigError
from pipeline.forward.base import RANK, SinkConfig
from pipeline.ops.config_file import line_of, mask, problems, read_file, secret_values


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

    return bool(read_file(path)[0].get("sinks"))


def load_config(path: str | Path) -> tuple[ForwardConfig, list[SinkConfig]]:
    """Parse the config file; each sink's options are validated by its type's model."""
    from pipeline.forward.registry import SINK_TYPES

    path = Path(path)
    data, root = read_file(path)  # one reader for every config file: errors name the line, never quote it
    secrets = secret_values(data)
    try:
        cfg = ForwardConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(problems(e, path, root, (), secrets)) from None
    if not cfg.sinks:
        raise ConfigError(f"{path}: no sinks: add a `sinks:` list (see deploy/soclake.example.yml)")
    sinks, names = [], set()
    for i, raw in enumerate(cfg.sinks):
        kind = raw.get("type")
        line = line_of(root, ("sinks", i, "type")) or line_of(root, ("sinks", i))
        if kind not in SINK_TYPES:
            raise ConfigError(f"{path}:{line}: sinks[{i}]: unknown type {kind!r} (one of: {', '.join(sorted(SINK_TYPES))})")
        model = SINK_TYPES[kind][0]
        try:
            sc = model.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(problems(e, path, root, ("sinks", i), secrets, f" (sink {mask(str(raw.get('name', kind)), secrets)})")) from None
        if sc.min_severity not in RANK:
            line = line_of(root, ("sinks", i, "min_severity"))
            raise ConfigError(f"{path}:{line}: sinks[{i}].min_severity: must be one of {', '.join(RANK)}")
        if sc.name in names:
            raise ConfigError(f"{path}:{line_of(root, ('sinks', i, 'name'))}: two sinks are named {sc.name!r}")
        names.add(sc.name)
        sinks.append(sc)
    return cfg, sinks
