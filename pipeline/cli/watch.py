"""``soclake watch`` (continuous ingest from S3 notifications) and ``soclake compact`` (small files merged)."""

from __future__ import annotations

import json
import signal
import sys
import threading

import click

from pipeline.cli.options import (
    DURATION,
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    aws_options,
    configure_aws,
    enrich_flags,
    enrich_options,
    format_option,
    json_option,
    lake_option,
    quiet_option,
    rules_option,
    to_args,
    wait_option,
)
from pipeline.options import EXIT_OK, EXIT_PARTIAL, require_lake
from pipeline.tables import emit, table_text, to_json


@click.command("watch", short_help="continuous mode: ingest, detect and forward as S3 notifications arrive on an "
               "SQS queue",
               help="Long-polls an SQS queue fed by S3 event notifications (direct, through EventBridge, or "
               "SNS-wrapped); gathers messages into micro-batches (--max-wait / --max-objects); ingests exactly the "
               "objects they name through the same ledger, normalisers and writer as `soclake ingest`; deletes a "
               "message only once its objects are committed (redeliveries add nothing); runs detection incrementally "
               "and, with --config, delivers new alerts to the sinks. A message whose objects cannot be read is left "
               "on the queue and, after the queue's maxReceiveCount, goes to its dead-letter queue. SIGTERM/SIGINT "
               "finish the batch in hand and release the lake's lease; a second signal stops at once (nothing "
               "committed is lost, nothing is duplicated on restart). See docs/continuous.md.")
@click.option("--queue", required=True, metavar="SQS_URL", help="URL of the SQS queue receiving the S3 notifications")
@lake_option
@click.option("--config", envvar="SOCLAKE_CONFIG",
              help="config file with `sinks:`; when given, new alerts are forwarded after each batch (env SOCLAKE_CONFIG)")
@click.option("--max-wait", type=float, default=10.0, metavar="S",
              help="seconds to keep gathering messages after the first one of a batch (default 10)")
@click.option("--max-objects", type=POSITIVE_INT, default=1000, metavar="N",
              help="objects per batch: a batch closes early once its messages name N objects (default 1000)")
@click.option("--once", is_flag=True,
              help="process one batch (what is on the queue now, waiting up to --max-wait for it), then exit")
@click.option("--workers", type=NON_NEGATIVE_INT, default=1,
              help="normalising processes per batch (default 1: in-process, best for small batches; 0: one per core)")
@rules_option
@click.option("--lookback", type=DURATION, default="3h",
              help="detection re-evaluates this much before where it last stopped, for late records (default 3h)")
@json_option(help="print the run summary as JSON on exit (messages, objects, events, alerts, deliveries, "
             "dead-letter queue depth)")
@click.option("--quiet", is_flag=True, help="no per-batch lines")
@enrich_flags  # --ip-db, --aws-ranges (docs/enrichment.md)
@aws_options
@to_args
def watch_command(args):
    return cmd_watch(args)


@click.command("compact", short_help="merge each partition's small files into few large ones (atomically, under the "
               "lake's lease)",
               help="Continuous ingest writes a file per partition per batch. compact rewrites every partition "
               "holding at least --min-files files smaller than half of --target-mb into files of about --target-mb: "
               "new files are staged, one ledger commit swaps them for the old ones, so readers see the old files or "
               "the new ones, never both. Rows and columns are unchanged. Holds the writer lease (wait for a running "
               "watch or ingest with --wait).")
@lake_option
@click.option("--table", multiple=True, type=click.Choice(("cloudtrail", "guardduty")),
              help="only this table (repeatable; default: cloudtrail and guardduty)")
@click.option("--min-files", type=POSITIVE_INT, default=4, metavar="N",
              help="compact a partition only when it holds at least N small files (default 4)")
@click.option("--target-mb", type=POSITIVE_INT, default=128, metavar="MB",
              help="size of the merged files (default 128; files over half of it are left as they are)")
@wait_option(help="wait up to SECONDS for another writer (e.g. a watch batch) to release the lake's lease (default 0)")
@format_option(help="table: a summary line and a row per table compacted; json: the report; jsonl and csv: one row "
               "per table")
@aws_options
@quiet_option
@to_args
def compact_command(args):
    return cmd_compact(args)


COMMANDS = [watch_command, compact_command]


class _Stopper:
    """First SIGTERM/SIGINT: finish the batch in hand, then stop. Second: stop at once."""

    def __init__(self):
        self.event = threading.Event()
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self.event

    def _handle(self, signum, frame):
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        print(f"{signal.Signals(signum).name}: finishing the current batch, then stopping "
              "(again to stop at once)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def cmd_watch(args) -> int:
    from pipeline import aws
    from pipeline.cli.rules import load_rules_for
    from pipeline.lake.store import open_store
    from pipeline.watch.queue import Queue
    from pipeline.watch.run import Watcher, WatchOptions

    configure_aws(args)
    require_lake(args.lake, create=True)
    if args.max_wait < 0:
        from pipeline.errors import UsageError

        raise UsageError(f"--max-wait {args.max_wait}: must be 0 or more seconds")
    rules = [r for r in load_rules_for(args) if r.enabled]
    if args.config:
        from pipeline.forward.config import load_config

        load_config(args.config)  # a broken config fails now, not after the first batch
    queue = Queue(aws.client("sqs"), args.queue)
    opts = WatchOptions(max_wait=args.max_wait, max_objects=args.max_objects, once=args.once, config=args.config,
                        workers=args.workers, lookback=args.lookback, enrich=enrich_options(args))
    log = (lambda line: None) if args.quiet or args.json else (lambda line: print(line, flush=True))
    if queue.dlq_arn is None and not args.json and not args.quiet:
        print(f"note: {args.queue} has no redrive policy: a message whose objects keep failing is retried forever "
              "(give the queue a dead-letter queue, see docs/continuous.md)", file=sys.stderr)
    with _Stopper() as stop:
        summary = Watcher(queue, aws.s3_client(), open_store(args.lake), args.lake, rules, opts, stop, log).run()
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    elif not args.quiet:
        _print_summary(summary)
    return EXIT_OK if summary.ok or summary.stopped == "signal" else EXIT_PARTIAL


def _print_summary(s) -> None:
    m, o = s.messages, s.objects
    print(f"watched {s.queue} for {s.elapsed:.0f} s ({s.stopped or 'stopped'}): {s.batches} batch(es), "
          f"{m['received']} message(s) received, {m['deleted']} deleted, {m['ignored']} ignored (test/other events), "
          f"{m['left_for_retry']} left for retry, {m['unknown']} not understood")
    print(f"  objects: {o['ingested']} ingested ({sum(s.events.values()):,} events), {o['already_ingested']} already in "
          f"the lake, {o['quarantined']} quarantined, {o['failed']} unreadable, {o['gone']} gone")
    print(f"  alerts: {s.alerts_new} new" + "".join(f"; → {k}: {v} delivered" for k, v in s.delivered.items()))
    if s.dlq is not None:
        print(f"  dead-letter queue: {s.dlq['depth']} message(s) waiting ({s.dlq['arn']})")
    for e in s.errors[-5:]:
        print(f"  error: {e}")


def cmd_compact(args) -> int:
    from pipeline.lake.compact import compact
    from pipeline.lake.store import open_store

    configure_aws(args)
    require_lake(args.lake, write=True)
    from pipeline.cli.progress import StepProgress

    with StepProgress("compact") as step:  # on a terminal only
        report = compact(open_store(args.lake), args.table or None, min_files=args.min_files,
                         target_bytes=args.target_mb << 20, wait=args.wait,
                         progress=lambda done, total, _: step("partitions", done, total))
    rows = [{"table": t, **v} for t, v in sorted(report.by_table.items())]
    if args.format == "json":
        print(to_json(report.to_dict()))
    elif args.format in ("jsonl", "csv"):
        emit(rows, args.format, [], fields=("table", "partitions", "files_merged", "files_written"))
    else:
        print(f"compacted {report.partitions_compacted} of {report.partitions_seen} partition(s): "
              f"{report.files_before} small files ({report.bytes_before / 1e6:.1f} MB) merged into {report.files_after} "
              f"({report.bytes_after / 1e6:.1f} MB), {report.rows:,} rows, in {report.elapsed:.1f} s")
        if rows:
            print(table_text(rows, [("table", "TABLE"), ("partitions", "PARTITIONS"), ("files_merged", "FILES MERGED"),
                                    ("files_written", "FILES WRITTEN")]))
    return EXIT_OK
