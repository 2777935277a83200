"""One config file for every command: file < environment (``SOCLAKE_*``) < flags.

```yaml
lake: s3://soc-lake/prod
source: s3://central-logs/org-trail
aws: {region: eu-west-1}
ingest: {workers: 0, commit_mb: 512}
detect: {rules: [/etc/soclake/rules], lookback: 3h}
enrich: {ip_db: [/data/GeoLite2-ASN.mmdb, /data/GeoLite2-Country.mmdb]}
metrics: emf
status: {max_lag: 2h}
sinks: [...]                 # pipeline.forward.config: validated per sink type
```
The file is named by ``--config FILE`` (any command, before or after the command name) or
``SOCLAKE_CONFIG``. Every key can also come from the environment: ``SOCLAKE_LAKE``,
``SOCLAKE_DETECT__LOOKBACK=6h`` (``__`` between a section and its key), ``SOCLAKE_AWS__REGION``;
``AWS_PROFILE``, ``AWS_REGION`` and ``AWS_ENDPOINT_URL`` also beat the file. Flags beat both:
the effective settings become the commands' flag defaults, so a flag given on the command line
wins and ``--help`` stays true. Errors name the file, line and key (or the environment
variable), never a value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.errors import ConfigError
from pipeline.ops.config_file import SECRET_WORDS, mask, read_file, resolve, secret_values

ENV_PREFIX = "SOCLAKE_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration(v):
    if v is None:
        return v
    from pipeline.detect.rules import parse_duration

    parse_duration(str(v))  # raises ValueError with the reason
    return str(v)


class AwsSection(_Section):
    profile: str | None = Field(None, description="AWS profile (else AWS_PROFILE, else the standard chain)")
    region: str | None = Field(None, description="region of the clients (else AWS_REGION, the profile's, us-east-1)")
    endpoint_url: str | None = Field(None, description="custom endpoint (MinIO, a moto server)")


class IngestSection(_Section):
    workers: int | None = Field(None, ge=0, description="normalising processes (0: one per core)")
    fetch_threads: int | None = Field(None, ge=0)
    buffer_mb: int | None = Field(None, ge=1)
    commit_mb: int | None = Field(None, ge=0)
    max_object_mb: int | None = Field(None, ge=1)


class DetectSection(_Section):
    rules: list[str] = Field(default_factory=list, description="extra folders of rule files")
    lookback: str | None = Field(None, description="re-evaluate this much before the last run's end (e.g. 3h)")
    scan: Literal["shared", "per-rule"] | None = None
    window_rows: int | None = Field(None, ge=1)
    memory_mb: int | None = Field(None, ge=1)
    temp_dir: str | None = None

    _lookback = field_validator("lookback")(_duration)


class StatusSection(_Section):
    max_lag: str | None = Field(None, description="a source whose newest event is older is stale (e.g. 2h)")

    _max_lag = field_validator("max_lag")(_duration)


class EnrichSection(_Section):
    ip_db: list[str] = Field(default_factory=list, description="MaxMind-format IP databases (ASN, country; docs/enrichment.md)")
    aws_ranges: str | None = Field(None, description="a saved copy of AWS's ip-ranges.json")


class Settings(BaseSettings):
    """The whole deployment's settings; ``sinks`` are validated by their own types (forward config)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid",
                                      env_ignore_empty=True)
    lake: str | None = Field(None, description="lake root: a local folder or s3://bucket/prefix")
    source: str | None = Field(None, description="the log archive: s3://bucket[/prefix] or a folder holding AWSLogs/")
    aws: AwsSection = Field(default_factory=AwsSection)
    ingest: IngestSection = Field(default_factory=IngestSection)
    detect: DetectSection = Field(default_factory=DetectSection)
    status: StatusSection = Field(default_factory=StatusSection)
    enrich: EnrichSection = Field(default_factory=EnrichSection)
    metrics: Literal["off", "emf"] = Field("off", description="emf: CloudWatch Embedded Metric Format lines on stdout")
    sinks: list[dict[str, Any]] = Field(default_factory=list, description="forwarding (docs/forward.md)")

    @field_validator("metrics", mode="before")
    @classmethod
    def _yaml_off(cls, v):
        return "off" if v is False else v  # YAML reads a bare `off` as false

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings, file_secret_settings):
        # The file arrives as init kwargs; the environment beats it (first source wins).
        return (env_settings, init_settings)


def load_settings(path: str | Path | None = None) -> Settings:
    """The effective settings of a file (or none) and the environment, validated."""
    data, root = read_file(path) if path else ({}, None)
    try:
        return Settings(**data)
    except ValidationError as e:
        secrets = secret_values(data)
        out = []
        for err in e.errors(include_url=False, include_input=False, include_context=False):
            loc = tuple(err["loc"])
            env = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
            msg = mask(err["msg"].removeprefix("Value error, "), secrets)
            key = ".".join(str(p) for p in loc)
            if os.environ.get(env) is not None:
                out.append(f"environment {env}: {msg}")
            elif path:
                found, line = resolve(root, loc)
                out.append(f"{path}:{line}: {key}: {msg}")
            else:
                out.append(f"{key}: {msg}")
        raise ConfigError("; ".join(dict.fromkeys(out))) from None


# -- the settings as flag defaults -------------------------------------------------------------------

def config_path_from(argv: list[str]) -> str | None:
    """``--config FILE`` / ``--config=FILE`` anywhere on the command line, else SOCLAKE_CONFIG."""
    for i, a in enumerate(argv):
        if a == "--":
            break
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return os.environ.get("SOCLAKE_CONFIG") or None


def flag_defaults(s: Settings, config_path: str | None) -> dict[str, Any]:
    """Flag name → default, from the settings (only what they set); pipeline.cli makes them Click's defaults."""
    out: dict[str, Any] = {"lake": s.lake, "source": s.source, "config": config_path,
                           "metrics": None if s.metrics == "off" else s.metrics}
    # AWS's own variables beat the file too (file < environment).
    for key, envs in (("profile", ("AWS_PROFILE",)), ("region", ("AWS_REGION", "AWS_DEFAULT_REGION")),
                      ("endpoint_url", ("AWS_ENDPOINT_URL",))):
        if not any(os.environ.get(v) for v in envs):
            out[key] = getattr(s.aws, key)
    out.update(s.ingest.model_dump())
    d = s.detect.model_dump()
    d["rules"] = list(d["rules"]) or None
    out.update(d)
    out["max_lag"] = s.status.max_lag
    out["ip_db"] = list(s.enrich.ip_db) or None
    out["aws_ranges"] = s.enrich.aws_ranges
    return {k: v for k, v in out.items() if v is not None}


def effective(settings: Settings, masked: bool = True) -> dict:
    """The settings as a plain mapping, secrets masked (config check prints it)."""
    data = settings.model_dump(mode="json")
    if masked:
        data["sinks"] = _mask_tree(data["sinks"], set(secret_values(data["sinks"])))
    return data


def _mask_tree(data, secrets: set[str], under_secret: bool = False):
    if isinstance(data, dict):
        if set(data) <= {"env", "secret", "key"} and data:
            return data  # a reference ({env: VAR} / {secret: name}): where the value lives, not the value
        return {k: _mask_tree(v, secrets, under_secret or any(w in str(k).lower() for w in SECRET_WORDS))
                for k, v in data.items()}
    if isinstance(data, list):
        return [_mask_tree(v, secrets, under_secret) for v in data]
    if isinstance(data, str) and (under_secret and len(data) >= 4 or data in secrets):
        return "***"
    return data
