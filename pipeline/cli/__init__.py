"""The ``soclake`` command: assembles the command groups (Click) and turns errors into exit codes.

Every command lives in this package, one module per command or group (their shared flags in
``pipeline.cli.options``); the stages they call (``ingest``, ``detect``, ``analyst``, ``beam``, …) never
import it. Nothing here is imported by the command modules.
Exit codes (README.md): 0 ok, 1 error, 2 finished but quarantined/failed/pending, 64 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Iterator

import click

from pipeline import __version__
from pipeline.cli.completion import SHELLS
from pipeline.errors import ConfigError, SoclakeError, UsageError
from pipeline.options import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, one_line

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "build_cli", "commands", "main", "parse_args"]

COMPLETE_VAR = "_SOCLAKE_COMPLETE"
CONFIG_HELP = "config file (env SOCLAKE_CONFIG): settings for every command; flags override it"
EPILOG = ("Exit codes: 0 ok, 1 error, 2 finished but some objects were quarantined or unreadable (or a rule "
          "failed, or alerts were left pending or parked), 64 usage error, 130 interrupted. "
          f"Shell completion: soclake completion --install, or eval \"$({COMPLETE_VAR}=bash_source soclake)\" "
          "(zsh_source, fish_source), or soclake completion SHELL.")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
#: Repeatable flags whose values add to the config file's list instead of replacing it.
ADDED = ("rules", "ip_db")


class Group(click.Group):
    """Commands listed in the order they were added (the order of a day's work), not alphabetically."""

    def list_commands(self, ctx):
        return list(self.commands)


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
    """The whole command tree; each module contributes its commands (lazy imports keep start-up fast)."""
    import copy

    from pipeline.cli import athena, backfill, catalog, deploy_glue, hunts, query, report
    from pipeline.cli import batch as cli_batch
    from pipeline.cli import enrich as cli_enrich
    from pipeline.cli import ops as cli_ops
    from pipeline.cli import rules as rule_commands
    from pipeline.cli import triage as cli_triage
    from pipeline.cli import verify as integrity_commands
    from pipeline.cli import watch as watch_commands

    root = copy.copy(_root)
    root.commands = {}
    batch = {c.name: c for c in cli_batch.COMMANDS}
    order = [batch["ingest"], batch["synth"], batch["schema"], *rule_commands.COMMANDS,
             *integrity_commands.COMMANDS, batch["detect"], *cli_triage.COMMANDS, batch["forward"],
             *hunts.COMMANDS, *query.COMMANDS, *backfill.COMMANDS, *catalog.COMMANDS, *athena.COMMANDS, *deploy_glue.COMMANDS,
             *report.COMMANDS, *cli_enrich.COMMANDS, *cli_ops.COMMANDS, *watch_commands.COMMANDS, batch["run"], completion_command]
    for cmd in order:
        root.add_command(cmd)
    for _, cmd in _walk(root):
        if not isinstance(cmd, click.Group) and not any(p.name == "config" for p in cmd.params):
            cmd.params.append(click.Option(["--config"], envvar="SOCLAKE_CONFIG", help=CONFIG_HELP))
        cmd.context_settings = {**CONTEXT, **cmd.context_settings}
    return root


def _walk(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, prefix + (name,))


def commands(cli: click.Group | None = None) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command and group as (path, command): what the tests check for help texts."""
    return list(_walk(cli or build_cli()))


def _default_map(cli: click.Group, defaults: dict) -> dict:
    """The settings (file < environment) as Click's per-command defaults; flags still win."""
    out: dict = {"metrics": defaults["metrics"]} if "metrics" in defaults else {}

    def fill(group, into):
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                fill(cmd, into.setdefault(name, {}))
            else:
                mine = {p.name: defaults[p.name] for p in cmd.params if p.name in defaults and p.name not in ADDED}
                if mine:
                    into[name] = mine

    fill(cli, out)
    return out


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
    return cli, _default_map(cli, defaults), {"settings_lists": {k: list(defaults.get(k) or []) for k in ADDED}}


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
