"""The ``soclake`` command. Thin: each command parses flags and calls a function tests also call."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import traceback

from pipeline import __version__
from pipeline.errors import ConfigError, SoclakeError, UsageError
from pipeline.ops import runs
from pipeline.options import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    Parser,
    check_window,
    non_negative_int,
    one_line,
    positive_int,
    require_lake,
)

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "build_parser", "main"]


def _date(s: str) -> dt.date:
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a date: use YYYY-MM-DD") from None


def _csv(s: str) -> frozenset[str]:
    return frozenset(x.strip() for x in s.split(",") if x.strip())


def _add_aws(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("AWS (flags override AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL)")
    g.add_argument("--profile", help="AWS profile (role assumption via the profile's role_arn works)")
    g.add_argument("--region", help="AWS region of the clients (default: the profile's, else us-east-1)")
    g.add_argument("--endpoint-url", help="custom S3 endpoint, e.g. a MinIO or moto server")


def _filter_args(p: argparse.ArgumentParser) -> None:
    """What to list: pushed into S3 key prefixes (ingest and backfill share them)."""
    p.add_argument("--since", type=_date, help="first delivery date to list (YYYY-MM-DD, from the key path)")
    p.add_argument("--until", type=_date, help="last delivery date to list (YYYY-MM-DD, inclusive)")
    p.add_argument("--accounts", type=_csv, default=frozenset(), help="comma-separated account ids to list")
    p.add_argument("--regions", type=_csv, default=frozenset(), help="comma-separated regions to list")


def _lake_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lake", default=os.environ.get("SOCLAKE_LAKE"),
        help="lake root: a local folder or s3://bucket/prefix (env SOCLAKE_LAKE)",
    )


def _wait_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS",
        help="when another run is writing the lake (it holds the lake's writer lease), wait up to SECONDS for it "
        "to finish (default 0: stop at once with an error naming the holder's host, pid and start time)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="soclake",
        description="CloudTrail and GuardDuty logs from S3 into a partitioned Parquet lake; detections in DuckDB.",
        epilog="Exit codes: 0 ok, 1 error, 2 finished but some objects were quarantined or unreadable (or a rule "
        "failed, or alerts were left pending or parked), 64 usage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"soclake {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--metrics", choices=("off", "emf"),
                        help="emf: one CloudWatch Embedded Metric Format line per run step on stdout (env SOCLAKE_METRICS; "
                        "docs/deploy.md)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "ingest", help="ingest CloudTrail/GuardDuty objects into the lake (incremental, exactly once)",
        description="List the AWSLogs/ layout under --source, skip objects the lake's ledger already holds "
        "(same key and ETag), normalise the rest in parallel and write partitioned zstd Parquet. "
        "Bad objects are quarantined with their reason and the run goes on; it then exits 2.",
    )
    p.add_argument("--source", required=True, help="s3://bucket[/prefix] or a local folder holding AWSLogs/")
    _lake_arg(p)
    _filter_args(p)
    p.add_argument("--workers", type=non_negative_int, default=0,
                   help="normalising processes (default 0: one per core; 1 = in-process)")
    p.add_argument("--fetch-threads", type=non_negative_int, default=0,
                   help="concurrent object reads (default 16 for S3, where latency dominates; 4 for local files)")
    p.add_argument("--buffer-mb", type=positive_int, default=256,
                   help="rows held in memory by all workers before row groups are written (default 256)")
    p.add_argument("--commit-mb", type=non_negative_int, default=512,
                   help="input (compressed MB) between two commits: files are published and the ledger "
                   "updated; a crash redoes at most this much (default 512, ~4 GB of JSON; 0: after every object)")
    p.add_argument("--retry-quarantined", action="store_true", help="try quarantined objects again")
    p.add_argument("--max-object-mb", type=positive_int, default=2048,
                   help="decompressed size cap per object; larger objects are quarantined with their size (default 2048)")
    _wait_arg(p)
    p.add_argument("--json", action="store_true", help="print the run report as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_aws(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "synth", help="write a synthetic organisation's log archive in the AWS layout",
        description="Deterministic (--seed) CloudTrail and GuardDuty archive for demos, tests and benchmarks, "
        "optionally with injected attack scenarios.",
    )
    p.add_argument("--output", required=True, help="a local folder or s3://bucket[/prefix]")
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same bytes)")
    p.add_argument("--accounts", type=positive_int, default=3, help="number of accounts (default 3)")
    p.add_argument("--regions", default="us-east-1,eu-west-1", help="comma-separated regions")
    p.add_argument("--start", default="2026-11-01", help="first day (YYYY-MM-DD)")
    p.add_argument("--days", type=positive_int, default=2, help="number of days (default 2)")
    p.add_argument("--events", type=non_negative_int, default=20000, help="CloudTrail events in total (default 20000)")
    p.add_argument("--events-per-object", type=positive_int, default=500, help="average records per object (default 500)")
    p.add_argument("--findings", type=non_negative_int, default=40, help="GuardDuty findings (default 40)")
    p.add_argument("--org-id", help="organisation id segment, e.g. o-abc1234567 (organisation trail layout)")
    p.add_argument("--prefix", default="", help="bucket key prefix above AWSLogs/")
    p.add_argument("--scenarios", default="", help="comma-separated attack scenarios to inject, or 'all'")
    p.add_argument("--tamper", default="", metavar="KINDS",
                   help="comma-separated tampering of the first account/region after the digests are written: "
                        "modify (a log file), delete (a log file), drop-digest, resign (a digest, with a wrong key); "
                        "soclake verify catches each")
    p.add_argument("--public-keys-out", metavar="FILE",
                   help="write the archive's digest public keys here (the key file soclake verify --public-keys reads)")
    p.add_argument("--json", action="store_true", help="print the summary (incl. injected ids) as JSON")
    _add_aws(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("schema", help="print or write docs/schema.md, generated from schemas/*.yml")
    p.add_argument("--output", help="write to this file instead of stdout")
    p.add_argument("--alert-schema", help="also write the alert JSON Schema (schemas/alert.schema.json) here")
    p.set_defaults(func=cmd_schema)

    from pipeline.detect import commands as rule_commands

    rule_commands.register(sub)

    from pipeline.integrity import commands as integrity_commands

    integrity_commands.register(sub)

    p = sub.add_parser(
        "detect", help="run the rules over the lake and update its alerts table",
        description="Incremental by default: evaluates from where the last run stopped, minus --lookback, so "
        "late records are still seen. Alert ids are deterministic: reruns never duplicate an alert.",
    )
    _lake_arg(p)
    _detect_args(p)
    _wait_arg(p)
    _add_aws(p)
    p.set_defaults(func=cmd_detect)

    from pipeline import cli_triage

    cli_triage.register(sub)  # alerts, alert, incidents, incident

    p = sub.add_parser(
        "forward", help="deliver pending alerts to the configured sinks (SIEMs, queues)",
        description="Alerts are durable in the lake first; delivery state is kept per alert per sink. "
        "Retries transient failures with backoff, parks what a destination rejects for good (see --status).",
    )
    _lake_arg(p)
    p.add_argument("--config", default=os.environ.get("SOCLAKE_CONFIG"), help="config file with `sinks:` (env SOCLAKE_CONFIG)")
    p.add_argument("--status", action="store_true", help="show per sink: delivered, pending, parked (with reasons); send nothing")
    p.add_argument("--json", action="store_true", help="print JSON")
    _wait_arg(p)
    _add_aws(p)
    p.set_defaults(func=cmd_forward)

    from pipeline.analyst import athena, catalog, glue_cfn, hunts, query, report

    hunts.register(sub)
    query.register(sub)
    from pipeline.beam.backfill import register as register_backfill

    register_backfill(sub)
    catalog.register(sub)
    athena.register(sub)
    glue_cfn.register(sub)
    report.register(sub)
    from pipeline import cli_enrich, cli_ops

    cli_ops.register(sub)
    cli_enrich.register(sub)  # enrich accounts, enrich ip
    from pipeline.watch import commands as watch_commands

    watch_commands.register(sub)

    p = sub.add_parser("run", help="ingest, then detect: what a scheduled batch job calls",
                       description="soclake ingest followed by soclake detect on the same lake.")
    p.add_argument("--source", required=True, help="s3://bucket[/prefix] or a local folder holding AWSLogs/")
    _lake_arg(p)
    p.add_argument("--workers", type=non_negative_int, default=0, help="normalising processes (default 0: one per core)")
    p.add_argument("--retry-quarantined", action="store_true", help="try quarantined objects again")
    p.add_argument("--config", default=os.environ.get("SOCLAKE_CONFIG"),
                   help="config file with `sinks:`; when given, the run ends with soclake forward")
    _detect_args(p, window=False)
    _wait_arg(p)
    _add_aws(p)
    p.set_defaults(func=cmd_run)
    return parser


def _rules_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", action="append", default=[], metavar="DIR",
                   help="an extra folder of rule files (repeatable; env SOCLAKE_RULES, ':'-separated)")


def _ts(s: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]Z") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _duration(s: str) -> dt.timedelta:
    from pipeline.detect.rules import parse_duration

    try:
        return parse_duration(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _detect_args(p: argparse.ArgumentParser, window: bool = True) -> None:
    _rules_arg(p)
    p.add_argument("--suppressions", default=os.environ.get("SOCLAKE_SUPPRESSIONS"), metavar="FILE",
                   help="tuning file whose `suppressions:` mark matching alerts suppressed (kept in the lake, not "
                        "forwarded) and whose `rules:` set rule parameters (env SOCLAKE_SUPPRESSIONS; "
                        "deploy/suppressions.example.yml)")
    p.add_argument("--rule-config", default=os.environ.get("SOCLAKE_RULE_CONFIG"), metavar="FILE",
                   help="tuning file whose `rules:` section sets rule parameters and enabled flags, "
                        "{rule_id: {parameters: {name: value}, enabled: false}} (env SOCLAKE_RULE_CONFIG; same format)")
    if window:
        p.add_argument("--since", type=_ts, help="evaluate from this time (UTC); default: incremental")
        p.add_argument("--until", type=_ts, help="evaluate up to this time (UTC); default: the newest event")
    p.add_argument("--lookback", type=_duration, default=dt.timedelta(hours=3),
                   help="re-evaluate this much before the last run's end, for late records (default 3h)")
    p.add_argument("--scan", choices=("shared", "per-rule"), default="shared",
                   help="shared: one planned scan serves every rule (default); per-rule: each rule reads the lake "
                        "over the whole range at once (the reference the planner is tested against)")
    _detect_tuning_args(p)
    from pipeline.cli_enrich import add_detect_args

    add_detect_args(p)  # --ip-db, --aws-ranges
    p.add_argument("--json", action="store_true", help="print the report as JSON (with each rule's time and rows)")


def _detect_tuning_args(p: argparse.ArgumentParser) -> None:
    from pipeline.detect.planner import DEFAULT_BUDGET_ROWS, DEFAULT_MEMORY_MB

    p.add_argument("--window-rows", type=positive_int, default=DEFAULT_BUDGET_ROWS, metavar="N",
                   help=f"rows per planned window: sparse days share one, heavy days are split (default {DEFAULT_BUDGET_ROWS:,})")
    p.add_argument("--memory-mb", type=positive_int, default=DEFAULT_MEMORY_MB, metavar="MB",
                   help=f"DuckDB memory limit for detection; beyond it DuckDB spills to disk (default {DEFAULT_MEMORY_MB})")
    p.add_argument("--temp-dir", metavar="DIR",
                   help="where detection's DuckDB database and spill files go (default: the system temp folder)")


def detect_options(args, **over):
    """DetectOptions from the detect flags (shared by detect, run and rules profile)."""
    from pipeline.cli_enrich import enrich_options
    from pipeline.detect.engine import DetectOptions

    return DetectOptions(since=getattr(args, "since", None), until=getattr(args, "until", None),
                         lookback=args.lookback, scan=args.scan, budget_rows=args.window_rows,
                         memory_mb=args.memory_mb, temp_dir=args.temp_dir, enrich=enrich_options(args), **over)


def _configure_aws(args) -> None:
    from pipeline import aws

    aws.configure(aws.AwsSettings.from_env(args.profile, args.region, args.endpoint_url))


@runs.recorded("ingest")
def cmd_ingest(args) -> int:
    from pipeline.ingest import IngestOptions, ingest
    from pipeline.lake.store import open_store
    from pipeline.progress import IngestProgress, format_summary
    from pipeline.sources import Filters, open_source

    _configure_aws(args)
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

        _configure_aws(args)
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
        sink, seed=args.seed, accounts=args.accounts, regions=tuple(_csv(args.regions)) and tuple(
            r.strip() for r in args.regions.split(",") if r.strip()),
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


def _print_detect(report) -> None:
    d = report.to_dict()
    window = f"{d['since']} → {d['until']}" if d["since"] else "nothing to evaluate (empty lake)"
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
    from pipeline.detect.commands import tuned_rules_for
    from pipeline.detect.engine import detect
    from pipeline.progress import DetectProgress

    rules, suppressions = tuned_rules_for(args)
    opts = detect_options(args, suppressions=suppressions)
    if args.json or getattr(args, "quiet", False):
        return detect(args.lake, store, rules, opts)
    with DetectProgress() as progress:
        return detect(args.lake, store, rules, opts, progress=progress)


def _warn(report) -> None:
    for w in report.warnings:
        print(f"Warning: {w}", file=sys.stderr)


@runs.recorded("detect")
def cmd_detect(args) -> int:
    from pipeline.lake.lease import writer_lease
    from pipeline.lake.store import open_store

    _configure_aws(args)
    require_lake(args.lake, write=True)
    store = open_store(args.lake)
    with writer_lease(store, "detect", wait=args.wait):  # the alerts table and detect state have one writer
        report = _detect(args, store)
    _warn(report)
    runs.note_detect(report)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_detect(report)
    return EXIT_OK if report.ok else EXIT_PARTIAL


@runs.recorded("ingest", "detect", "forward")
def cmd_run(args) -> int:
    from pipeline.ingest import IngestOptions, ingest
    from pipeline.lake.lease import writer_lease
    from pipeline.lake.store import open_store
    from pipeline.progress import IngestProgress, format_summary
    from pipeline.sources import open_source

    _configure_aws(args)
    require_lake(args.lake, create=True)
    from pipeline.detect.commands import tuned_rules_for

    tuned_rules_for(args)  # fail on a broken rule, tuning file or config before spending time on ingest
    from pipeline.forward.config import has_sinks

    forwarding = bool(args.config) and has_sinks(args.config)  # a config without sinks only sets options
    if forwarding:
        from pipeline.forward.config import load_config

        load_config(args.config)
    source, store = open_source(args.source), open_store(args.lake)
    opts = IngestOptions(workers=args.workers, retry_quarantined=args.retry_quarantined)
    with writer_lease(store, "run", wait=args.wait):  # one lease for ingest, detect and forward
        if args.json:
            ing = ingest(source, store, opts)
        else:
            with IngestProgress() as progress:
                ing = ingest(source, store, opts, progress)
            print(format_summary(ing))
        runs.note_ingest(ing)
        report = _detect(args, store)
        _warn(report)
        runs.note_detect(report)
        sent = []
        if forwarding:
            from pipeline.forward.run import forward

            sent = forward(args.lake, store, args.config)
            runs.note_forward(sent)
    if args.json:
        print(json.dumps({"ingest": ing.to_dict(), "detect": report.to_dict(),
                          "forward": [r.to_dict() for r in sent]}, indent=2))
    else:
        _print_detect(report)
        _print_forward(sent)
    ok = ing.ok and report.ok and all(r.left == 0 and not r.parked for r in sent)
    return EXIT_OK if ok else EXIT_PARTIAL


def _print_forward(reports) -> None:
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
    _configure_aws(args)
    require_lake(args.lake, write=not args.status)
    store = open_store(args.lake)
    if args.status:
        rows = status(args.lake, store, args.config)
        if args.json:
            print(json.dumps(rows, indent=2))
        for r in rows if not args.json else []:
            print(f"{r['sink']} ({r['type']}): {r['delivered']} delivered, {r['pending']} pending, {len(r['parked'])} parked")
            for p in r["parked"]:
                print(f"    parked {p['alert']}: {p['reason']} (since {p['at']})")
        return EXIT_OK
    with writer_lease(store, "forward", wait=args.wait):  # delivery state has one writer
        reports = forward(args.lake, store, args.config)
    runs.note_forward(reports)
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        print("Forwarding:")
        _print_forward(reports)
    return EXIT_OK if all(r.left == 0 and not r.parked for r in reports) else EXIT_PARTIAL


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (README.md lists them)."""
    from botocore.exceptions import BotoCoreError, ClientError

    parser = build_parser()
    from pipeline.ops.settings import apply_settings

    try:
        apply_settings(parser, argv)  # config file < environment, as the flags' defaults (pipeline/ops/settings.py)
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_ERROR
    args = parser.parse_args(argv)  # usage errors: one line, exit 64 (pipeline.options.Parser)
    try:
        check_window(args)
        return args.func(args)
    except SoclakeError as e:
        if args.debug:
            traceback.print_exc()
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, UsageError) else EXIT_ERROR
    except (OSError, BotoCoreError, ClientError) as e:  # the environment, not a bug: still one line
        if isinstance(e, BrokenPipeError):  # soclake query … | head
            sys.stderr.close()
            return EXIT_ERROR
        if args.debug:
            traceback.print_exc()
        print(f"Error: {one_line(e)} (--debug shows where)", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("Interrupted: nothing uncommitted is kept; rerun to continue where it stopped.", file=sys.stderr)
        return EXIT_INTERRUPTED
