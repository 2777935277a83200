"""``soclake ingest|synth|schema|detect|run|forward``: the batch pipeline's commands."""

from __future__ import annotations

import json
import sys

import click

from pipeline.cli.options import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    aws_options,
    configure_aws,
    detect_flags,
    detect_options,
    filter_options,
    format_option,
    json_option,
    lake_option,
    quiet_option,
    to_args,
    wait_option,
)
from pipeline.errors import ConfigError, UsageError
from pipeline.ops import runs
from pipeline.options import EXIT_OK, EXIT_PARTIAL, require_lake

SOURCE_HELP = "s3://bucket[/prefix] or a local folder holding AWSLogs/"
CONFIG_HELP = "config file with `sinks:` (env SOCLAKE_CONFIG)"

@runs.recorded("ingest")
def cmd_ingest(args) -> int:
    from pipeline.cli.progress import IngestProgress, format_summary
    from pipeline.ingest import IngestOptions, ingest
    from pipeline.lake.store import open_store
    from pipeline.sources import Filters, open_source

    configure_aws(args)
    require_lake(args.lake, create=True)
    filters = Filters(since=args.since, until=args.until, accounts=args.accounts, regions=args.regions)
    opts = IngestOptions(filters=filters, workers=args.workers, fetch_threads=args.fetch_threads,
                         buffer_bytes=args.buffer_mb << 20, commit_bytes=args.commit_mb << 20,
                         retry_quarantined=args.retry_quarantined, max_object_bytes=args.max_object_mb << 20,
                         wait=args.wait)
    source, store = open_source(args.source), open_store(args.lake)
    if args.quiet or args.json:
        report = ingest(source, store, opts)
    else:
        with IngestProgress() as progress:
            report = ingest(source, store, opts, progress)
    runs.note_ingest(report)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_summary(report))
    return EXIT_OK if report.ok else EXIT_PARTIAL


def cmd_synth(args) -> int:
    from pipeline.synth import DirSink, S3Sink, generate_archive

    if args.output.startswith("s3://"):
        from pipeline.aws import s3_client
        from pipeline.sources.s3 import split_s3_uri

        configure_aws(args)
        bucket, prefix = split_s3_uri(args.output)
        sink = S3Sink(s3_client(), bucket)
        key_prefix = (prefix + args.prefix).strip("/")
    else:
        sink, key_prefix = DirSink(args.output), args.prefix
    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    from pipeline.synth.archive import TAMPER_KINDS

    bad = [t for t in args.tamper.split(",") if t.strip() and t.strip() not in TAMPER_KINDS]
    if bad:
        raise UsageError(f"--tamper {','.join(bad)}: unknown; use {', '.join(TAMPER_KINDS)}")
    summary = generate_archive(
        sink, seed=args.seed, accounts=args.accounts, regions=tuple(r.strip() for r in args.regions.split(",") if r.strip()),
        start=args.start, days=args.days, events=args.events, events_per_object=args.events_per_object,
        guardduty_findings=args.findings, org_id=args.org_id, prefix=key_prefix, scenarios=scenarios,
        tamper=tuple(t.strip() for t in args.tamper.split(",") if t.strip()),
    )
    if args.public_keys_out:
        from pipeline.synth.signing import public_keys_document

        with open(args.public_keys_out, "wb") as f:
            f.write(json.dumps(public_keys_document(args.seed, summary.regions), indent=2).encode() + b"\n")
    if args.json:
        print(json.dumps(summary.to_dict() if hasattr(summary, "to_dict") else summary.__dict__, indent=2, default=str))
    else:
        print(f"Wrote {summary.objects:,} objects, {summary.events:,} CloudTrail events, "
              f"{summary.findings:,} GuardDuty findings ({summary.bytes / 1e6:,.1f} MB) to {args.output}")
        for sc in summary.scenarios:
            name = sc["name"] if isinstance(sc, dict) else sc.name
            print(f"  injected scenario: {name}")
        for t in summary.tampered:
            print(f"  tampered ({t['kind']}): {t['key']}")
        if args.public_keys_out:
            print(f"  digest public keys: {args.public_keys_out} (soclake verify --public-keys {args.public_keys_out})")
    return EXIT_OK


def cmd_schema(args) -> int:
    from pipeline.docs import schema_markdown

    if args.alert_schema:
        from pipeline.detect.alerts import alert_json_schema

        with open(args.alert_schema, "w") as f:
            f.write(json.dumps(alert_json_schema(), indent=2) + "\n")
        print(f"wrote {args.alert_schema}")
    text = schema_markdown()
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return EXIT_OK


def print_detect(report) -> None:
    from pipeline.tables import rfc3339

    d = report.to_dict()
    window = f"{rfc3339(d['since'])} → {rfc3339(d['until'])}" if d["since"] else "nothing to evaluate (empty lake)"
    print(f"Detection over {window}: {report.rules} rules, {report.matches:,} matching rows, "
          f"{len(report.new)} new alerts, {len(report.updated)} updated, {report.unchanged} unchanged "
          f"in {report.elapsed:.1f} s (scan {report.scan_seconds:.1f} s, rules {report.rules_seconds:.1f} s)")
    if report.windows:
        print(f"  read {report.rows_scanned:,} rows in {report.windows} window(s); {report.candidates:,} rows reached the rules")
    sev = report.by_severity()
    if sev:
        print("  by severity: " + ", ".join(f"{s} {sev[s]}" for s in ("critical", "high", "medium", "low", "info") if sev[s]))
        print("  by rule:")
        for rule, n in report.by_rule().most_common():
            print(f"    {n:5d}  {rule}")
    if report.suppressed:
        print(f"  suppressed: {sum(report.suppressed.values())} alerts kept in the lake, not forwarded ("
              + ", ".join(f"{r} {n}" for r, n in report.suppressed.most_common()) + ")")
    if report.reopened or report.reopened_incidents:
        print(f"  reopened: {len(report.reopened)} closed alert(s) that grew, {len(report.reopened_incidents)} closed "
              "incident(s) that changed: " + ", ".join(i[:12] for i in (report.reopened + report.reopened_incidents)[:10]))
    for rule, err in report.errors:
        print(f"  RULE FAILED {rule}: {err}")
    if report.incidents:
        print(f"  incidents: {len(report.incidents)} (soclake incidents --lake … lists them)")
        for i in report.incidents[:10]:
            print(f"    {i.id[:12]}  {i.severity:<8} {i.alert_count:>3} alerts  {i.title[:110]}")


def _detect(args, store):
    from pipeline.cli.progress import DetectProgress
    from pipeline.cli.rules import tuned_rules_for
    from pipeline.detect.engine import detect

    rules, suppressions = tuned_rules_for(args)
    opts = detect_options(args, suppressions=suppressions)
    if args.json or getattr(args, "quiet", False):
        report = detect(args.lake, store, rules, opts)
    else:
        with DetectProgress() as progress:
            report = detect(args.lake, store, rules, opts, progress=progress)
    for p in getattr(args, "rule_problems", []):  # skipped rule files: the run finished, but not whole (exit 2)
        report.errors.append((p.split(":", 1)[0], p.split(": ", 1)[-1]))
    return report


def _warn(report) -> None:
    for w in report.warnings:
        print(f"Warning: {w}", file=sys.stderr)


@runs.recorded("detect")
def cmd_detect(args) -> int:
    from pipeline.lake.lease import writer_lease
    from pipeline.lake.store import open_store

    configure_aws(args)
    require_lake(args.lake, write=True)
    store = open_store(args.lake)
    with writer_lease(store, "detect", wait=args.wait):  # the alerts table and detect state have one writer
        report = _detect(args, store)
    _warn(report)
    runs.note_detect(report)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_detect(report)
    return EXIT_OK if report.ok else EXIT_PARTIAL


@runs.recorded("ingest", "detect", "forward")
def cmd_run(args) -> int:
    from pipeline.cli.progress import IngestProgress, format_summary
    from pipeline.ingest import IngestOptions, ingest
    from pipeline.lake.lease import writer_lease
    from pipeline.lake.store import open_store
    from pipeline.sources import open_source

    configure_aws(args)
    require_lake(args.lake, create=True)
    from pipeline.cli.rules import tuned_rules_for

    tuned_rules_for(args)  # fail on a broken rule, tuning file or config before spending time on ingest
    from pipeline.forward.config import has_sinks

    forwarding = bool(args.config) and has_sinks(args.config)  # a config without sinks only sets options
    if forwarding:
        from pipeline.forward.config import load_config

        load_config(args.config)
    source, store = open_source(args.source), open_store(args.lake)
    opts = IngestOptions(workers=args.workers, retry_quarantined=args.retry_quarantined)
    with writer_lease(store, "run", wait=args.wait):  # one lease for ingest, detect and forward
        if args.json or args.quiet:
            ing = ingest(source, store, opts)
        else:
            with IngestProgress() as progress:
                ing = ingest(source, store, opts, progress)
        if not args.json:
            print(format_summary(ing))
        runs.note_ingest(ing)
        report = _detect(args, store)
        _warn(report)
        runs.note_detect(report)
        sent = []
        if forwarding:
            from pipeline.cli.progress import StepProgress
            from pipeline.forward.run import forward

            with StepProgress("forward") as progress:
                sent = forward(args.lake, store, args.config, progress=progress)
            runs.note_forward(sent)
    if args.json:
        print(json.dumps({"ingest": ing.to_dict(), "detect": report.to_dict(),
                          "forward": [r.to_dict() for r in sent]}, indent=2))
    else:
        print_detect(report)
        print_forward(sent)
    ok = ing.ok and report.ok and all(r.left == 0 and not r.parked for r in sent)
    return EXIT_OK if ok else EXIT_PARTIAL


#: ``forward --status`` as a table: one row per sink.
OUTBOX_COLUMNS = [("sink", "SINK"), ("type", "TYPE"), ("routed", "ROUTED"), ("delivered", "DELIVERED"),
                  ("pending", "PENDING"), ("parked", "PARKED", lambda v: str(len(v)))]


def _print_outbox(rows: list[dict], fmt: str) -> None:
    """Per sink: delivered, pending, parked; in a table, each parked alert below with its reason and time."""
    from pipeline.tables import emit, rfc3339

    emit(rows, fmt, OUTBOX_COLUMNS, empty="no sinks configured")
    if fmt == "table":
        for r in rows:
            for p in r["parked"]:
                print(f"  {r['sink']}: parked {p['alert']} since {rfc3339(p['at'])}: {p['reason']}")


def print_forward(reports) -> None:
    for r in reports:
        line = f"  → {r.name}: {r.delivered} delivered of {r.pending} pending"
        if r.parked:  # say why (an access denied names its call), so a log line alone explains the exit 2
            reasons = sorted(set(r.parked.values()))
            more = f" (and {len(reasons) - 1} other reasons)" if len(reasons) > 1 else ""
            line += f", {len(r.parked)} parked: {reasons[0]}{more} (soclake forward --status lists them)"
        if r.left:
            line += f", {r.left} left for the next run ({r.error})"
        print(line)


@runs.recorded("forward")
def cmd_forward(args) -> int:
    from pipeline.forward.run import forward, status
    from pipeline.lake.lease import writer_lease
    from pipeline.lake.store import open_store

    if not args.config:
        raise ConfigError("no config: pass --config FILE (see deploy/soclake.example.yml) or set SOCLAKE_CONFIG")
    configure_aws(args)
    require_lake(args.lake, write=not args.status)
    store = open_store(args.lake)
    if args.status:
        _print_outbox(status(args.lake, store, args.config), args.format)
        return EXIT_OK
    from pipeline.cli.progress import StepProgress

    with writer_lease(store, "forward", wait=args.wait), StepProgress("forward") as progress:  # one writer
        reports = forward(args.lake, store, args.config, progress=progress)
    runs.note_forward(reports)
    if args.format == "table":
        print("Forwarding:")
        print_forward(reports)
    else:
        from pipeline.tables import emit

        emit([r.to_dict() for r in reports], args.format, [])
    return EXIT_OK if all(r.left == 0 and not r.parked for r in reports) else EXIT_PARTIAL


# ---------------------------------------------------------------- the commands


@click.command("ingest", short_help="ingest CloudTrail/GuardDuty objects into the lake (incremental, exactly once)",
               help="List the AWSLogs/ layout under --source, skip objects the lake's ledger already holds "
               "(same key and ETag), normalise the rest in parallel and write partitioned zstd Parquet. "
               "Bad objects are quarantined with their reason and the run goes on; it then exits 2.")
@click.option("--source", required=True, help=SOURCE_HELP)
@lake_option
@filter_options
@click.option("--workers", type=NON_NEGATIVE_INT, default=0,
              help="normalising processes (default 0: one per core; 1 = in-process)")
@click.option("--fetch-threads", type=NON_NEGATIVE_INT, default=0,
              help="concurrent object reads (default 16 for S3, where latency dominates; 4 for local files)")
@click.option("--buffer-mb", type=POSITIVE_INT, default=256,
              help="rows held in memory by all workers before row groups are written (default 256)")
@click.option("--commit-mb", type=NON_NEGATIVE_INT, default=512,
              help="input (compressed MB) between two commits: files are published and the ledger "
              "updated; a crash redoes at most this much (default 512, ~4 GB of JSON; 0: after every object)")
@click.option("--retry-quarantined", is_flag=True, help="try quarantined objects again")
@click.option("--max-object-mb", type=POSITIVE_INT, default=2048,
              help="decompressed size cap per object; larger objects are quarantined with their size (default 2048)")
@wait_option
@json_option(help="print the run report as JSON on stdout")
@quiet_option
@aws_options
@to_args
def ingest_command(args):
    return cmd_ingest(args)


@click.command("synth", short_help="write a synthetic organisation's log archive in the AWS layout",
               help="Deterministic (--seed) CloudTrail and GuardDuty archive for demos, tests and benchmarks, "
               "optionally with injected attack scenarios.")
@click.option("--output", required=True, help="a local folder or s3://bucket[/prefix]")
@click.option("--seed", type=int, default=7, help="random seed (same seed, same bytes)")
@click.option("--accounts", type=POSITIVE_INT, default=3, help="number of accounts (default 3)")
@click.option("--regions", default="us-east-1,eu-west-1", help="comma-separated regions")
@click.option("--start", default="2026-11-01", help="first day (YYYY-MM-DD)")
@click.option("--days", type=POSITIVE_INT, default=2, help="number of days (default 2)")
@click.option("--events", type=NON_NEGATIVE_INT, default=20000, help="CloudTrail events in total (default 20000)")
@click.option("--events-per-object", type=POSITIVE_INT, default=500, help="average records per object (default 500)")
@click.option("--findings", type=NON_NEGATIVE_INT, default=40, help="GuardDuty findings (default 40)")
@click.option("--org-id", help="organisation id segment, e.g. o-abc1234567 (organisation trail layout)")
@click.option("--prefix", default="", help="bucket key prefix above AWSLogs/")
@click.option("--scenarios", default="", help="comma-separated attack scenarios to inject, or 'all'")
@click.option("--tamper", default="", metavar="KINDS",
              help="comma-separated tampering of the first account/region after the digests are written: "
              "modify (a log file), delete (a log file), drop-digest, resign (a digest, with a wrong key); "
              "soclake verify catches each")
@click.option("--public-keys-out", metavar="FILE",
              help="write the archive's digest public keys here (the key file soclake verify --public-keys reads)")
@json_option(help="print the summary (incl. injected ids) as JSON")
@aws_options
@to_args
def synth_command(args):
    return cmd_synth(args)


@click.command("schema", help="print or write docs/schema.md, generated from schemas/*.yml")
@click.option("--output", help="write to this file instead of stdout")
@click.option("--alert-schema", help="also write the alert JSON Schema (schemas/alert.schema.json) here")
@to_args
def schema_command(args):
    return cmd_schema(args)


@click.command("detect", short_help="run the rules over the lake and update its alerts table",
               help="Incremental by default: evaluates from where the last run stopped, minus --lookback, so "
               "late records are still seen. Alert ids are deterministic: reruns never duplicate an alert.")
@lake_option
@detect_flags
@quiet_option
@wait_option
@aws_options
@to_args
def detect_command(args):
    return cmd_detect(args)


@click.command("forward", short_help="deliver pending alerts to the configured sinks (SIEMs, queues)",
               help="Alerts are durable in the lake first; delivery state is kept per alert per sink. "
               "Retries transient failures with backoff, parks what a destination rejects for good (see --status).")
@lake_option
@click.option("--config", envvar="SOCLAKE_CONFIG", help=CONFIG_HELP)
@click.option("--status", is_flag=True, help="show per sink: delivered, pending, parked (with reasons); send nothing")
@format_option(help="table for reading; json, jsonl or csv: one object or row per sink (with --status too)")
@wait_option
@aws_options
@quiet_option
@to_args
def forward_command(args):
    return cmd_forward(args)


@click.command("run", short_help="ingest, then detect: what a scheduled batch job calls",
               help="soclake ingest followed by soclake detect on the same lake (and soclake forward with a config "
               "that has sinks).")
@click.option("--source", required=True, help=SOURCE_HELP)
@lake_option
@click.option("--workers", type=NON_NEGATIVE_INT, default=0, help="normalising processes (default 0: one per core)")
@click.option("--retry-quarantined", is_flag=True, help="try quarantined objects again")
@click.option("--config", envvar="SOCLAKE_CONFIG",
              help="config file with `sinks:`; when given, the run ends with soclake forward (env SOCLAKE_CONFIG)")
@detect_flags(window=False)
@wait_option
@aws_options
@quiet_option
@to_args
def run_command(args):
    return cmd_run(args)


COMMANDS = [ingest_command, synth_command, schema_command, detect_command, forward_command, run_command]
