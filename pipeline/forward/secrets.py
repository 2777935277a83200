"""Secrets for sinks come from the environment or AWS Secrets Manager, never from the config file."""

from __future__ import annotations

import json
import os

from pydantic import BaseModel, ConfigDict, model_validator

from pipeline.errors import ConfigError


class SecretRef(BaseModel):
    """``{env: SPLUNK_HEC_TOKEN}`` or ``{secret: <name or ARN>, key: <json key, optional>}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    env: str | None = None
    secret: str | None = None
    key: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_plain_text(cls, v):
        if isinstance(v, str):
            raise ValueError("secrets are never written in the config file: use {env: VAR} or {secret: name-or-arn}")
        return v

    @model_validator(mode="after")
    def _one(self):
        if (self.env is None) == (self.secret is None):
            raise ValueError("a secret reference has exactly one of `env` or `secret`")
        return self

    def resolve(self, secrets_client=None) -> str:
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"environment variable {self.env} is not set (it should hold the sink's secret)")
            return value
        if secrets_client is None:
            from pipeline import aws

            secrets_client = aws.client("secretsmanager")
        try:
            value = secrets_client.get_secret_value(SecretId=self.secret)["SecretString"]
        except Exception as e:  # noqa: BLE001 - name the secret, never its value
            raise ConfigError(f"cannot read secret {self.secret!r} from Secrets Manager: {type(e).__name__}") from None
        if self.key:
            try:
                value = json.loads(value)[self.key]
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"secret {self.secret!r} has no JSON key {self.key!r}") from None
        return value

    def __repr__(self) -> str:  # never print values, only where they come from
        return f"SecretRef(env={self.env!r})" if self.env else f"SecretRef(secret={self.secret!r})"
