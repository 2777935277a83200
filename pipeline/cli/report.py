"""``soclake report``: the self-contained HTML report."""

from __future__ import annotations

import json

import click

from pipeline.analyst.report import write_report
from pipeline.cli.options import (
    NON_NEGATIVE_INT,
    TIME,
    aws_options,
    configure_aws,
    json_option,
    lake_option,
    quiet_option,
    to_args,
)
from pipeline.options import EXIT_OK


@click.command("report", short_help="write a self-contained HTML report: alerts and incidents over time, "
               "breakdowns, timelines",
               help="One HTML file with no external resources (inline CSS, SVG charts and one small script for "
               "sorting and filtering tables; opens offline): alerts and incidents over time by severity, alerts by "
               "severity, rule, account, actor (GuardDuty and CloudTrail names of one principal merged) and source IP, "
               "each incident's timeline, the alerts in no incident, each alert's ATT&CK techniques, runbook, status "
               "and owner, links to the AWS console for the principals and resources named, and the ATT&CK coverage "
               "of the rule catalogue.")
@lake_option
@click.option("--output", default="report.html", help="HTML file to write (default report.html; folders are created)")
@click.option("--since", type=TIME, help="only alerts and incidents active since this time: a date, an RFC 3339 time "
              "or a span back from now (24h, 7d)")
@click.option("--max-incidents", type=NON_NEGATIVE_INT, default=50,
              help="incident timelines to include, most severe first (default 50; the rest are counted)")
@click.option("--max-alerts", type=NON_NEGATIVE_INT, default=1000,
              help="alerts in no incident to list, most severe first (default 1000; the rest are counted)")
@click.option("--rules", multiple=True, metavar="DIR",
              help="an extra folder of rule files for the ATT&CK coverage view (repeatable; env SOCLAKE_RULES)")
@json_option(help="print the summary (path, alerts, incidents) as JSON")
@aws_options
@quiet_option
@to_args
def report_command(args):
    return cmd_report(args)


COMMANDS = [report_command]


def cmd_report(args) -> int:
    from pipeline.cli.progress import StepProgress

    configure_aws(args)
    with StepProgress("report") as progress:  # on a terminal only
        summary = write_report(args.lake, args.output, args.since, args.max_incidents, max_alerts=args.max_alerts,
                               rule_dirs=args.rules, progress=progress)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"Wrote {summary['path']}: {summary['alerts']:,} alerts, {summary['incidents']:,} incidents "
              f"({summary['bytes'] / 1024:,.0f} KB; opens offline in any browser)")
    return EXIT_OK
