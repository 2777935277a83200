"""``soclake hunt`` and ``soclake hunts``: run, list, validate and test the saved hunts."""

from __future__ import annotations

import click

from pipeline.analyst.hunts import (
    find_hunt,
    format_list,
    hunt_dirs,
    load_hunts,
    parse_param_args,
    render,
    resolve_params,
    run_hunt_page,
    run_hunt_test,
    select_columns,
)
from pipeline.cli.options import NON_NEGATIVE_INT, aws_options, configure_aws, format_option, lake_option, to_args


def _hunts_option(f):
    return click.option("--hunts", multiple=True, metavar="DIR",
                        help="an extra folder of hunt files (repeatable; env SOCLAKE_HUNTS, ':'-separated)")(f)


@click.command("hunt", short_help="run a saved hunting query over the lake (soclake hunt --list shows them)",
               help="Saved hunts are YAML files under detections/hunts/ (docs/hunting.md): DuckDB SQL with typed "
               "parameters, over the lake's cloudtrail, guardduty, guardduty_latest, alerts and incidents views. "
               "NAME is the hunt to run, e.g. access_key_activity.")
@click.argument("name", required=False, metavar="[NAME]")
@lake_option
@click.option("--param", multiple=True, metavar="NAME=VALUE",
              help="a parameter of the hunt (repeatable); timestamps as YYYY-MM-DD[THH:MM[:SS]Z] (UTC), "
              "durations as 15m/1h/2d, dates as YYYY-MM-DD")
@format_option(help="table for reading (cells over 60 characters cut in the middle), json, jsonl or csv for other "
               "tools (default table)")
@click.option("--limit", type=NON_NEGATIVE_INT, default=0,
              help="at most this many rows, applied in the SQL; the footer still counts them all (default 0: all)")
@click.option("--columns", metavar="COL,COL",
              help="print only these output columns, in this order (default: all the hunt returns)")
@click.option("--list", "list", is_flag=True, help="list the hunts with their parameters, and exit")
@_hunts_option
@aws_options
@to_args
def hunt_command(args):
    return cmd_hunt(args)


@click.group("hunts", short_help="validate and test the saved hunts",
             help="Check hunt files and run their own tests through the real normaliser and SQL.")
def hunts_group():
    """Only holds hunts validate and test."""


@hunts_group.command("validate", help="check every hunt file (keys, parameters, SQL against the real columns, tests "
                     "present)")
@_hunts_option
@to_args
def hunts_validate_command(args):
    return cmd_hunts_validate(args)


@hunts_group.command("test", help="run the hunts' own tests (events and findings in, expected rows out); NAMEs: only "
                     "these hunts (default: all)")
@_hunts_option
@click.argument("ids", nargs=-1, metavar="[NAME]...")
@to_args
def hunts_test_command(args):
    return cmd_hunts_test(args)


COMMANDS = [hunt_command, hunts_group]


def _load_for(args) -> list:
    """The built-in hunts plus the folders the analyst named (each must hold hunt files)."""
    from pipeline.options import check_folders

    check_folders("--hunts", "SOCLAKE_HUNTS", args.hunts, "hunt", "*.yml")
    return load_hunts(hunt_dirs(args.hunts))


def cmd_hunt(args) -> int:
    from pipeline import views
    from pipeline.errors import ConfigError
    from pipeline.options import require_lake

    hunts = _load_for(args)
    if args.list:
        if args.format == "table":
            print(format_list(hunts))
        else:
            from pipeline.tables import emit

            emit([{"id": h.id, "title": h.title, "parameters": [
                {"name": p.name, "type": p.type, "required": p.required, "default": p.default,
                 "description": p.description} for p in h.parameters]} for h in sorted(hunts, key=lambda h: h.id)],
                 args.format, [])
        return 0
    if not args.name:
        raise ConfigError("which hunt? soclake hunt NAME --lake PATH (soclake hunt --list shows them)")
    hunt = find_hunt(hunts, args.name)
    values = resolve_params(hunt, parse_param_args(args.param, hunt))
    configure_aws(args)
    con = views.connect(require_lake(args.lake))
    con.execute("SET TimeZone = 'UTC'")
    cols, rows, total = run_hunt_page(con, hunt, values, args.limit)
    if args.columns:
        cols, rows = select_columns(hunt, cols, rows, args.columns)
    render(cols, rows, args.format, total=total)
    return 0


def cmd_hunts_validate(args) -> int:
    hunts = _load_for(args)
    print(f"{len(hunts)} hunts valid ({sum(len(h.tests) for h in hunts)} tests)")
    return 0


def cmd_hunts_test(args) -> int:
    hunts = _load_for(args)
    for name in args.ids:
        find_hunt(hunts, name)
    passed = failed = 0
    for h in [h for h in hunts if not args.ids or h.id in args.ids]:
        for n, t in enumerate(h.tests):
            problems = run_hunt_test(h, n)
            print(f"{'FAIL' if problems else 'PASS'}  {h.id}: {t.name}")
            for p in problems:
                print(f"        {p}")
            passed, failed = passed + (not problems), failed + bool(problems)
    print(f"{passed} passed, {failed} failed")
    return 0 if not failed else 1
