"""``soclake athena-ddl``: CREATE statements for Amazon Athena / Glue over an s3:// lake."""

from __future__ import annotations

import click

from pipeline.analyst.athena import AWS_REGIONS, athena_ddl
from pipeline.cli.options import lake_option, to_args
from pipeline.errors import ConfigError


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


@click.command("athena-ddl", short_help="print CREATE statements for Amazon Athena / Glue over an s3:// lake "
               "(partition projection)",
               help="Prints CREATE DATABASE, CREATE EXTERNAL TABLE for cloudtrail, guardduty, alerts and incidents "
               "(Parquet, partition projection: nothing to crawl or repair), the views guardduty_latest and "
               "alerts_current and the OCSF views (ocsf_api_activity, ocsf_authentication, ocsf_account_change, "
               "ocsf_detection_finding), separated by blank lines; run them one by one in Athena. See docs/query.md.")
@lake_option(help="the lake's S3 location, s3://bucket/prefix (env SOCLAKE_LAKE)")
@click.option("--database", default="soclake", help="Glue database to create the tables in (default soclake)")
@click.option("--accounts", default="",
              help="comma-separated account ids to enumerate; default: account_id is 'injected', so every "
              "query on cloudtrail/guardduty must filter account_id = '…' or IN (…)")
@click.option("--regions", default="",
              help=f"comma-separated regions to enumerate (default: the {len(AWS_REGIONS)} commercial regions)")
@click.option("--since", default="2020-01-01",
              help="first event_date the projection covers (YYYY-MM-DD, default 2020-01-01); it ends at NOW")
@click.option("--output", metavar="FILE", help="write the statements to this file instead of stdout")
@to_args
def athena_ddl_command(args):
    args.accounts, args.regions = _csv(args.accounts), _csv(args.regions)
    return cmd_athena_ddl(args)


COMMANDS = [athena_ddl_command]


def cmd_athena_ddl(args) -> int:
    text = ";\n\n".join(athena_ddl(args.lake, args.database, args.accounts, args.regions, args.since)) + ";\n"
    if args.output:
        try:
            with open(args.output, "w") as f:
                f.write(text)
        except OSError as e:
            raise ConfigError(f"cannot write {args.output}: {e.strerror}") from e
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0
