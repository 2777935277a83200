"""Continuous mode: S3 notifications on an SQS queue drive ingest, detection and sinks (docs/continuous.md)."""

from pipeline.watch.messages import parse_body
from pipeline.watch.queue import Queue
from pipeline.watch.run import Watcher, WatchOptions, WatchSummary

__all__ = ["Queue", "WatchOptions", "WatchSummary", "Watcher", "parse_body"]
