"""The flags every command shares, as Click decorators, and the glue from Click to the commands.

Command modules import their flags from here, never from ``pipeline.cli`` (which only assembles the
command groups), so no import runs in a circle. A command's callback gets one ``args`` namespace
(``args.lake``, ``args.json`` …) and hands it to a plain ``cmd_*(args)`` function that tests also call.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import re

import click

from pipeline.options import EXIT_OK, check_window, non_negative_int, positive_int

__all__ = ["DATE", "DURATION", "NON_NEGATIVE_INT", "POSITIVE_INT", "TIME", "aws_options", "configure_aws",
           "filter_options", "format_option", "json_option", "lake_option", "rules_option", "to_args",
           "wait_option", "EXIT_OK"]


# ---------------------------------------------------------------- value types


class FuncType(click.ParamType):
    """A Click type from a function ``str -> value`` that raises ValueError/ArgumentTypeError with the reason."""

    def __init__(self, func, name: str, metavar: str | None = None):
        self.func, self.name, self._metavar = func, name, metavar

    def get_metavar(self, param, ctx=None):  # Click passes ctx from 8.2 on
        return self._metavar

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value  # a default, or a value from the config file, already typed
        try:
            return self.func(value)
        except (ValueError, argparse.ArgumentTypeError) as e:
            self.fail(str(e), param, ctx)


_SPAN = re.compile(r"^\d+[smhd]$")


def parse_duration(s: str) -> dt.timedelta:
    from pipeline.detect.rules import parse_duration as parse

    return parse(s)


def parse_time(s: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """A time in UTC from a date (``2026-11-05``), an RFC 3339 time (``2026-11-05T10:00:00Z``,
    ``…+02:00``) or a span back from now (``24h``, ``7d``, ``30m``)."""
    s = s.strip()
    if _SPAN.match(s):
        return (now or dt.datetime.now(dt.UTC)) - parse_duration(s)
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{s!r} is not a time: use a date (YYYY-MM-DD), an RFC 3339 time "
                         "(YYYY-MM-DDTHH:MM[:SS]Z) or a span back from now (24h, 7d)") from None
    return t.astimezone(dt.UTC) if t.tzinfo else t.replace(tzinfo=dt.UTC)


def parse_date(s: str) -> dt.date:
    """A day (UTC) from a date, an RFC 3339 time or a span back from now (``7d``: the day 7 days ago)."""
    try:
        return dt.date.fromisoformat(s.strip())
    except ValueError:
        pass
    try:
        return parse_time(s).date()
    except ValueError:
        raise ValueError(f"{s!r} is not a date: use YYYY-MM-DD, an RFC 3339 time or a span back from now "
                         "(24h, 7d)") from None


def csv_set(s: str) -> frozenset[str]:
    return frozenset(x.strip() for x in s.split(",") if x.strip())


POSITIVE_INT = FuncType(positive_int, "positive_int", "N")
NON_NEGATIVE_INT = FuncType(non_negative_int, "non_negative_int", "N")
DURATION = FuncType(parse_duration, "duration", "DURATION")
TIME = FuncType(parse_time, "time", "TIME")
DATE = FuncType(parse_date, "date", "DATE")
CSV = FuncType(csv_set, "csv", "A,B")


# ---------------------------------------------------------------- shared flags


def _stack(*decorators):
    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f
    return apply


def aws_options(f):
    """--profile, --region, --endpoint-url (they override AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL)."""
    return _stack(
        click.option("--profile", help="AWS profile (role assumption via the profile's role_arn works; "
                     "overrides AWS_PROFILE)"),
        click.option("--region", help="AWS region of the clients (default: AWS_REGION, the profile's, else us-east-1)"),
        click.option("--endpoint-url", help="custom S3 endpoint, e.g. a MinIO or moto server (overrides AWS_ENDPOINT_URL)"),
    )(f)


def lake_option(f=None, *, help="lake root: a local folder or s3://bucket/prefix (env SOCLAKE_LAKE)"):
    deco = click.option("--lake", envvar="SOCLAKE_LAKE", show_envvar=False, help=help)
    return deco if f is None else deco(f)


def filter_options(f):
    """What to list: pushed into S3 key prefixes (ingest, backfill and verify share them)."""
    return _stack(
        click.option("--since", type=DATE, help="first delivery date to list (YYYY-MM-DD, an RFC 3339 time or a span "
                     "back from now such as 7d; from the key path)"),
        click.option("--until", type=DATE, help="last delivery date to list (same forms, inclusive)"),
        click.option("--accounts", type=CSV, default="", help="comma-separated account ids to list"),
        click.option("--regions", type=CSV, default="", help="comma-separated regions to list"),
    )(f)


def window_options(f, what: str = "evaluate"):
    """--since/--until as times: dates, RFC 3339 times or spans back from now."""
    return _stack(
        click.option("--since", type=TIME, help=f"{what} from this time: a date, an RFC 3339 time (UTC unless an "
                     "offset is given) or a span back from now (24h, 7d)"),
        click.option("--until", type=TIME, help=f"{what} up to this time (same forms)"),
    )(f)


def wait_option(f=None, *, help=None):
    deco = click.option(
        "--wait", type=float, default=0.0, metavar="SECONDS",
        help=help or "when another run is writing the lake (it holds the lake's writer lease), wait up to SECONDS for "
        "it to finish (default 0: stop at once with an error naming the holder's host, pid and start time)")
    return deco if f is None else deco(f)


def _silence(ctx, param, value):
    if value:
        from pipeline.cli.progress import silence

        silence()
    return value


#: --quiet on every command that shows progress (pipeline.cli.progress): nothing live even on a terminal.
quiet_option = click.option("--quiet", is_flag=True, callback=_silence,
                            help="no progress output (progress is only ever shown on a terminal)")


def rules_option(f=None, *, strict: bool = True):
    """--rules DIR (repeatable) and, where broken rules are skipped by default, --strict."""
    decos = [click.option("--rules", multiple=True, metavar="DIR",
                          help="an extra folder of rule files, *.yml or *.yaml (repeatable; env SOCLAKE_RULES, "
                          "':'-separated)")]
    if strict:
        decos.append(click.option("--strict", is_flag=True,
                                  help="refuse to run when any rule file fails validation (for CI); by default such "
                                  "a rule is reported on stderr and skipped, and the others run"))
    deco = _stack(*decos)
    return deco if f is None else deco(f)


def json_option(f=None, *, help="print JSON"):
    deco = click.option("--json", "json_", is_flag=True, help=help)
    return deco if f is None else deco(f)


#: The formats of listing commands: one table renderer (pipeline.tables), JSON, JSON Lines, CSV.
FORMATS = ("table", "json", "jsonl", "csv")


def format_option(f=None, *, choices=FORMATS, default="table", help=None):
    """--format table|json|jsonl|csv and --json, its alias (kept for scripts)."""
    deco = _stack(
        click.option("--format", "format", type=click.Choice(choices), default=default, show_default=True,
                     help=help or "table for reading (fits the terminal; plain when piped), json, jsonl (one object "
                     "per line) or csv"),
        click.option("--json", "json_", is_flag=True, help="same as --format json"),
    )
    return deco if f is None else deco(f)


# ---------------------------------------------------------------- from Click to cmd_*(args)


def to_args(func):
    """Click callback → ``func(args)``: flags, the root's --debug/--metrics/--config, and file settings merged."""

    @functools.wraps(func)
    def callback(**params):
        ctx = click.get_current_context()
        root = ctx.find_root()
        args = argparse.Namespace(**{"debug": False, "metrics": None, "config": None, **root.params})
        added = (root.obj or {}).get("settings_lists", {})
        for k, v in params.items():
            if k == "json_":
                k = "json"
            if isinstance(v, tuple) and k not in ("accounts", "regions"):
                v = list(v)
            setattr(args, k, v)
        if ctx.allow_extra_args:  # options the command passes on (backfill: to Beam)
            args.extra_args = [a for a in ctx.args if a != "--"]
        for k, first in added.items():  # --rules, --ip-db: the file's values, then the flags' (they add)
            if k in params:
                setattr(args, k, [*first, *getattr(args, k)])
        if "format" in params and getattr(args, "json", False):
            args.format = "json"
        if "format" in params and "json" in params:
            args.json = args.format == "json"
        check_window(args)
        if (root.obj or {}).get("parse_only"):
            args.func = func
            return args
        return func(args)

    return callback


def configure_aws(args) -> None:
    from pipeline import aws

    aws.configure(aws.AwsSettings.from_env(getattr(args, "profile", None), getattr(args, "region", None),
                                           getattr(args, "endpoint_url", None)))


_IP_DB_HELP = ("a MaxMind-format IP database (GeoLite2-ASN/-Country/-City, DB-IP lite, IPinfo lite .mmdb); repeatable, "
               "e.g. one ASN and one country file (env SOCLAKE_ENRICH__IP_DB as a JSON list; config enrich.ip_db)")
_RANGES_HELP = "a saved copy of AWS's ip-ranges.json: addresses in it are labelled aws (config enrich.aws_ranges)"


def enrich_flags(f):
    """--ip-db and --aws-ranges for the commands that build alerts (detect, run, rules profile, watch, enrich ip)."""
    return _stack(
        click.option("--ip-db", multiple=True, metavar="FILE", help=_IP_DB_HELP),
        click.option("--aws-ranges", metavar="FILE", help=_RANGES_HELP),
    )(f)


def enrich_options(args):
    from pipeline.enrich.apply import EnrichOptions

    return EnrichOptions(ip_db=tuple(getattr(args, "ip_db", None) or ()), aws_ranges=getattr(args, "aws_ranges", None))


def detect_flags(f=None, *, window: bool = True):
    """The flags of detect, run and rules profile."""
    from pipeline.detect.planner import DEFAULT_BUDGET_ROWS, DEFAULT_MEMORY_MB

    decos = [
        rules_option,
        click.option("--suppressions", envvar="SOCLAKE_SUPPRESSIONS", metavar="FILE",
                     help="tuning file whose `suppressions:` mark matching alerts suppressed (kept in the lake, not "
                     "forwarded) and whose `rules:` set rule parameters (env SOCLAKE_SUPPRESSIONS; "
                     "deploy/suppressions.example.yml)"),
        click.option("--rule-config", envvar="SOCLAKE_RULE_CONFIG", metavar="FILE",
                     help="tuning file whose `rules:` section sets rule parameters and enabled flags, "
                     "{rule_id: {parameters: {name: value}, enabled: false}} (env SOCLAKE_RULE_CONFIG; same format)"),
    ]
    if window:
        decos.append(lambda g: window_options(g))
    decos += [
        click.option("--lookback", type=DURATION, default="3h",
                     help="re-evaluate this much before the last run's end, for late records (default 3h)"),
        click.option("--scan", type=click.Choice(("shared", "per-rule")), default="shared",
                     help="shared: one planned scan serves every rule (default); per-rule: each rule reads the lake "
                     "over the whole range at once (the reference the planner is tested against)"),
        click.option("--window-rows", type=POSITIVE_INT, default=DEFAULT_BUDGET_ROWS, metavar="N",
                     help=f"rows per planned window: sparse days share one, heavy days are split "
                     f"(default {DEFAULT_BUDGET_ROWS:,})"),
        click.option("--memory-mb", type=POSITIVE_INT, default=DEFAULT_MEMORY_MB, metavar="MB",
                     help=f"DuckDB memory limit for detection; beyond it DuckDB spills to disk (default {DEFAULT_MEMORY_MB})"),
        click.option("--temp-dir", metavar="DIR",
                     help="where detection keeps its run folder: the candidates' database file and DuckDB's "
                     "spill files, removed after the run (default: the system temp folder)"),
        enrich_flags,
        json_option(help="print the report as JSON (with each rule's time and rows)"),
    ]
    deco = _stack(*decos)
    return deco if f is None else deco(f)


def detect_options(args, **over):
    """DetectOptions from the detect flags (shared by detect, run and rules profile)."""
    from pipeline.detect.engine import DetectOptions

    lookback = args.lookback if isinstance(args.lookback, dt.timedelta) else parse_duration(str(args.lookback))
    return DetectOptions(since=getattr(args, "since", None), until=getattr(args, "until", None),
                         lookback=lookback, scan=args.scan, budget_rows=args.window_rows,
                         memory_mb=args.memory_mb, temp_dir=args.temp_dir, enrich=enrich_options(args), **over)
