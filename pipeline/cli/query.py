"""``soclake query``: SQL over the lake's views, printed or written to a file."""

from __future__ import annotations

import sys

import click

from pipeline.analyst.query import FORMATS, TABLE_ROWS, check_options, connect, run_query
from pipeline.cli.options import NON_NEGATIVE_INT, aws_options, format_option, lake_option, to_args


@click.command("query", short_help="run SQL over the lake's views; print a table, CSV, JSON or JSON Lines, or "
               "write Parquet",
               help="Runs DuckDB SQL over the views cloudtrail, guardduty, guardduty_latest, alerts, alert_versions, "
               "incidents and the OCSF views ocsf_api_activity, ocsf_authentication, ocsf_account_change, "
               "ocsf_detection_finding (columns: docs/schema.md, docs/ocsf.md). Filters on event_date, account_id and "
               "region prune partition folders: prefix the SQL with EXPLAIN to see 'Scanning Files: x/y'. SQL is the "
               "query, quoted; '-' reads it from stdin. See docs/query.md.")
@click.argument("sql", metavar="SQL")
@lake_option
@format_option(choices=FORMATS, help=f"table (default; shows {TABLE_ROWS} rows unless --limit), csv (nested values "
               "as JSON), json (one array), jsonl (one JSON object per row), parquet (needs --output)")
@click.option("--output", metavar="FILE", help="write the result to this local file instead of stdout")
@click.option("--limit", type=NON_NEGATIVE_INT, metavar="N",
              help="at most N rows (applied to the query; for tables, rows shown)")
@aws_options
@to_args
def query_command(args):
    return cmd_query(args)


COMMANDS = [query_command]


def cmd_query(args) -> int:
    from pipeline import aws

    sql = sys.stdin.read() if args.sql == "-" else args.sql
    check_options(args.format, args.output, args.limit)
    aws.configure(aws.AwsSettings.from_env(args.profile, args.region, args.endpoint_url))
    n = run_query(connect(args.lake), sql, args.format, args.output, args.limit)
    if args.output:
        print(f"wrote {n:,} row{'' if n == 1 else 's'} to {args.output}" if args.format != "table" else f"wrote {args.output}", file=sys.stderr)
    return 0
