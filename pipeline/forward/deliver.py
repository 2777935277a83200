"""Deliver pending alerts to every configured sink, each on its own: one that is down, slow or
rejecting does not hold up the others, and nothing is dropped silently."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.detect.alerts import Alert
from pipeline.forward.base import PermanentSinkError, SendResult, SinkConfig, TransientSinkError
from pipeline.forward.outbox import Outbox


@dataclass
class SinkReport:
    name: str
    pending: int = 0
    delivered: int = 0
    parked: dict[str, str] = field(default_factory=dict)  # id → reason (this run)
    left: int = 0  # still pending after all attempts: retried by the next run
    error: str | None = None
    attempts: int = 0

    def to_dict(self) -> dict:
        return {"sink": self.name, "pending": self.pending, "delivered": self.delivered, "parked": self.parked,
                "left_pending": self.left, "error": self.error, "attempts": self.attempts}


def _backoff(attempt: int, cfg: SinkConfig, retry_after: float | None) -> float:
    if retry_after is not None:  # the destination's own ask, up to its ceiling (not max_delay)
        return min(float(retry_after), cfg.retry.max_retry_after)
    return random.uniform(0, min(cfg.retry.max_delay, cfg.retry.base_delay * 2 ** attempt))  # full jitter


def deliver_batch(sink, cfg: SinkConfig, batch: list[Alert], box: Outbox, report: SinkReport,
                  sleep: Callable[[float], None] = time.sleep) -> bool:
    """Send one batch, retrying only what failed; returns False if the sink gave up on it."""
    todo = list(batch)
    by_id = {a.id: a for a in batch}
    for attempt in range(cfg.retry.attempts):
        report.attempts += 1
        try:
            res: SendResult = sink.send(todo)
        except PermanentSinkError as e:
            for a in todo:
                box.park(a, str(e))
                report.parked[a.id] = str(e)
            box.save()
            return True
        except TransientSinkError as e:
            report.error = str(e)
            if attempt + 1 < cfg.retry.attempts:
                sleep(_backoff(attempt, cfg, e.retry_after))
            continue
        box.mark_delivered([by_id[i] for i in res.delivered if i in by_id])
        report.delivered += len(res.delivered)
        for i, reason in res.rejected.items():
            if i in by_id:
                box.park(by_id[i], reason)
                report.parked[i] = reason
        box.save()
        todo = [by_id[i] for i in res.retry if i in by_id]
        if not todo:
            report.error = None
            return True
        report.error = "; ".join(sorted(set(res.retry.values())))[:300]
        if attempt + 1 < cfg.retry.attempts:
            sleep(_backoff(attempt, cfg, res.retry_after))
    return False


def deliver(alerts: list[Alert], sinks: list[tuple[SinkConfig, object]], store,
            sleep: Callable[[float], None] = time.sleep, progress=None) -> list[SinkReport]:
    """Each sink's pending alerts in batches; ``progress(step, done, total)`` hears each batch."""
    reports = []
    for cfg, sink in sinks:
        report = SinkReport(cfg.name)
        reports.append(report)
        box = Outbox.load(store, cfg.name)
        pending = [a for a in alerts if cfg.routes(a) and box.pending(a)]
        report.pending = len(pending)
        size = cfg.batch_size or sink.max_batch
        try:
            for n in range(0, len(pending), size):
                if progress:
                    progress(f"→ {cfg.name}", n, len(pending))
                if not deliver_batch(sink, cfg, pending[n:n + size], box, report, sleep):
                    break  # the sink is down: leave the rest pending for the next run, go on with other sinks
        except Exception as e:  # a sink bug must not cost the other sinks their delivery
            report.error = f"{type(e).__name__}: {e}"
        finally:
            try:
                sink.close()
            except Exception:  # noqa: BLE001
                pass
        report.left = sum(1 for a in pending if box.pending(a))
    return reports
