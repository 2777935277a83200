"""The SQS side of ``soclake watch``: receive, keep in flight, delete, return, and the DLQ's depth.

At-least-once delivery is the queue's promise; exactly-once in the lake is the ledger's. So a
message is deleted only after every object it names is committed to the ledger (or needs no
ingest); until then it is kept invisible (:class:`KeepInFlight` extends its visibility while a
long batch runs) or, when its objects fail, left to reappear when its visibility lapses, and
after the queue's ``maxReceiveCount`` receives SQS moves it to the dead-letter queue.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import ConfigError, SourceError


@dataclass
class Message:
    id: str
    receipt: str
    body: str
    receives: int = 1


def _chunks(items: list, n: int = 10):
    for i in range(0, len(items), n):
        yield items[i:i + n]


class Queue:
    """One SQS queue; the boto3 client is passed in (tests point it at a moto server)."""

    def __init__(self, client, url: str):
        self.client, self.url = client, url
        try:
            attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"])
        except ClientError as e:
            err = e.response.get("Error", {})
            raise ConfigError(f"cannot read the queue {url}: {err.get('Code', '?')} {err.get('Message', '')} "
                              "(check --queue, the region and sqs:GetQueueAttributes)") from e
        except BotoCoreError as e:
            raise ConfigError(f"cannot reach the queue {url}: {e}") from e
        a = attrs.get("Attributes", {})
        self.visibility = int(a.get("VisibilityTimeout", 30))
        policy = orjson.loads(a["RedrivePolicy"]) if a.get("RedrivePolicy") else {}
        self.dlq_arn: str | None = policy.get("deadLetterTargetArn")
        self.max_receives: int | None = int(policy["maxReceiveCount"]) if "maxReceiveCount" in policy else None
        self._dlq_url: str | None = None

    def receive(self, wait: int, max_messages: int = 10) -> list[Message]:
        try:
            r = self.client.receive_message(QueueUrl=self.url, MaxNumberOfMessages=max(1, min(10, max_messages)),
                                            WaitTimeSeconds=max(0, min(20, wait)),
                                            AttributeNames=["ApproximateReceiveCount"])
        except (ClientError, BotoCoreError) as e:
            raise SourceError(f"cannot receive from {self.url}: {e}") from e
        return [Message(m["MessageId"], m["ReceiptHandle"], m["Body"],
                        int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1))) for m in r.get("Messages", ())]

    def delete(self, messages: list[Message]) -> list[str]:
        """Delete; returns the ids SQS refused (e.g. a receipt that expired: the message comes back and
        the ledger makes its redelivery a no-op)."""
        failed = []
        for chunk in _chunks(messages):
            entries = [{"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(chunk)]
            try:
                r = self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)
            except (ClientError, BotoCoreError):
                failed += [m.id for m in chunk]
                continue
            failed += [chunk[int(f["Id"])].id for f in r.get("Failed", ())]
        return failed

    def set_visibility(self, messages: list[Message], seconds: int) -> None:
        for chunk in _chunks(messages):
            entries = [{"Id": str(i), "ReceiptHandle": m.receipt, "VisibilityTimeout": seconds} for i, m in enumerate(chunk)]
            try:
                self.client.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
            except (ClientError, BotoCoreError):
                pass  # best effort: at worst the message reappears once its current timeout lapses

    def dlq_depth(self) -> int | None:
        """Messages waiting in the dead-letter queue (None when the queue has none configured or it cannot be read)."""
        if not self.dlq_arn:
            return None
        try:
            if self._dlq_url is None:
                _, _, _, region, account, name = self.dlq_arn.split(":", 5)
                self._dlq_url = self.client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            a = self.client.get_queue_attributes(QueueUrl=self._dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
            return int(a["Attributes"]["ApproximateNumberOfMessages"])
        except (ClientError, BotoCoreError, ValueError, KeyError):
            return None


class KeepInFlight:
    """Extends the visibility of the messages being processed until :meth:`stop` (a thread).

    Every third of the queue's visibility timeout the messages are made invisible for another
    full timeout, so a batch that takes longer than the timeout (or waits for the lake's lease)
    is not handed to another consumer meanwhile. Extending does not count as a receive.
    """

    def __init__(self, queue: Queue, every: float | None = None):
        self.queue = queue
        self.every = every if every is not None else max(queue.visibility / 3, 0.2)
        self.messages: list[Message] = []
        self.extensions = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soclake-visibility", daemon=True)
        self._thread.start()

    def add(self, messages: list[Message]) -> None:
        with self._lock:
            self.messages += messages

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                held = list(self.messages)
            if held:
                self.queue.set_visibility(held, max(self.queue.visibility, 1))
                self.extensions += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
