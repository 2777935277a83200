"""The command line: every command documents itself; errors are one plain line."""

import subprocess
import sys

import click
import pytest

from pipeline.cli import commands, main

COMMANDS = commands()


def test_the_commands_users_expect_exist():
    names = {" ".join(c) for c, _ in COMMANDS}
    assert {"ingest", "synth", "schema", "detect", "run", "rules list", "rules validate", "rules test"} <= names


@pytest.mark.parametrize("path, command", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_and_option_has_help(path, command):
    assert command.help or command.short_help, f"soclake {' '.join(path)} has no help"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"soclake {' '.join(path)}: option {param.opts} has no help"
        else:  # Click arguments carry no help of their own: the command's help names them
            names = (param.metavar or param.name).strip("[].").split("|")
            assert any(n.upper() in command.help.upper() for n in names), f"soclake {' '.join(path)}: {param.name}"


def test_help_runs_for_every_command(capsys):
    for path, _ in COMMANDS:
        assert main([*path, "--help"]) == 0
        assert f"Usage: soclake {' '.join(path)}" in capsys.readouterr().out


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    cmd = [sys.executable, "-m", "pipeline", "ingest", "--source", str(tmp_path / "nope"), "--lake", str(tmp_path / "l")]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 1 and plain.stderr.startswith("Error: ") and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "pipeline", "--debug", *cmd[3:]], capture_output=True, text=True)
    assert "Traceback" in debug.stderr and debug.returncode == 1


def test_rules_test_prints_the_plain_closing_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipeline", "rules", "test", "root_console_login"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "3 passed, 0 failed"


def test_docs_schema_md_is_generated_and_current():
    from pathlib import Path

    from pipeline.docs import schema_markdown

    doc = Path(__file__).resolve().parent.parent / "docs" / "schema.md"
    assert doc.read_text() == schema_markdown(), "docs/schema.md is stale: run `soclake schema --output docs/schema.md`"
