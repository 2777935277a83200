"""What every sink implements, and how it reports a batch's fate entry by entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pipeline.detect.alerts import Alert
from pipeline.errors import SinkError


@dataclass
class SendResult:
    """Per alert id: delivered, to retry (transient), or rejected for good (parked, with reason)."""

    delivered: list[str] = field(default_factory=list)
    retry: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None  # seconds the destination asked us to wait (429 Retry-After)


class TransientSinkError(SinkError):
    """The whole batch failed in a way worth retrying: timeout, refused connection, 429, 5xx, throttling."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSinkError(SinkError):
    """The whole batch was refused for good (4xx other than 429): park it, do not retry."""


class Sink(Protocol):
    name: str
    max_batch: int  # alerts per send() call

    def send(self, alerts: list[Alert]) -> SendResult:
        """Deliver ``alerts``; report each one's fate. Raise Transient/PermanentSinkError when the
        batch as a whole failed. Never log or raise secrets (tokens, keys)."""

    def close(self) -> None:
        """Release connections."""
