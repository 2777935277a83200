"""The ``soclake`` command: assembles the command groups (Click) and turns errors into exit codes.

Every command lives in this package, one module per command or group (their shared flags in
``pipeline.cli.options``); the stages they call (``ingest``, ``detect``, ``analyst``, ``beam``, …) never
import it. Nothing here is imported by the command modules.
Exit codes (README.md): 0 ok, 1 error, 2 finished but quarantined/failed/pending, 64 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback
from collections.abc import Iterator

import click

from pipeline import __version__
from pipeline.cli.completion import SHELLS
from pipeline.errors import ConfigError, SoclakeError, UsageError
from pipeline.options import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, one_line

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "build_cli", "commands", "main", "parse_args", "run"]

COMPLETE_VAR = "_SOCLAKE_COMPLETE"
CONFIG_HELP = "config file (env SOCLAKE_CONFIG): settings for every command; flags override it"
EPILOG = ("Exit codes: 0 ok, 1 error, 2 finished but some objects were quarantined or unreadable (or a rule "
          "failed, or alerts were left pending or parked), 64 usage error, 130 interrupted. "
          f"Shell completion: soclake completion --install, or eval \"$({COMPLETE_VAR}=bash_source soclake)\" "
          "(zsh_source, fish_source), or soclake completion SHELL.")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
#: Repeatable flags whose values add to the config file's list instead of replacing it.
ADDED = ("rules", "ip_db")


#: Command name -> the module of this package whose ``COMMANDS`` define it, in the order ``--help``
#: lists them (the order of a day's work). A module is imported only when one of its commands is
#: used (or ``--help`` lists them all): ``soclake --version`` or a TAB completion imports none.
LAZY = {
    "ingest": "batch", "synth": "batch", "schema": "batch", "rules": "rules", "verify": "verify", "detect": "batch",
    "alerts": "triage", "alert": "triage", "incidents": "triage", "incident": "triage", "forward": "batch",
    "hunt": "hunts", "hunts": "hunts", "query": "query", "backfill": "backfill", "catalog": "catalog",
    "athena-ddl": "athena", "deploy-glue": "deploy_glue", "report": "report", "enrich": "enrich", "status": "ops",
    "config": "ops", "watch": "watch", "compact": "watch", "run": "batch",
}


class Group(click.Group):
    """Commands in the order of :data:`LAZY` (then any added directly), each imported on first use."""

    lazy: dict[str, str] = {}

    def list_commands(self, ctx):
        return [*self.lazy, *(n for n in self.commands if n not in self.lazy)]

    def get_command(self, ctx, name):
        if name not in self.commands and name in self.lazy:
            import importlib

            module = importlib.import_module(f"pipeline.cli.{self.lazy[name]}")
            for cmd in module.COMMANDS:
                if cmd.name in self.lazy and cmd.name not in self.commands:
                    _finish(cmd)
                    self.add_command(cmd)
        return self.commands.get(name)

    def resolve_command(self, ctx, args):
        name = click.utils.make_str(args[0])
        if not name.startswith("-") and not ctx.resilient_parsing and self.get_command(ctx, name) is None:
            raise click.NoSuchCommand(name, possibilities=self.list_commands(ctx), ctx=ctx)
        return super().resolve_command(ctx, args)


def _finish(cmd: click.Command) -> None:
    """What every command gets: ``--config`` (each reads the one config file) and the shared context settings."""
    subs = [c for _, c in _walk(cmd)] if isinstance(cmd, click.Group) else []
    for sub in [cmd, *subs]:
        if not isinstance(sub, click.Group) and not any(p.name == "config" for p in sub.params):
            sub.params.append(click.Option(["--config"], envvar="SOCLAKE_CONFIG", help=CONFIG_HELP))
        sub.context_settings = {**CONTEXT, **sub.context_settings}


@click.group("soclake", cls=Group, context_settings=CONTEXT, epilog=EPILOG, no_args_is_help=False,
             help="CloudTrail and GuardDuty logs from S3 into a partitioned Parquet lake; detections in DuckDB.")
@click.version_option(__version__, "--version", prog_name="soclake", message="%(prog)s %(version)s",
                      help="print the version and exit")
@click.option("--debug", is_flag=True, help="show tracebacks on errors")
@click.option("--metrics", type=click.Choice(("off", "emf")),
              help="emf: one CloudWatch Embedded Metric Format line per run step on stdout (env SOCLAKE_METRICS; "
              "docs/deploy.md)")
@click.option("--config", envvar="SOCLAKE_CONFIG", help=CONFIG_HELP)
def _root(**_):
    """The root only holds the global flags; commands read them through their context."""


@click.command("completion", short_help="print or install the shell completion script (bash, zsh, fish)",
               help="Print the shell completion script for bash, zsh or fish (eval \"$(soclake completion bash)\" "
               "in ~/.bashrc), or install it with --install: the script goes under ~/.local/share/soclake/ and one "
               "line in ~/.bashrc or ~/.zshrc loads it (fish: ~/.config/fish/completions/soclake.fish). SHELL "
               "defaults to the one in $SHELL.")
@click.argument("shell", type=click.Choice(SHELLS), required=False)
@click.option("--install", is_flag=True, help="write the script where the shell loads it instead of printing it")
def completion_command(shell, install=False, **_):
    from click.shell_completion import get_completion_class

    from pipeline.cli import completion

    shell = shell or completion.shell_from_env()
    if shell is None:
        raise click.UsageError(f"give the shell ({', '.join(SHELLS)}): $SHELL names none of them")
    script = get_completion_class(shell)(build_cli(), {}, "soclake", COMPLETE_VAR).source()
    if not install:
        click.echo(script)
        return EXIT_OK
    for line in completion.install(shell, script):
        click.echo(line)
    return EXIT_OK


def build_cli() -> click.Group:
    """The whole command tree; each module's commands are imported when first used (:data:`LAZY`)."""
    import copy

    root = copy.copy(_root)
    root.commands = {}
    root.lazy = LAZY
    _finish(completion_command)
    root.add_command(completion_command)
    return root


def _walk(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name in group.list_commands(None):
        cmd = group.get_command(None, name)
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, prefix + (name,))


def commands(cli: click.Group | None = None) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command and group as (path, command): what the tests check for help texts."""
    return list(_walk(cli or build_cli()))


class _Defaults(dict):
    """The settings (file < environment) as Click's per-command defaults; flags still win. Click asks the
    root's map for the command it runs (``get(name)``): only that command's module is imported."""

    def __init__(self, cli: click.Group, defaults: dict):
        super().__init__({"metrics": defaults["metrics"]} if "metrics" in defaults else {})
        self.cli, self.defaults = cli, defaults

    def get(self, name, default=None):
        if name not in self and name in self.cli.list_commands(None):
            mine = _defaults_for(self.cli.get_command(None, name), self.defaults)
            if mine:
                self[name] = mine
        return super().get(name, default)


def _defaults_for(cmd: click.Command, defaults: dict) -> dict:
    if isinstance(cmd, click.Group):
        return {n: d for n in cmd.list_commands(None) if (d := _defaults_for(cmd.get_command(None, n), defaults))}
    return {p.name: defaults[p.name] for p in cmd.params if p.name in defaults and p.name not in ADDED}


def _prepare(argv: list[str]) -> tuple[click.Group, dict, dict]:
    """The CLI, its default map and context object from the config file and the environment."""
    from pipeline.ops.settings import config_path_from, flag_defaults, load_settings

    cli = build_cli()
    path = config_path_from(argv)
    try:
        settings = load_settings(path)
    except ConfigError:
        if any(a in ("-h", "--help") for a in argv):
            return cli, {}, {}  # help stays available with a broken config
        raise
    defaults = flag_defaults(settings, path)
    return cli, _Defaults(cli, defaults), {"settings_lists": {k: list(defaults.get(k) or []) for k in ADDED}}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The namespace a command would get for ``soclake ARGV`` (``.func`` is what it would call): for tests."""
    cli, default_map, obj = _prepare(list(argv))
    with cli.make_context("soclake", list(argv), default_map=default_map, obj={**obj, "parse_only": True}) as ctx:
        return cli.invoke(ctx)


def _usage_error(e: click.UsageError) -> str:
    ctx = e.ctx
    path = ctx.command_path if ctx is not None else "soclake"
    msg = " ".join(e.format_message().split())
    if isinstance(e, click.MissingParameter) and e.param is not None:
        kind = "option" if isinstance(e.param, click.Option) else "argument"
        name = e.param.opts[0] if kind == "option" else e.param.human_readable_name
        msg = f"the {kind} {name} is required"
    elif msg == "Missing command.":
        msg = "missing command"
    usage = " ".join(ctx.get_usage().split()) if ctx is not None else "Usage: soclake [OPTIONS] COMMAND [ARGS]..."
    return f"Error: {path}: {msg} ({usage}; see {path} --help)"


def _quiet_stdout() -> None:
    """After the reader of our stdout went away (``| head``): send the rest nowhere, end quietly."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (README.md lists them)."""
    # numpy (imported by pyarrow) starts OpenBLAS threads that spin for a while; soclake does no
    # linear algebra, and on a 2-core machine they took ~0.1 s of CPU from every ingest.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from botocore.exceptions import BotoCoreError, ClientError

    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get(COMPLETE_VAR):
        return build_cli().main(argv, prog_name="soclake", complete_var=COMPLETE_VAR, standalone_mode=True)
    debug = "--debug" in argv
    try:
        cli, default_map, obj = _prepare(argv)
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        try:
            with cli.make_context("soclake", argv, default_map=default_map, obj=obj) as ctx:
                code = cli.invoke(ctx)
        except click.exceptions.Exit as e:  # --help, --version
            code = e.exit_code
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return EXIT_OK if code is None else int(code)
    except click.UsageError as e:
        print(_usage_error(e), file=sys.stderr)
        return EXIT_USAGE
    except click.ClickException as e:  # e.g. a file Click could not open
        print(f"Error: {' '.join(e.format_message().split())}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # soclake alerts | head -1: the reader has what it wanted
        _quiet_stdout()
        return EXIT_OK
    except SoclakeError as e:
        if debug:
            traceback.print_exc()
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, UsageError) else EXIT_ERROR
    except (OSError, BotoCoreError, ClientError) as e:  # the environment, not a bug: still one line
        if debug:
            traceback.print_exc()
        print(f"Error: {one_line(e)} (--debug shows where)", file=sys.stderr)
        return EXIT_ERROR
    except (KeyboardInterrupt, click.Abort):
        print("Interrupted: nothing uncommitted is kept; rerun to continue where it stopped.", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """The ``soclake`` program: :func:`main`, then exit without the collector's last pass.

    Every command has closed what it owns by then; at exit the interpreter would still walk
    every object the imports made (pyarrow, DuckDB, pydantic, …) looking for cycles to free,
    ~50 ms of every run. Frozen objects are left to the operating system, which Python's exit
    already allows for (``__del__`` is not guaranteed to run at exit).
    """
    code = main()
    gc.freeze()
    sys.exit(code)
