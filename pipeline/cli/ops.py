"""``soclake status`` and ``soclake config check``: operating a deployment."""

from __future__ import annotations

import json
import os

import click
import yaml

from pipeline.cli.options import (
    DURATION,
    aws_options,
    configure_aws,
    format_option,
    json_option,
    lake_option,
    parse_duration,
    to_args,
)
from pipeline.options import EXIT_OK, EXIT_PARTIAL, require_lake


@click.command("status", short_help="health: per source the newest object and event, last runs, outbox, quarantine",
               help="Per source (service x account x region) the newest object ingested and the newest event in "
               "the lake, the last ingest, detect and forward runs and their outcome, per sink the alerts pending and "
               "parked, and the quarantined objects. Exits 2 when a source is staler than --max-lag, so a scheduler, "
               "a CloudWatch alarm or a Kubernetes probe can use it.")
@lake_option
@click.option("--max-lag", type=DURATION, metavar="DURATION",
              help="a source whose newest event is older than this is stale: exit 2 (e.g. 2h, 30m)")
@click.option("--lag-services", default="cloudtrail",
              help="comma-separated services --max-lag applies to (default cloudtrail: GuardDuty exports only "
              "when there are findings); cloudtrail,guardduty for both")
@format_option(help="table: the sources, runs, sinks and quarantine for reading; json: all of it; jsonl and csv: "
               "one row per source")
@aws_options
@to_args
def status_command(args):
    return cmd_status(args)


@click.group("config", short_help="validate a config file and print the effective settings (secrets masked)",
             help="The one config file every command reads (--config FILE or SOCLAKE_CONFIG; "
             "precedence file < environment SOCLAKE_* < flags). See deploy/soclake.example.yml.")
def config_group():
    """Only holds ``config check``."""


@config_group.command("check", short_help="validate FILE (with the environment) and print the effective settings",
                      help="Validates every section, including each sink by its type, and prints the "
                      "effective settings (file < environment) with secrets masked. Errors name the file, "
                      "line and key, never a value. FILE defaults to --config or SOCLAKE_CONFIG.")
@click.argument("file", required=False)
@json_option(help="print JSON instead of YAML")
@to_args
def config_check_command(args):
    return cmd_config_check(args)


COMMANDS = [status_command, config_group]


def cmd_status(args) -> int:
    from pipeline.lake.store import open_store
    from pipeline.ops.status import SOURCE_COLUMNS, format_status, lake_status, source_rows
    from pipeline.tables import emit, to_json

    configure_aws(args)
    require_lake(args.lake)
    max_lag = args.max_lag
    if isinstance(max_lag, str):  # from the config file's status.max_lag
        max_lag = parse_duration(max_lag)
    config = getattr(args, "config", None)
    if config:
        from pipeline.forward.config import has_sinks

        config = config if has_sinks(config) else None
    services = tuple(s.strip() for s in args.lag_services.split(",") if s.strip())
    st = lake_status(args.lake, open_store(args.lake), max_lag=max_lag, config_path=config, lag_services=services)
    if args.format == "table":
        print(format_status(st))
    elif args.format == "json":
        print(to_json(st.to_dict()))
    else:
        emit(source_rows(st), args.format, SOURCE_COLUMNS)
    return EXIT_OK if st.healthy else EXIT_PARTIAL


def cmd_config_check(args) -> int:
    from pipeline.errors import ConfigError
    from pipeline.ops.settings import effective, load_settings

    path = args.file or getattr(args, "config", None) or os.environ.get("SOCLAKE_CONFIG")
    if not path:
        raise ConfigError("no config file: pass FILE, --config FILE or set SOCLAKE_CONFIG")
    settings = load_settings(path)
    sinks = []
    if settings.sinks:
        from pipeline.forward.config import load_config

        sinks = load_config(path)[1]
    data = effective(settings)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"# {path}: valid ({len(sinks)} sink(s)); effective settings (file < environment), secrets masked")
        print(yaml.safe_dump(data, sort_keys=False), end="")
    return EXIT_OK
