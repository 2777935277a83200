"""AWS destinations: Security Hub (ASFF findings), SQS, SNS and EventBridge.

Each sink batches to its API's limits (count and bytes), reports every entry's fate from the
per-entry results AWS returns (failed entries are retried alone, or parked with AWS's reason),
and maps whole-call errors: throttling, 5xx, timeouts and unreachable endpoints are transient;
access denied and validation errors are permanent (parked with the AWS code and message).
Idempotence where the destination offers it: ASFF ``Id`` is the alert id (a resend updates the
same finding); FIFO queues and topics get a deduplication id per alert version.

Clients use the AWS settings the user configured (:mod:`pipeline.aws`: profile, region,
endpoint) with the sink's own timeout and no botocore retries: the delivery loop retries, with
backoff it reports and tests can stub.
"""

from __future__ import annotations

import hashlib
import json
import re
from itertools import zip_longest
from typing import Literal

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import Field

from pipeline import aws
from pipeline.forward.base import PermanentSinkError, SendResult, SinkConfig, TransientSinkError
from pipeline.forward.outbox import Outbox
from pipeline.forward.render import to_asff, to_json, to_ocsf

KB = 1024
MAX_MESSAGE = 256 * KB  # SQS / SNS message and batch payload, EventBridge PutEvents request
MAX_FINDING = 240 * KB  # Security Hub: one ASFF finding
#: Error codes that mean "slow down" or "our side failed": retried, whole call or per entry.
RETRY_CODES = {
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "SlowDown", "RequestThrottled", "RequestThrottledException", "ProvisionedThroughputExceededException",
    "LimitExceededException", "InternalFailure", "InternalError", "InternalException", "InternalServerError",
    "ServiceUnavailable", "ServiceUnavailableException",
}
Format = Literal["soclake", "ocsf"]
Attribute = Literal["severity", "rule_id", "alert_id", "account_id", "region"]


# ---------------------------------------------------------------- configuration


class SecurityHubConfig(SinkConfig):
    type: Literal["securityhub"]
    product_account: str | None = Field(None, pattern=r"^\d{12}$", description="default: STS GetCallerIdentity")
    product_region: str | None = Field(None, description="default: the client's region")
    finding_account: Literal["product", "alert"] = Field(
        "product", description="AwsAccountId of each finding: the importing (product) account, which Security Hub "
        "requires for the default product ARN unless the alert is about that same account; or the alert's account "
        "(single-account setups, allow-listed integrations). With `product` the alert's account is kept in "
        "ProductFields soclake/account_id and as an AwsAccount resource.")


class _MessageConfig(SinkConfig):
    """What SQS and SNS messages share: body format, attributes, FIFO group."""

    format: Format = "soclake"
    message_attributes: list[Attribute] = Field(default_factory=lambda: ["severity", "rule_id"])
    message_group_id: str | None = Field(None, description="FIFO queues/topics; default the alert's account id, or soclake")


class SqsConfig(_MessageConfig):
    type: Literal["sqs"]
    queue_url: str


class SnsConfig(_MessageConfig):
    type: Literal["sns"]
    topic_arn: str


class EventBridgeConfig(SinkConfig):
    type: Literal["eventbridge"]
    event_bus_name: str | None = Field(None, description="name or ARN; default the account's default bus")
    source: str = "soclake"
    detail_type: str = "soclake Alert"
    format: Format = "soclake"


# ---------------------------------------------------------------- helpers


def _client(service: str, timeout: float):
    """Like :func:`pipeline.aws.client` (the user's profile, region and endpoint), with a per-request
    timeout and one attempt per call: retries belong to the delivery loop."""
    cfg = Config(connect_timeout=timeout, read_timeout=timeout, max_pool_connections=4,
                 retries={"mode": "standard", "total_max_attempts": 1})
    return aws.client(service, config=cfg)


_REDACT = [(re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b"), "<key id>"),
           (re.compile(r"(://)[^/@\s\"']+@"), r"\1<userinfo>@")]


#: An XML error document where botocore expected its protocol's (a proxy, or moto's auth layer for SQS):
#: botocore then reports the HTTP status as the code and the whole body as the message.
_XML_ERROR = re.compile(r"<Code>([^<]+)</Code>(?:.*?<Message>([^<]*)</Message>)?", re.S)


def _clean(text: str) -> str:
    """Error text for reports: never key ids or URL credentials, one line, and short."""
    for pattern, repl in _REDACT:
        text = pattern.sub(repl, text)
    return " ".join(text.split())[:500]


def _retryable(code: str | None) -> bool:
    return bool(code) and (code in RETRY_CODES or "throttl" in code.lower())


def _retry_after(headers: dict) -> float | None:
    try:
        return float(headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


def sink_error(e: Exception, what: str) -> TransientSinkError | PermanentSinkError:
    """Map a botocore failure of a whole call to the delivery loop's two kinds."""
    if isinstance(e, ClientError):
        err, meta = e.response.get("Error", {}), e.response.get("ResponseMetadata", {})
        code, status = err.get("Code") or "Unknown", int(meta.get("HTTPStatusCode") or 0)
        message = err.get("Message") or ""
        if code.isdigit() and (xml := _XML_ERROR.search(message)):
            code, message = xml.group(1), xml.group(2) or ""
        text = _clean(f"{what}: {code}: {message}".rstrip(": "))
        if _retryable(code) or status >= 500 or status == 429:
            return TransientSinkError(text, retry_after=_retry_after(meta.get("HTTPHeaders") or {}))
        return PermanentSinkError(text)
    if isinstance(e, (BotoConnectionError, HTTPClientError)):  # refused, reset, connect/read timeouts
        return TransientSinkError(_clean(f"{what}: {type(e).__name__}: {e}"))
    if isinstance(e, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return TransientSinkError(f"{what}: no usable AWS credentials ({type(e).__name__})")  # left pending
    return PermanentSinkError(_clean(f"{what}: {type(e).__name__}: {e}"))  # ParamValidationError and the like


def _render(fmt: str, alert) -> str:
    return json.dumps(to_ocsf(alert) if fmt == "ocsf" else to_json(alert), separators=(",", ":"))


def _entry_id(i: int, alert_id: str) -> str:
    """Unique per batch and within [A-Za-z0-9_-]{1,80}; mapped back to the alert by the caller."""
    return f"{i}-{re.sub(r'[^A-Za-z0-9_-]', '_', alert_id)[:70]}"


def _dedup_id(alert) -> str:
    """One id per alert version: a resend within the FIFO window is dropped, a new version is not."""
    return hashlib.sha256((alert.id + Outbox.version(alert)).encode()).hexdigest()[:128]


def _attributes(names: list[str], alert) -> tuple[dict, int]:
    values = {"severity": alert.severity, "rule_id": alert.rule_id, "alert_id": alert.id,
              "account_id": alert.account_id, "region": alert.region}
    attrs = {n: {"DataType": "String", "StringValue": str(values[n])} for n in names if values[n]}
    return attrs, sum(len(n) + len("String") + len(a["StringValue"].encode()) for n, a in attrs.items())


def _subject(title: str) -> str:
    """SNS subjects: printable ASCII, no line breaks, starting with a letter, digit or punctuation, < 100 chars."""
    text = "".join(c if " " <= c <= "~" else ("?" if ord(c) > 127 else " ") for c in title)
    text = " ".join(text.split())[:99].strip()
    return text or "soclake alert"


def _chunks(entries: list, count: int, limit: int | None) -> list[list]:
    """Split (alert, entry, size) triples into calls of at most ``count`` entries and ``limit`` bytes."""
    out, cur, size = [], [], 0
    for item in entries:
        if cur and (len(cur) >= count or (limit and size + item[2] > limit)):
            out.append(cur)
            cur, size = [], 0
        cur.append(item)
        size += item[2]
    return out + ([cur] if cur else [])


# ---------------------------------------------------------------- sinks


class _AwsSink:
    service = ""
    max_batch = 10
    max_item = MAX_MESSAGE  # bytes per entry
    max_call: int | None = MAX_MESSAGE  # bytes per call
    what = ""  # "service Operation", for messages

    def __init__(self, cfg):
        self.name, self.cfg = cfg.name, cfg
        self.client = _client(self.service, cfg.retry.timeout)

    def _call(self, method: str, **params) -> dict:
        try:
            return getattr(self.client, method)(**params)
        except (ClientError, BotoCoreError) as e:
            raise sink_error(e, self.what) from None

    def _entry(self, index: int, alert) -> tuple[dict, int]:
        raise NotImplementedError

    def _put(self, chunk: list, res: SendResult) -> None:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Anything to resolve before the first call (raises Transient/PermanentSinkError)."""

    def send(self, alerts) -> SendResult:
        alerts = list({a.id: a for a in alerts}.values())  # one entry per alert (its latest version)
        self._prepare()
        res, entries = SendResult(), []
        for i, alert in enumerate(alerts):
            entry, size = self._entry(i, alert)
            if size > self.max_item:
                res.rejected[alert.id] = f"too large: {size} bytes, over the {self.max_item}-byte {self.what} limit"
            else:
                entries.append((alert, entry, size))
        chunks = _chunks(entries, self.max_batch, self.max_call)
        sent = False
        for k, chunk in enumerate(chunks):
            try:
                self._put(chunk, res)
                sent = True
            except TransientSinkError as e:
                if not sent and not res.rejected:
                    raise  # nothing went out: the whole batch is retried
                for rest in chunks[k:]:  # keep what was delivered; retry the rest
                    res.retry.update({a.id: str(e) for a, _, _ in rest})
                res.retry_after = e.retry_after
                break
            except PermanentSinkError as e:
                if len(chunks) == 1 and not res.rejected:
                    raise
                res.rejected.update({a.id: str(e) for a, _, _ in chunk})
        return res

    @staticmethod
    def _fate(res: SendResult, alert, code: str | None, message: str | None, retry: bool) -> None:
        reason = _clean(f"{code or 'Error'}: {message or ''}".rstrip(": "))
        (res.retry if retry else res.rejected)[alert.id] = reason

    def _by_id_results(self, chunk: list, resp: dict, res: SendResult) -> None:
        """SQS and SNS batch results: ``Successful`` and ``Failed`` entries by entry Id."""
        ok = {s.get("Id") for s in resp.get("Successful") or []}
        failed = {f.get("Id"): f for f in resp.get("Failed") or []}
        for alert, entry, _ in chunk:
            if entry["Id"] in failed:
                f = failed[entry["Id"]]
                retry = not f.get("SenderFault") or _retryable(f.get("Code"))
                self._fate(res, alert, f.get("Code"), f.get("Message"), retry)
            elif entry["Id"] in ok:
                res.delivered.append(alert.id)
            else:
                res.retry[alert.id] = f"{self.what}: no result for this entry"

    def close(self) -> None:
        self.client.close()


class SecurityHubSink(_AwsSink):
    """BatchImportFindings: up to 100 ASFF findings per call; ``Id`` = alert id, so a resend or a new
    version updates the one finding."""

    service, max_batch, max_item, max_call = "securityhub", 100, MAX_FINDING, None
    what = "securityhub BatchImportFindings"

    def __init__(self, cfg: SecurityHubConfig):
        super().__init__(cfg)
        self.account = cfg.product_account
        self.region = cfg.product_region or self.client.meta.region_name

    def _prepare(self) -> None:
        if self.account is None:
            sts = _client("sts", self.cfg.retry.timeout)
            try:
                self.account = sts.get_caller_identity()["Account"]
            except (ClientError, BotoCoreError) as e:
                raise sink_error(e, "sts GetCallerIdentity") from None
            finally:
                sts.close()

    def _entry(self, index, alert):
        finding = to_asff(alert, self.account, self.region)
        if self.cfg.finding_account == "product":
            finding["ProductFields"]["soclake/account_id"] = finding["AwsAccountId"]
            finding["AwsAccountId"] = self.account
        return finding, len(json.dumps(finding, separators=(",", ":")).encode())

    def _put(self, chunk, res):
        resp = self._call("batch_import_findings", Findings=[e for _, e, _ in chunk])
        failed = {f.get("Id"): f for f in resp.get("FailedFindings") or []}
        expected = sum(1 for a, _, _ in chunk if a.id not in failed)
        trusted = resp.get("SuccessCount") is None or resp["SuccessCount"] >= expected
        for alert, _, _ in chunk:
            if alert.id in failed:
                f = failed[alert.id]
                self._fate(res, alert, f.get("ErrorCode"), f.get("ErrorMessage"), _retryable(f.get("ErrorCode")))
            elif trusted:
                res.delivered.append(alert.id)
            else:  # counts disagree: resend (idempotent by finding Id) rather than claim delivery
                res.retry[alert.id] = f"{self.what}: SuccessCount {resp['SuccessCount']} of {expected} expected"


class SqsSink(_AwsSink):
    """SendMessageBatch: 10 entries and 256 KB per call; FIFO queues deduplicate resends."""

    service, what = "sqs", "sqs SendMessageBatch"

    def __init__(self, cfg: SqsConfig):
        super().__init__(cfg)
        self.fifo = cfg.queue_url.rstrip("/").endswith(".fifo")

    def _entry(self, index, alert):
        body = _render(self.cfg.format, alert)
        entry = {"Id": _entry_id(index, alert.id), "MessageBody": body}
        attrs, attr_size = _attributes(self.cfg.message_attributes, alert)
        if attrs:
            entry["MessageAttributes"] = attrs
        if self.fifo:
            entry["MessageGroupId"] = self.cfg.message_group_id or alert.account_id or "soclake"
            entry["MessageDeduplicationId"] = _dedup_id(alert)
        return entry, len(body.encode()) + attr_size

    def _put(self, chunk, res):
        resp = self._call("send_message_batch", QueueUrl=self.cfg.queue_url, Entries=[e for _, e, _ in chunk])
        self._by_id_results(chunk, resp, res)


class SnsSink(_AwsSink):
    """PublishBatch: 10 entries and 256 KB per call; FIFO topics deduplicate resends."""

    service, what = "sns", "sns PublishBatch"

    def __init__(self, cfg: SnsConfig):
        super().__init__(cfg)
        self.fifo = cfg.topic_arn.endswith(".fifo")

    def _entry(self, index, alert):
        body, subject = _render(self.cfg.format, alert), _subject(alert.title)
        entry = {"Id": _entry_id(index, alert.id), "Message": body, "Subject": subject}
        attrs, attr_size = _attributes(self.cfg.message_attributes, alert)
        if attrs:
            entry["MessageAttributes"] = attrs
        if self.fifo:
            entry["MessageGroupId"] = self.cfg.message_group_id or alert.account_id or "soclake"
            entry["MessageDeduplicationId"] = _dedup_id(alert)
        return entry, len(body.encode()) + len(subject) + attr_size

    def _put(self, chunk, res):
        resp = self._call("publish_batch", TopicArn=self.cfg.topic_arn,
                          PublishBatchRequestEntries=[e for _, e, _ in chunk])
        self._by_id_results(chunk, resp, res)


class EventBridgeSink(_AwsSink):
    """PutEvents: 10 entries and 256 KB per call; results come back in request order."""

    service, what = "events", "events PutEvents"

    def _entry(self, index, alert):
        detail = _render(self.cfg.format, alert)
        entry = {"Source": self.cfg.source, "DetailType": self.cfg.detail_type, "Detail": detail,
                 "Time": alert.detected_at}
        if self.cfg.event_bus_name:
            entry["EventBusName"] = self.cfg.event_bus_name
        # The size AWS counts: Time (14) + Source + DetailType + Detail (+ Resources, unused).
        size = 14 + len(self.cfg.source.encode()) + len(self.cfg.detail_type.encode()) + len(detail.encode())
        return entry, size

    def _put(self, chunk, res):
        resp = self._call("put_events", Entries=[e for _, e, _ in chunk])
        for item, result in zip_longest(chunk, resp.get("Entries") or []):
            if item is None:
                break
            alert = item[0]
            if result is None:
                res.retry[alert.id] = f"{self.what}: no result for this entry"
            elif result.get("ErrorCode"):
                code = result["ErrorCode"]
                self._fate(res, alert, code, result.get("ErrorMessage"), _retryable(code))
            elif result.get("EventId"):
                res.delivered.append(alert.id)
            else:
                res.retry[alert.id] = f"{self.what}: no event id for this entry"


SINK_TYPES = {
    "securityhub": (SecurityHubConfig, SecurityHubSink),
    "sqs": (SqsConfig, SqsSink),
    "sns": (SnsConfig, SnsSink),
    "eventbridge": (EventBridgeConfig, EventBridgeSink),
}
