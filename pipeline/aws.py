"""boto3 clients built the way users configure AWS: profile, region, endpoint, standard chain.

Role assumption works through the standard chain (``role_arn``/``source_profile`` in the
profile, web identity, container and instance roles). Nothing here runs at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import boto3
from botocore.config import Config


@dataclass(frozen=True)
class AwsSettings:
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_env(cls, profile=None, region=None, endpoint_url=None) -> AwsSettings:
        """Flags win over the environment (``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``)."""
        return cls(
            profile=profile or os.environ.get("AWS_PROFILE") or None,
            region=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
            endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
        )


_settings = AwsSettings()


def configure(settings: AwsSettings) -> None:
    """Set the process-wide settings the CLI parsed (used by :func:`client`)."""
    global _settings
    _settings = settings


def client(service: str, settings: AwsSettings | None = None, max_pool: int = 32, config: Config | None = None):
    """A client from the configured settings; ``config`` overrides the retry/timeout policy
    (sinks pass one attempt per call: their delivery loop owns retries)."""
    s = settings or _settings
    session = boto3.session.Session(profile_name=s.profile, region_name=s.region or "us-east-1")
    cfg = config or Config(max_pool_connections=max_pool, retries={"mode": "adaptive", "max_attempts": 8})
    return session.client(service, endpoint_url=s.endpoint_url, config=cfg)


def s3_client(settings: AwsSettings | None = None):
    return client("s3", settings)
