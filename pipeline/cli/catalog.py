"""``soclake catalog``: a DuckDB database file with views over the lake, for tools without soclake."""

from __future__ import annotations

import click

from pipeline.analyst.catalog import S3_SETUP, lake_root, write_catalog
from pipeline.cli.options import lake_option, to_args


@click.command("catalog", short_help="write a DuckDB database file with views over the lake, for DuckDB CLI, "
               "DBeaver, pandas",
               help="Writes a .duckdb file holding the views cloudtrail, guardduty, guardduty_latest, alerts, "
               "alert_versions, incidents and the OCSF views (ocsf_api_activity, ocsf_authentication, "
               "ocsf_account_change, ocsf_detection_finding) over the lake, with typed partitions, so tools without "
               f"soclake can query it. An s3:// lake needs DuckDB's httpfs extension where the file is opened: "
               f"{S3_SETUP} See docs/query.md.")
@lake_option(help="lake root: a local folder (stored as an absolute path) or s3://bucket/prefix (env SOCLAKE_LAKE)")
@click.option("--output", required=True, metavar="FILE",
              help="the DuckDB database file to write, e.g. lake.duckdb (replaced if it exists)")
@to_args
def catalog_command(args):
    return cmd_catalog(args)


COMMANDS = [catalog_command]


def cmd_catalog(args) -> int:
    status = write_catalog(args.lake, args.output)
    print(f"wrote {args.output}: views over {lake_root(args.lake)}")
    for view, state in status.items():
        print(f"  {view:<17} {state}")
    if args.lake.startswith("s3://"):
        print(f"open it with httpfs and your AWS credentials: duckdb {args.output} -cmd \"{S3_SETUP}\"")
    else:
        print(f"open it: duckdb -readonly {args.output}   (or duckdb.connect({args.output!r}, read_only=True))")
    return 0
