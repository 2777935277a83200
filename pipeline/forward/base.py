"""What every sink implements: its config model (options every sink has, routing, retry), the
sink protocol, and how it reports a batch's fate entry by entry."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from pipeline.detect.alerts import Alert
from pipeline.errors import SinkError

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
