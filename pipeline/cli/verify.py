"""``soclake verify``: CloudTrail log file integrity over a source, reported like ``aws cloudtrail validate-logs``."""

from __future__ import annotations

import click

from pipeline.cli.options import (
    DURATION,
    aws_options,
    configure_aws,
    filter_options,
    format_option,
    lake_option,
    quiet_option,
    to_args,
)

DESCRIPTION = (
    "Verify CloudTrail log file integrity for every trail and region under --source: each digest file's "
    "SHA256withRSA signature (the region's public key, by fingerprint), its link to the previous digest, and each "
    "log file it lists (present; SHA-256 of its uncompressed content equal to the listed hash); gaps in the hourly "
    "chain longer than --max-gap; log files no digest lists. Log file hashes computed by ingest are taken from the "
    "lake's ledger when the object is unchanged. Problems become alerts in the lake (unless --no-alerts). "
    "Public keys come from CloudTrail ListPublicKeys (cached in the lake) or --public-keys. See docs/integrity.md."
)


@click.command("verify", short_help="verify CloudTrail digest files and log files (like aws cloudtrail validate-logs)",
               help=DESCRIPTION,
               epilog="Exit codes: 0 everything verified, 2 some digest or log file failed (or a gap, or an "
               "unlisted log file), 1 error, 64 usage error.")
@click.option("--source", required=True, help="s3://bucket[/prefix] or a local folder holding AWSLogs/")
@lake_option
@filter_options
@click.option("--public-keys", metavar="FILE",
              help="air-gapped: a JSON key file instead of ListPublicKeys, {\"<region>\": <output of aws "
              "cloudtrail list-public-keys --region <region>>, ...} (or one such output for every region)")
@click.option("--max-gap", type=DURATION, default="3h",
              help="longest time without a digest file before it is reported as a gap (default 3h; CloudTrail "
              "writes one per hour)")
@click.option("--rehash", is_flag=True,
              help="read and hash every log file, even those whose hash the ingest ledger holds for the same ETag "
              "(for local copies, whose ETag is only size and mtime)")
@click.option("--threads", type=int, default=8, help="concurrent object reads (default 8)")
@click.option("--no-alerts", is_flag=True, help="report only; write no alerts to the lake")
@format_option(help="table: the report as aws cloudtrail validate-logs words it; json: the whole report; jsonl and "
               "csv: one row per problem found (kind, object, account, region, trail, time, detail)")
@aws_options
@quiet_option
@to_args
def verify_command(args):
    return cmd_verify(args)


COMMANDS = [verify_command]
#: The columns of ``--format csv`` (also when nothing was found: a header alone).
PROBLEM_FIELDS = ("kind", "object", "account", "region", "trail", "time", "detail")


def cmd_verify(args) -> int:
    from pipeline import aws
    from pipeline.cli.progress import StepProgress
    from pipeline.integrity import alerts
    from pipeline.integrity.keys import PublicKeys
    from pipeline.integrity.verify import VerifyOptions, verify
    from pipeline.lake.store import open_store
    from pipeline.options import EXIT_OK, EXIT_PARTIAL, require_lake
    from pipeline.sources import Filters, open_source
    from pipeline.tables import emit, to_json

    configure_aws(args)
    require_lake(args.lake, create=True)
    store = open_store(args.lake)
    if args.public_keys:
        keys = PublicKeys.from_file(args.public_keys)
    else:
        settings = aws.AwsSettings.from_env(args.profile, args.region)  # CloudTrail: not the S3 --endpoint-url
        keys = PublicKeys.from_aws(store, lambda region: aws.client(
            "cloudtrail", aws.AwsSettings(settings.profile, region)))
    filters = Filters(since=args.since, until=args.until, accounts=args.accounts, regions=args.regions)
    new = updated = []
    with StepProgress("verify") as progress:  # on a terminal only
        report = verify(open_source(args.source), store, keys, VerifyOptions(
            filters=filters, max_gap=args.max_gap, rehash=args.rehash, threads=max(1, args.threads)), progress)
        if not args.no_alerts:
            progress("writing alerts")
            new, updated = alerts.write_alerts(args.lake, store, report)
    if args.format == "json":
        print(to_json({**report.to_dict(), "alerts": {"new": [a.id for a in new], "updated": [a.id for a in updated]}}))
    elif args.format in ("jsonl", "csv"):
        emit([p.to_dict() for p in report.problems], args.format, [], fields=PROBLEM_FIELDS)
    else:
        print("\n".join(report.lines()))
        if new or updated:
            print(f"alerts: {len(new)} new, {len(updated)} updated in {args.lake} (soclake forward delivers them)")
    return EXIT_OK if report.ok else EXIT_PARTIAL

