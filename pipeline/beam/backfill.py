"""``soclake backfill``: the ingest on Apache Beam (Dataflow, Flink, Spark or the DirectRunner).

Same listing and filters, same normalisers, same lake layout and the same ledger as ``soclake
ingest``: a backfill and later local incremental runs share one lake and never ingest an object
twice. The driver holds the lake's writer lease for the whole job. Before the job starts it
finishes or removes what an interrupted run left (as the local runner does); the job then
stages every file, commits the ledger once, at the end, and moves the files into place.

Nothing here imports Beam at module level: the ``backfill`` command only parses flags until it runs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Sequence

import click

from pipeline import aws
from pipeline.cli.options import (
    POSITIVE_INT,
    aws_options,
    filter_options,
    json_option,
    lake_option,
    quiet_option,
    to_args,
    wait_option,
)
from pipeline.errors import ConfigError, LakeError
from pipeline.lake.lease import writer_lease
from pipeline.lake.ledger import Ledger
from pipeline.lake.store import open_store
from pipeline.sources import Filters, open_source, walk

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")
#: Runners whose workers do not share this machine's filesystem: source and lake must be s3://.
REMOTE_ONLY = ("DataflowRunner",)


def run_backfill(source: str, lake: str, filters: Filters | None = None, pipeline_args: Sequence[str] = (), *,
                 aws_settings: aws.AwsSettings | None = None, retry_quarantined: bool = False,
                 shard_bytes: int | None = None, wait: float = 0.0, progress=None) -> dict:
    """Run the backfill pipeline to completion and return its report (the keys of ``soclake ingest --json``).

    ``source`` and ``lake`` are URIs exactly as a local run would be given them (object URIs in
    the ledger are built from ``source``). ``pipeline_args`` go to Beam's PipelineOptions
    (``--runner``, ``--project``, …). AWS clients on the workers use ``aws_settings`` (default:
    the process-wide settings the CLI configured). ``wait``: seconds to wait for another
    writer's lease (0 = fail at once with :class:`~pipeline.errors.LeaseHeld`). ``progress(step)``
    hears each step (``pipeline.progress.StepProgress``).
    """
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from pipeline.ingest import recover

    t0 = time.perf_counter()
    filters = filters or Filters()
    settings = aws_settings or aws._settings
    options = PipelineOptions(list(pipeline_args))
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    if runner in REMOTE_ONLY:
        local = [u for u in (source, lake) if not u.startswith("s3://")]
        if local:
            raise ConfigError(f"{runner} workers cannot reach {local[0]}: give --source and --lake as s3:// URIs")

    def s3():
        return aws.s3_client(settings)

    progress = progress or (lambda step: None)
    store, lister = open_store(lake, s3), open_source(source, s3)
    progress("checking the source")
    next(walk(lister, filters), None)  # fail here (no AWSLogs/, no access) rather than inside a job
    with writer_lease(store, "backfill", wait=wait) as lease:
        progress("reading the ledger")
        ledger = Ledger.load(store)
        orphans = lease.settled + recover(store, ledger)
        return _run_job(store, source, lake, filters, options, runner, settings, ledger, orphans, t0,
                        retry_quarantined=retry_quarantined, shard_bytes=shard_bytes, progress=progress)


def _run_job(store, source, lake, filters, options, runner, settings, ledger, orphans, t0, *,
             retry_quarantined: bool, shard_bytes: int | None, progress) -> dict:
    import apache_beam as beam

    from pipeline.beam.transforms import DEFAULT_SHARD_BYTES, REPORT_PREFIX, BackfillConfig, build

    cfg = BackfillConfig(source=source, lake=lake, run_id=ledger.run_id, ingested_at=dt.datetime.now(dt.UTC),
                         filters=filters, aws=settings, retry_quarantined=retry_quarantined,
                         shard_bytes=shard_bytes or DEFAULT_SHARD_BYTES)
    p = beam.Pipeline(options=options)
    build(p, cfg)
    progress(f"the {runner} job is listing, reading and writing (run {cfg.run_id})")
    result = p.run()
    state = result.wait_until_finish()
    if state != "DONE":
        raise LakeError(f"the {runner} job ended {state}; nothing uncommitted is kept, rerun to continue")
    progress("reading the job's report")
    try:
        report = json.loads(store.get(f"{REPORT_PREFIX}{cfg.run_id}.json"))
    except (OSError, LakeError) as e:
        raise LakeError(f"the job finished but wrote no report for run {cfg.run_id}: {e}") from e
    elapsed = time.perf_counter() - t0
    total = sum(report["events"].values())
    report.update(runner=runner, orphans_removed=orphans, elapsed_s=round(elapsed, 3),
                  events_per_s=round(total / elapsed) if elapsed else 0, metrics=_counters(result))
    return report


def _counters(result) -> dict[str, int]:
    """The soclake counters (committed where the runner has them, else attempted)."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        found = result.metrics().query(MetricsFilter().with_namespace("soclake"))["counters"]
    except Exception:  # some portable runners report no metrics to the client
        return {}
    out: dict[str, int] = {}
    for c in found:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + (value or 0)
    return dict(sorted(out.items()))


def unknown_beam_args(args: Sequence[str]) -> list[str]:
    """Arguments no Beam PipelineOptions class defines (Beam itself would drop them with a warning)."""
    try:
        from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

        parser = _BeamArgumentParser(allow_abbrev=False)
        for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
            cls._add_argparse_args(parser)
        _, unknown = parser.parse_known_args(list(args))
    except Exception:  # Beam's internals moved: let Beam warn instead
        return []
    return [a for a in unknown if a.startswith("-")]


# -- CLI ----------------------------------------------------------------------------------------
@click.command("backfill", short_help="ingest an archive too large for one machine on Apache Beam (Dataflow, "
               "Flink, Spark)",
               help="The same ingest as `soclake ingest` (listing, filters, normalisers, lake layout, ledger) as an "
               "Apache Beam pipeline. Objects the lake's ledger holds are skipped; bad objects are quarantined with "
               "their reason. The ledger is committed once, after every file is written, so later `soclake ingest` "
               "runs on the same lake continue incrementally. Exits 2 when objects were quarantined or unreadable.",
               epilog="Every other option goes to Beam's PipelineOptions, e.g. --project, --temp_location, "
               "--num_workers (Dataflow), --job_endpoint (portable runners). Beam options soclake also defines "
               "(Dataflow's --region) go after `--`. See docs/scale-out.md.",
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--source", required=True, help="s3://bucket[/prefix] or a local folder holding AWSLogs/ "
              "(spell it as local runs do: object URIs in the ledger are built from it)")
@lake_option
@filter_options  # the same flags as `soclake ingest`
@click.option("--runner", type=click.Choice(RUNNERS), default="DirectRunner",
              help="Beam runner (default DirectRunner: multi-process on this machine's cores)")
@click.option("--shard-mb", type=POSITIVE_INT, default=256,
              help="compressed input per account/region/day written to one file per partition (default 256, "
              "~90 MB of Parquet); smaller spreads a busy partition over more workers")
@click.option("--retry-quarantined", is_flag=True, help="try quarantined objects again")
@wait_option
@json_option(help="print the run report as JSON on stdout")
@aws_options  # the workers use the same profile, region and endpoint (see docs/scale-out.md)
@quiet_option
@to_args
def backfill_command(args):
    return cmd_backfill(args)


COMMANDS = [backfill_command]


def pipeline_args(args) -> list[str]:
    """Beam's arguments: the runner, what the user passed on, and DirectRunner defaults (all cores)."""
    extra = list(args.extra_args)
    out = [f"--runner={args.runner}"]
    if args.runner == "DirectRunner":
        if not any(a.startswith("--direct_running_mode") for a in extra):
            out += ["--direct_running_mode=multi_processing", f"--direct_num_workers={os.cpu_count() or 1}"]
        if not any(a.startswith("--default_sdk_harness_log_level") for a in extra):
            out.append("--default_sdk_harness_log_level=ERROR")  # the local workers' INFO chatter
    return out + extra


def cmd_backfill(args) -> int:
    from pipeline.options import require_lake

    settings = aws.AwsSettings.from_env(args.profile, args.region, args.endpoint_url)
    aws.configure(settings)
    require_lake(args.lake, create=True)
    _quiet_beam_import()
    unknown = unknown_beam_args(args.extra_args)
    if unknown:
        raise ConfigError(f"unknown option(s) {' '.join(unknown)}: neither soclake backfill nor Beam defines them")
    from pipeline.progress import StepProgress

    filters = Filters(since=args.since, until=args.until, accounts=args.accounts, regions=args.regions)
    with StepProgress("backfill") as progress:  # on a terminal only
        report = run_backfill(args.source, args.lake, filters, pipeline_args(args), aws_settings=settings,
                              retry_quarantined=args.retry_quarantined, shard_bytes=args.shard_mb << 20,
                              wait=args.wait, progress=progress)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0 if report["ok"] else 2


def format_report(r: dict) -> str:
    events = ", ".join(f"{n:,} {t}" for t, n in sorted(r["events"].items())) or "no events"
    lines = [
        f"Backfill {r['run_id']} on {r['runner']}: {r['ingested_objects']:,} objects, {events} "
        f"in {r['elapsed_s']:.1f} s ({r['events_per_s']:,} events/s)",
        f"  listed {sum(r['listed'].values()):,} keys; skipped {r['skipped_already_ingested']:,} already in the lake",
        f"  wrote {r['files_written']:,} files, {r['parquet_bytes'] / 1e6:,.1f} MB of Parquet",
    ]
    if r["orphans_removed"]:
        lines.append(f"  removed {r['orphans_removed']} files an interrupted run left")
    for what, key, items in (("QUARANTINED", "object", r["quarantined"]), ("UNREADABLE", "object", r["failed"]),
                             ("not ingested", "key", r["unrecognised"])):
        for it in items[:20]:
            lines.append(f"  {what} {it[key]}: {it['reason']}")
        if len(items) > 20:
            lines.append(f"  … and {len(items) - 20} more {what.lower()} (--json lists all)")
    return "\n".join(lines)


class _DropImportNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("apitools not found")  # Beam without the [gcp] extra


def _quiet_beam_import() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for h in logging.getLogger().handlers:
        h.addFilter(_DropImportNoise())
