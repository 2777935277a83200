"""Progress on a terminal, never when piped: backfill, forward, verify and report.

Each command runs as a real process twice: once with stderr on a pseudo-terminal (what a person
at a shell sees) and once with stderr piped (a log, a scheduler). The live line must be on the
terminal and nothing of it in the pipe; stdout (the summary) is the same in both.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from pipeline import cli

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOCLAKE_", "AWS_"))}
    return {**env, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "200",
            "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "us-east-1"}


def run(argv: list[str], *, tty: bool) -> tuple[int, str, str]:
    """``soclake ARGV`` with stderr on a pseudo-terminal (``tty``) or a pipe: (exit code, stdout, stderr)."""
    cmd = [sys.executable, "-m", "pipeline", *argv]
    if not tty:
        done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), stdin=subprocess.DEVNULL, timeout=300)
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    chunks: list[bytes] = []

    def drain():  # until every holder of the terminal (the command, Beam's workers) has closed it
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=_env()) as p:
        os.close(slave)
        out = p.stdout.read().decode()
        code = p.wait(timeout=300)
    reader.join(timeout=30)
    os.close(master)
    return code, out, b"".join(chunks).decode(errors="replace")


def check(argv: list[str], steps: list[str], code: int = 0) -> tuple[str, str]:
    """The steps appear on a terminal, with the terminal's controls; piped, none of it."""
    t_code, t_out, t_err = run(argv, tty=True)
    p_code, p_out, p_err = run(argv, tty=False)
    assert (t_code, p_code) == (code, code), (t_out, t_err, p_out, p_err)
    for step in steps:
        assert step in t_err, (step, t_err)
        assert step not in p_err, (step, p_err)
    assert "\x1b[" in t_err and "\x1b[" not in p_err  # a live line (cursor and colour), and plain text piped
    assert argv[0] + ":" not in p_err, p_err
    return t_out, p_out


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A small synthetic organisation with signed digests, ingested and detected: (source, keys file, lake)."""
    root = tmp_path_factory.mktemp("progress")
    src, keys, lake = root / "logs", root / "keys.json", root / "lake"
    assert cli.main(["synth", "--output", str(src), "--seed", "5", "--accounts", "1", "--regions", "us-east-1",
                     "--days", "1", "--events", "1500", "--scenarios", "all", "--public-keys-out", str(keys)]) == 0
    assert cli.main(["ingest", "--source", str(src), "--lake", str(lake), "--workers", "1"]) in (0, 2)
    assert cli.main(["detect", "--lake", str(lake)]) == 0
    return src, keys, lake


def test_report_shows_its_steps_on_a_terminal_only(archive, tmp_path):
    _, _, lake = archive
    t_out, p_out = check(["report", "--lake", str(lake), "--output", str(tmp_path / "r.html")],
                         ["report: querying alerts, incidents and events", "report: rendering the page"])
    assert t_out.startswith("Wrote ") and p_out.startswith("Wrote ")


def test_verify_shows_digests_read_and_files_hashed_on_a_terminal_only(archive, tmp_path):
    src, keys, _ = archive
    argv = ["verify", "--source", str(src), "--lake", str(tmp_path / "lake"), "--public-keys", str(keys),
            "--until", "2026-11-01", "--rehash", "--no-alerts"]
    t_out, p_out = check(argv, ["verify: reading digest files", "verify: hashing log files"])
    assert "digest files valid" in t_out and "digest files valid" in p_out


def test_forward_shows_each_sink_on_a_terminal_only(archive, tmp_path):
    _, _, lake = archive
    conf = tmp_path / "c.yml"
    conf.write_text(f"sinks:\n  - {{name: file, type: jsonl, path: {tmp_path / 'out.jsonl'}}}\n")
    t_out, _ = check(["forward", "--lake", str(lake), "--config", str(conf)], ["forward: reading alerts", "forward: → file"])
    assert "file: " in t_out and "delivered" in t_out  # the first run delivered (and showed the sink's batches)


def test_backfill_shows_the_job_on_a_terminal_only(archive, tmp_path):
    src, _, _ = archive

    def argv(lake):
        return ["backfill", "--source", str(src), "--lake", str(lake), "--direct_running_mode=in_memory"]

    code, out, err = run(argv(tmp_path / "lake"), tty=True)
    assert code in (0, 2), (out, err)
    assert "backfill: the DirectRunner job is listing, reading and writing" in err and "\x1b[" in err
    code, out, err = run(argv(tmp_path / "lake2"), tty=False)  # a fresh lake: the same work, piped
    assert code in (0, 2) and out.startswith("Backfill ") and (tmp_path / "lake2" / "cloudtrail").is_dir(), (out, err)
    assert "backfill:" not in err and "\x1b[" not in err


def test_compact_shows_the_partitions_on_a_terminal_only(tmp_path):
    from pipeline.lake import LocalStore
    from tests.archive import DirArchive
    from tests.test_compact import small_files

    lakes = []
    for name in ("tty", "pipe"):  # two lakes with the same small files: each run has work to do
        lake = tmp_path / name / "lake"
        small_files(DirArchive(tmp_path / name / "src"), LocalStore(lake), batches=4)
        lakes.append(lake)
    code, out, err = run(["compact", "--lake", str(lakes[0])], tty=True)
    assert code == 0 and out.startswith("compacted 3 of 3") and "compact: partitions 0/3" in err and "\x1b[" in err
    code, out, err = run(["compact", "--lake", str(lakes[1])], tty=False)
    assert code == 0 and out.startswith("compacted 3 of 3") and err == ""


def test_quiet_shows_nothing_live_even_on_a_terminal(archive, tmp_path):
    """--quiet, on every command with progress: the terminal gets no live line, the summary is unchanged."""
    src, keys, lake = archive
    conf = tmp_path / "c.yml"
    conf.write_text(f"sinks:\n  - {{name: file, type: jsonl, path: {tmp_path / 'out.jsonl'}}}\n")
    commands = {
        "report": ["report", "--lake", str(lake), "--output", str(tmp_path / "r.html")],
        "verify": ["verify", "--source", str(src), "--lake", str(tmp_path / "vlake"), "--public-keys", str(keys),
                   "--until", "2026-11-01", "--no-alerts"],
        "forward": ["forward", "--lake", str(lake), "--config", str(tmp_path / "c.yml")],
        "run": ["run", "--source", str(src), "--lake", str(tmp_path / "rlake"), "--workers", "1"],
    }
    for name, argv in commands.items():
        code, out, err = run([*argv, "--quiet"], tty=True)
        assert code in (0, 2) and out, (name, out, err)
        assert "\x1b[" not in err and f"{name}:" not in err, (name, err)
    assert "ingested" in out.lower() and "alerts" in out.lower()  # run still prints its summary
