"""``soclake status`` and ``soclake config check``: operating a deployment."""

from __future__ import annotations

import argparse
import json
import os

import yaml

from pipeline.options import EXIT_OK, EXIT_PARTIAL, require_lake


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.cli import _add_aws, _duration, _lake_arg

    p = sub.add_parser(
        "status", help="health: per source the newest object and event, last runs, outbox, quarantine",
        description="Per source (service x account x region) the newest object ingested and the newest event in "
        "the lake, the last ingest, detect and forward runs and their outcome, per sink the alerts pending and "
        "parked, and the quarantined objects. Exits 2 when a source is staler than --max-lag, so a scheduler, "
        "a CloudWatch alarm or a Kubernetes probe can use it.",
    )
    _lake_arg(p)
    p.add_argument("--max-lag", type=_duration, metavar="DURATION",
                   help="a source whose newest event is older than this is stale: exit 2 (e.g. 2h, 30m)")
    p.add_argument("--lag-services", default="cloudtrail",
                   help="comma-separated services --max-lag applies to (default cloudtrail: GuardDuty exports only "
                   "when there are findings); cloudtrail,guardduty for both")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_aws(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("config", help="validate a config file and print the effective settings (secrets masked)",
                       description="The one config file every command reads (--config FILE or SOCLAKE_CONFIG; "
                       "precedence file < environment SOCLAKE_* < flags). See deploy/soclake.example.yml.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    cp = csub.add_parser("check", help="validate FILE (with the environment) and print the effective settings",
                         description="Validates every section, including each sink by its type, and prints the "
                         "effective settings (file < environment) with secrets masked. Errors name the file, "
                         "line and key, never a value.")
    cp.add_argument("file", nargs="?", help="the config file (default: --config or SOCLAKE_CONFIG)")
    cp.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    cp.set_defaults(func=cmd_config_check)


def cmd_status(args) -> int:
    from pipeline.cli import _configure_aws, _duration
    from pipeline.lake.store import open_store
    from pipeline.ops.status import format_status, lake_status

    _configure_aws(args)
    require_lake(args.lake)
    max_lag = args.max_lag
    if isinstance(max_lag, str):  # from the config file's status.max_lag
        max_lag = _duration(max_lag)
    config = getattr(args, "config", None)
    if config:
        from pipeline.forward.config import has_sinks

        config = config if has_sinks(config) else None
    services = tuple(s.strip() for s in args.lag_services.split(",") if s.strip())
    st = lake_status(args.lake, open_store(args.lake), max_lag=max_lag, config_path=config, lag_services=services)
    print(json.dumps(st.to_dict(), indent=2, default=str) if args.json else format_status(st))
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
