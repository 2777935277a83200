"""boto3 clients built the way users configure AWS: profile, region, endpoint, standard chain.

Role assumption works through the standard chain (``role_arn``/``source_profile`` in the
profile, web identity, container and instance roles). The region is ``--region``, else
``AWS_REGION``/``AWS_DEFAULT_REGION``, else the profile's ``region``, else us-east-1. Retries:
8 attempts unless ``AWS_MAX_ATTEMPTS`` says otherwise. Nothing here runs at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, EndpointConnectionError, NoCredentialsError, ProfileNotFound

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config

DEFAULT_REGION = "us-east-1"


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

    def session(self) -> boto3.session.Session:
        """A boto3 session; an unknown profile is a :class:`ConfigError` naming it."""
        try:
            import boto3  # here: commands on local files never pay its import (~60 ms)

            return boto3.session.Session(profile_name=self.profile, region_name=self.region)
        except ProfileNotFound:
            raise ConfigError(f"AWS profile {self.profile!r} not found in the AWS config or credentials files: "
                              "check --profile or AWS_PROFILE (aws configure list-profiles shows them)") from None

    def region_of(self, session: boto3.session.Session) -> str:
        """The flag's or environment's region, else the profile's, else us-east-1."""
        return self.region or session.region_name or DEFAULT_REGION


_settings = AwsSettings()


def configure(settings: AwsSettings) -> None:
    """Set the process-wide settings the CLI parsed (used by :func:`client`); an unknown profile
    is an error now, whether or not the command ends up calling AWS."""
    global _settings
    if settings.profile:
        settings.session()
    _settings = settings


def max_attempts(default: int = 8) -> int:
    try:
        return max(1, int(os.environ.get("AWS_MAX_ATTEMPTS") or default))
    except ValueError:
        raise ConfigError(f"AWS_MAX_ATTEMPTS={os.environ['AWS_MAX_ATTEMPTS']!r} is not a whole number") from None


def client(service: str, settings: AwsSettings | None = None, max_pool: int = 32, config: Config | None = None):
    """A client from the configured settings; ``config`` overrides the retry/timeout policy
    (sinks pass one attempt per call: their delivery loop owns retries)."""
    s = settings or _settings
    session = s.session()
    from botocore.config import Config  # here: it imports most of botocore (~25 ms), which local commands never use

    cfg = config or Config(max_pool_connections=max_pool, retries={"mode": "adaptive", "max_attempts": max_attempts()})
    return session.client(service, region_name=s.region_of(session), endpoint_url=s.endpoint_url, config=cfg)


def s3_client(settings: AwsSettings | None = None):
    return client("s3", settings)


def s3_filesystem(settings: AwsSettings | None = None):
    """pyarrow's S3 filesystem with the same profile, region, credentials and endpoint as :func:`client`."""
    import pyarrow.fs as pafs

    s = settings or _settings
    session = s.session()
    creds = session.get_credentials()
    frozen = creds.get_frozen_credentials() if creds else None
    kwargs = dict(region=s.region_of(session))
    if frozen:
        kwargs.update(access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token)
    if s.endpoint_url:
        scheme, _, host = s.endpoint_url.partition("://")
        kwargs.update(endpoint_override=host, scheme=scheme)
    return pafs.S3FileSystem(**kwargs)


def describe(e: BotoCoreError) -> str:
    """One line for a botocore failure, with what to check."""
    if isinstance(e, EndpointConnectionError):
        return (f"cannot connect to {e.kwargs.get('endpoint_url', 'the endpoint')}: check --endpoint-url, "
                "AWS_ENDPOINT_URL, --region and the network")
    if isinstance(e, NoCredentialsError):
        return "no AWS credentials found: pass --profile or set AWS_PROFILE (or the standard credential chain)"
    return str(e).splitlines()[0] if str(e) else type(e).__name__
