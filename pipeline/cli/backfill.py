"""``soclake backfill``: ingest on Apache Beam (DirectRunner, Dataflow, Flink, Spark)."""

from __future__ import annotations

import json
import logging
import os

import click

from pipeline import aws
from pipeline.beam.backfill import RUNNERS, run_backfill, unknown_beam_args
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
from pipeline.errors import ConfigError
from pipeline.sources import Filters


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
    from pipeline.cli.progress import StepProgress

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
