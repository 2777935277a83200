"""One CLI (Click): typo suggestions, usage on error, completion, shared flag types, one table renderer,
quiet closed pipes, and no command module importing the top-level CLI."""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main, parse_args
from pipeline.cli.options import parse_date, parse_time
from pipeline.tables import emit, rfc3339, table_text

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_typo_in_a_command_suggests_the_close_ones_with_the_usage(capsys):
    code, out, err = run(capsys, "alertz")
    assert code == 64 and out == ""
    assert "Did you mean one of: 'alert', 'alerts'?" in err and "Usage: soclake [OPTIONS] COMMAND" in err


def test_a_typo_in_an_option_suggests_it_with_the_subcommands_usage(capsys):
    code, _, err = run(capsys, "ingest", "--lak", "x")
    assert code == 64
    assert "Did you mean '--lake'?" in err and "Usage: soclake ingest [OPTIONS]" in err
    assert "see soclake ingest --help" in err and len(err.strip().splitlines()) == 1


def test_shell_completion_script_and_answers():
    script = subprocess.run([sys.executable, "-m", "pipeline", "completion", "bash"], capture_output=True, text=True)
    assert script.returncode == 0 and "_SOCLAKE_COMPLETE" in script.stdout and "complete " in script.stdout
    env = {"_SOCLAKE_COMPLETE": "bash_complete", "COMP_WORDS": "soclake ale", "COMP_CWORD": "1", "PATH": ""}
    done = subprocess.run([sys.executable, "-m", "pipeline"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.stdout.split() == ["plain,alerts", "plain,alert"]
    env["COMP_WORDS"], env["COMP_CWORD"] = "soclake alerts --sev", "2"
    done = subprocess.run([sys.executable, "-m", "pipeline"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert "plain,--severity" in done.stdout.split()


def test_a_closed_pipe_ends_quietly_with_exit_0():
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "rules", "list", "--format", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # like `| head -0`: the reader is gone before the first write
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == ""


NOW = dt.datetime(2026, 11, 5, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("text, want", [
    ("2026-11-05", dt.datetime(2026, 11, 5, tzinfo=dt.UTC)),
    ("2026-11-05T10:00:00Z", dt.datetime(2026, 11, 5, 10, tzinfo=dt.UTC)),
    ("2026-11-05T10:00Z", dt.datetime(2026, 11, 5, 10, tzinfo=dt.UTC)),
    ("2026-11-05T12:00:00+02:00", dt.datetime(2026, 11, 5, 10, tzinfo=dt.UTC)),
    ("24h", NOW - dt.timedelta(hours=24)),
    ("7d", NOW - dt.timedelta(days=7)),
    ("30m", NOW - dt.timedelta(minutes=30)),
])
def test_since_and_until_take_dates_rfc3339_times_and_spans(text, want):
    got = parse_time(text, now=NOW)
    assert got == want and got.tzinfo is not None


def test_date_flags_take_spans_too():
    assert parse_date("2026-11-05") == dt.date(2026, 11, 5)
    assert parse_date("2026-11-05T23:30:00-02:00") == dt.date(2026, 11, 6)  # the UTC day
    assert parse_date("1d") == (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date()
    with pytest.raises(ValueError, match="span back from now"):
        parse_date("yesterday")


def test_every_time_window_flag_takes_the_same_forms(tmp_path):
    for argv in (["ingest", "--source", "x", "--lake", "y"], ["backfill", "--source", "x", "--lake", "y"],
                 ["verify", "--source", "x", "--lake", "y"]):
        args = parse_args([*argv, "--since", "7d", "--until", "2026-12-31T00:00:00Z"])
        assert isinstance(args.since, dt.date) and args.until == dt.date(2026, 12, 31), argv
    for argv in (["detect"], ["alerts"], ["incidents"], ["report"], ["rules", "profile"]):
        args = parse_args([*argv, "--lake", str(tmp_path), "--since", "24h"])
        assert isinstance(args.since, dt.datetime) and args.since.tzinfo is not None, argv


def test_every_listing_command_has_format_and_the_json_alias(tmp_path):
    for argv in (["alerts"], ["incidents"], ["rules", "list"], ["hunt", "--list"], ["query", "SELECT 1"]):
        base = argv if argv[0] == "rules" else [*argv, "--lake", str(tmp_path)]
        for fmt in ("table", "json", "jsonl", "csv"):
            assert parse_args([*base, "--format", fmt]).format == fmt, (argv, fmt)
        assert parse_args([*base, "--json"]).format == "json", argv


ROWS = [{"id": "0123456789abcdef", "when": dt.datetime(2026, 11, 5, 10, 0, 7, tzinfo=dt.UTC),
         "tags": ["a", "b"], "title": "Root console sign-in without MFA " * 4}]
COLUMNS = [("id", "ID", lambda v: v[:12]), ("when", "WHEN", rfc3339), ("title", "TITLE")]


def test_formats_carry_rfc3339_times(capsys):
    emit(ROWS, "json", COLUMNS)
    assert json.loads(capsys.readouterr().out)[0]["when"] == "2026-11-05T10:00:07Z"
    emit(ROWS, "jsonl", COLUMNS)
    assert json.loads(capsys.readouterr().out)["tags"] == ["a", "b"]
    emit(ROWS, "csv", COLUMNS)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "id,when,tags,title" and lines[1].startswith('0123456789abcdef,2026-11-05T10:00:07Z,"[""a"",""b""]"')
    emit([], "table", COLUMNS, empty="no alerts")
    assert capsys.readouterr().out == "no alerts\n"
    emit([], "csv", COLUMNS)  # no rows: still the header, so a CSV reader sees the columns
    assert capsys.readouterr().out == "id,when,title\n"


def test_the_table_fits_columns_and_is_plain_when_piped(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "60")
    text = table_text(ROWS, COLUMNS)
    assert all(len(line) <= 60 for line in text.splitlines()), text
    assert "0123456789ab" in text and "2026-11-05T10:00:07Z" in text and "…" in text  # the title gives way
    assert "\x1b[" not in text  # no colour codes when not a terminal
    monkeypatch.delenv("COLUMNS")
    assert ("Root console sign-in without MFA " * 4).strip() in table_text(ROWS, COLUMNS)  # piped: nothing cut


def test_no_command_module_imports_the_top_level_cli():
    offenders = []
    for path in (ROOT / "pipeline").rglob("*.py"):
        if path.relative_to(ROOT).as_posix() in ("pipeline/cli/__init__.py", "pipeline/__main__.py"):
            continue  # the program's entry points
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "pipeline.cli":
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_config_file_still_gives_every_commands_defaults(tmp_path, monkeypatch):
    cfg = tmp_path / "soclake.yml"
    cfg.write_text(f"lake: {tmp_path}\nsource: {tmp_path}/logs\ndetect: {{rules: [{tmp_path}/r], lookback: 6h}}\n")
    monkeypatch.delenv("SOCLAKE_LAKE", raising=False)
    args = parse_args(["--config", str(cfg), "ingest"])  # --source comes from the file
    assert (args.lake, args.source) == (str(tmp_path), f"{tmp_path}/logs")
    args = parse_args(["detect", "--config", str(cfg), "--rules", "more"])
    assert args.rules == [f"{tmp_path}/r", "more"] and args.lookback == dt.timedelta(hours=6)


def test_query_writes_rfc3339_times_in_every_text_format(tmp_path, capsys):
    sql = "SELECT TIMESTAMPTZ '2026-11-05 12:00:07.5+02' AS t, TIMESTAMP '2026-11-05 10:00:00' AS u"
    for fmt, want in (("jsonl", '{"t":"2026-11-05T10:00:07.5Z","u":"2026-11-05T10:00:00Z"}'),
                      ("csv", "t,u\n2026-11-05T10:00:07.5Z,2026-11-05T10:00:00Z")):
        code, out, _ = run(capsys, "query", sql, "--lake", tmp_path, "--format", fmt)
        assert code == 0 and out.strip().replace("\r", "") == want, fmt
    code, out, _ = run(capsys, "query", sql, "--lake", tmp_path, "--json")
    assert json.loads(out) == [{"t": "2026-11-05T10:00:07.5Z", "u": "2026-11-05T10:00:00Z"}]


def test_completion_install_writes_the_script_once_and_bash_completes_with_it(tmp_path):
    """--install (shell from $SHELL): script under XDG data, one line in ~/.bashrc however often it runs;
    a real bash that sources ~/.bashrc then completes `soclake ale`."""
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    home.mkdir()
    bin_dir.mkdir()
    (home / ".bashrc").write_text("alias ll='ls -l'")  # no newline at the end: the line still goes on its own
    shim = bin_dir / "soclake"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m pipeline "$@"\n')
    shim.chmod(0o755)
    env = {"HOME": str(home), "SHELL": "/bin/bash", "PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "pipeline", "completion", "--install"], capture_output=True,
                              text=True, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stderr
    script = home / ".local" / "share" / "soclake" / "completion.bash"
    assert "_SOCLAKE_COMPLETE" in script.read_text() and "already loads it" in done.stdout
    rc = (home / ".bashrc").read_text().splitlines()
    assert rc[0] == "alias ll='ls -l'" and sum("soclake completion" in x for x in rc) == 1
    probe = ('. ~/.bashrc; COMP_WORDS=(soclake ale); COMP_CWORD=1; '
             'f=$(complete -p soclake | sed "s/.*-F \\([^ ]*\\) .*/\\1/"); $f soclake ale soclake; echo "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert sorted(done.stdout.split()) == ["alert", "alerts"], done.stderr
    fish = subprocess.run([sys.executable, "-m", "pipeline", "completion", "fish", "--install"], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    assert fish.returncode == 0 and (home / ".config" / "fish" / "completions" / "soclake.fish").is_file()
    none = subprocess.run([sys.executable, "-m", "pipeline", "completion", "--install"], capture_output=True, text=True,
                          env={**env, "SHELL": "/bin/tcsh"}, cwd=ROOT)
    assert none.returncode == 64 and "give the shell" in none.stderr


# Drives an interactive zsh on a pseudo-terminal (zsh's own zpty): compinit, ~/.zshrc (which sources the
# installed script), then `soclake ale` and two TABs; prints what the terminal showed once both entries are listed.
_ZSH_PROBE = r'''
zmodload zsh/zpty
zpty -b z 'zsh -f -i'
zpty -w z 'PROMPT="> "; autoload -U compinit; compinit -u; source ~/.zshrc'
zpty -w -n z $'soclake ale\t\t'
out=""; end=$(( SECONDS + 40 ))
while (( SECONDS < end )) && [[ $out != *"triage queue"* || $out != *"show one alert"* ]]; do
  zpty -r -t z chunk && out+=$chunk || sleep 0.1
done
print -r -- "$out"
zpty -d z
'''


def _shim_home(tmp_path, shell: str) -> dict:
    """A HOME with `soclake` on PATH (a shim running this checkout) and the completion installed for `shell`."""
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    home.mkdir()
    bin_dir.mkdir()
    shim = bin_dir / "soclake"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m pipeline "$@"\n')
    shim.chmod(0o755)
    env = {"HOME": str(home), "SHELL": f"/usr/bin/{shell}", "PATH": f"{bin_dir}:/usr/bin:/bin", "TERM": "xterm"}
    done = subprocess.run([sys.executable, "-m", "pipeline", "completion", "--install"], capture_output=True,
                          text=True, env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return env


def test_zsh_completes_with_the_installed_script(tmp_path):
    """A real interactive zsh (compinit, then ~/.zshrc as --install left it) completes `soclake ale<TAB>` to
    `alert` and lists both commands with their help."""
    env = _shim_home(tmp_path, "zsh")
    done = subprocess.run(["zsh", "-f", "-c", _ZSH_PROBE], capture_output=True, text=True, env=env, timeout=90)
    shown = done.stdout
    assert "soclake alert" in shown and "alerts" in shown, shown
    assert "triage queue" in shown and "show one alert" in shown, shown


def test_fish_completes_with_the_installed_script(tmp_path):
    """fish loads the installed file from its completions folder by itself and answers with descriptions."""
    env = _shim_home(tmp_path, "fish")
    done = subprocess.run(["fish", "-c", 'complete -C "soclake ale"; complete -C "soclake alerts --sev"'],
                          capture_output=True, text=True, env=env, timeout=60)
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert sorted(x[0] for x in lines[:2]) == ["alert", "alerts"], done.stdout + done.stderr
    assert any(x[0] == "--severity" for x in lines), done.stdout
    assert all(len(x) == 2 and x[1] for x in lines[:2])  # each with its description


def test_the_detect_summary_names_its_window_in_rfc3339(tmp_path, capsys):
    src, lake = tmp_path / "src", tmp_path / "lake"
    assert run(capsys, "synth", "--output", src, "--accounts", "1", "--regions", "us-east-1", "--days", "1",
               "--events", "300")[0] == 0
    assert run(capsys, "ingest", "--source", src, "--lake", lake, "--workers", "1", "--quiet")[0] == 0
    code, out, _ = run(capsys, "detect", "--lake", lake, "--quiet")
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"
    assert code == 0 and re.match(rf"Detection over {stamp} → {stamp}: ", out), out


def test_commands_are_imported_only_when_used():
    """--version and a completion import no command module; LAZY names each command of each module once."""
    import importlib
    import pkgutil

    import pipeline.cli as cli_pkg
    from pipeline.cli import LAZY, build_cli

    probe = ("import sys; from pipeline.cli import main; main(['--version']); "
             "print(sorted(m for m in sys.modules if m.startswith('pipeline.cli.') and m != 'pipeline.cli.completion'))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    defined = {}
    for info in pkgutil.iter_modules(cli_pkg.__path__):
        module = importlib.import_module(f"pipeline.cli.{info.name}")
        for cmd in getattr(module, "COMMANDS", []):
            defined[cmd.name] = info.name
    assert defined == LAZY
    assert build_cli().list_commands(None) == [*LAZY, "completion"]
