"""Every error is one line naming the object or flag and the fix; exit codes stay plain.

0 ok, 1 error, 2 finished with quarantined objects (or a failed rule, or alerts left pending),
64 usage error, 130 interrupted. Commands run in-process through ``pipeline.cli.main``.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

from pipeline import aws
from pipeline.cli import commands, main, parse_args
from pipeline.errors import ConfigError

#: Commands that take --lake and create the lake when it does not exist yet.
LAKE_WRITERS = {"ingest": ["--source", "{tmp}/logs"], "run": ["--source", "{tmp}/logs"], "backfill": ["--source", "{tmp}/logs"],
                "watch": ["--queue", "http://127.0.0.1:9/123456789012/q"],
                "verify": ["--source", "{tmp}/logs"]}  # verify writes the key cache and alerts
#: Commands that take --lake and need it to exist (the arguments they need besides --lake).
LAKE_READERS = {
    "detect": [],
    "incidents": [],
    "incident": ["0123abcd"],
    "alerts": [],
    "alert": ["0123abcd", "ack"],
    "forward": ["--config", "{config}"],
    "hunt": ["access_key_activity", "--param", "access_key=AKIAIOSFODNN7EXAMPLE"],
    "query": ["SELECT 1"],
    "catalog": ["--output", "{tmp}/lake.duckdb"],
    "athena-ddl": [],
    "report": ["--output", "{tmp}/report.html"],
    "status": [],
    "compact": [],
}


@pytest.fixture(autouse=True)
def _fresh_aws_settings():
    yield
    aws.configure(aws.AwsSettings())


def _lake_commands():
    for path, command in commands():
        if len(path) == 1 and any(p.name == "lake" for p in command.params):
            yield path[0]


def run(capsys, *argv) -> tuple[int, str, str]:
    """``soclake ARGV`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *names: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "soclake.yml"
    path.write_text(f"sinks:\n  - {{name: file, type: jsonl, path: {tmp_path / 'alerts.jsonl'}}}\n")
    return path


@pytest.fixture
def lake(tmp_path) -> Path:
    (tmp_path / "lake").mkdir()
    return tmp_path / "lake"


# ---------------------------------------------------------------- the lake


def test_every_command_with_a_lake_is_classified():
    assert set(_lake_commands()) == set(LAKE_WRITERS) | set(LAKE_READERS), "new command with --lake: add it here"


@pytest.mark.parametrize("command", sorted(LAKE_READERS))
def test_a_lake_that_does_not_exist_is_an_error_for_every_reader(command, tmp_path, config, capsys):
    missing = tmp_path / "no-such-lake"
    extra = [a.format(tmp=tmp_path, config=config) for a in LAKE_READERS[command]]
    code, out, err = run(capsys, command, *extra, "--lake", missing)
    assert code == 1, (out, err)
    assert_one_line_error(err, str(missing))
    assert not missing.exists()


def test_forward_status_needs_the_lake_too(tmp_path, config, capsys):
    code, _, err = run(capsys, "forward", "--status", "--config", config, "--lake", tmp_path / "nope")
    assert code == 1 and "no lake at" in assert_one_line_error(err, str(tmp_path / "nope"))


@pytest.mark.parametrize("command", sorted(LAKE_WRITERS))
def test_a_lake_path_that_is_a_file_is_an_error(command, tmp_path, capsys):
    source = tmp_path / "logs"
    source.mkdir()
    not_a_lake = tmp_path / "lake.txt"
    not_a_lake.write_text("hello")
    extra = [a.format(tmp=tmp_path) for a in LAKE_WRITERS[command]]
    code, _, err = run(capsys, command, *extra, "--lake", not_a_lake)
    assert code == 1
    assert "is a file" in assert_one_line_error(err, str(not_a_lake))
    assert not_a_lake.read_text() == "hello"


def test_a_lake_below_a_file_is_an_error(tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    (tmp_path / "f").write_text("")
    code, _, err = run(capsys, "ingest", "--source", tmp_path / "logs", "--lake", tmp_path / "f" / "lake")
    assert code == 1 and "is a file" in assert_one_line_error(err, str(tmp_path / "f" / "lake"))


def _unwritable_dir(tmp_path) -> Path:
    """A folder this process cannot write to (root ignores permission bits: use a kernel filesystem)."""
    candidates = [tmp_path / "ro"]
    candidates[0].mkdir()
    candidates[0].chmod(0o555)
    candidates.append(Path("/sys/kernel"))
    for d in candidates:
        try:
            with tempfile.TemporaryFile(dir=d):
                pass
        except OSError:
            return d
    pytest.skip("no unwritable folder here")


@pytest.mark.parametrize("command", ["ingest", "detect"])
def test_an_unwritable_lake_is_an_error(command, tmp_path, capsys):
    ro = _unwritable_dir(tmp_path)
    (tmp_path / "logs").mkdir()
    for lake in ([ro / "lake", ro] if command == "ingest" else [ro]):
        argv = ["--source", tmp_path / "logs"] if command == "ingest" else []
        code, _, err = run(capsys, command, *argv, "--lake", lake)
        assert code == 1
        assert "cannot write to the lake" in assert_one_line_error(err, str(lake))
    (tmp_path / "ro").chmod(0o755)


def test_an_empty_existing_folder_is_a_lake_with_nothing_in_it(lake, capsys):
    code, out, err = run(capsys, "incidents", "--lake", lake)
    assert (code, out.strip(), err) == (0, "no incidents", "")


# ---------------------------------------------------------------- AWS


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: connecting is refused


def test_detect_with_the_s3_endpoint_down_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    code, _, err = run(capsys, "detect", "--lake", "s3://lake-bucket/prefix", "--endpoint-url", endpoint,
                       "--region", "us-east-1")
    assert code == 1
    line = assert_one_line_error(err, "s3://lake-bucket/prefix", endpoint)
    assert "--endpoint-url" in line
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("command", ["detect", "query", "incidents"])
def test_an_s3_lake_that_does_not_exist_is_an_error(command, moto_endpoint, bucket, s3, capsys):
    argv = ["SELECT 1"] if command == "query" else []
    for lake, why in ((f"s3://{bucket}/lake", "nothing under it"), ("s3://no-such-lake-bucket/lake", "does not exist")):
        code, _, err = run(capsys, command, *argv, "--lake", lake, "--endpoint-url", moto_endpoint)
        assert code == 1
        assert why in assert_one_line_error(err, lake)
    s3.put_object(Bucket=bucket, Key="lake/_state/ledger.json", Body=b"{}")
    code, _, err = run(capsys, command, *argv, "--lake", f"s3://{bucket}/lake", "--endpoint-url", moto_endpoint)
    assert "no lake" not in err


@pytest.fixture
def aws_files(tmp_path, monkeypatch):
    """An AWS config with a profile in eu-west-3, and no region in the environment."""
    (tmp_path / "aws-config").write_text("[profile paris]\nregion = eu-west-3\n")
    (tmp_path / "aws-credentials").write_text("[paris]\naws_access_key_id = AKIDPARIS\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("command", ["detect", "incidents", "query", "ingest"])
def test_an_unknown_profile_is_one_line_naming_it(command, aws_files, lake, tmp_path, capsys):
    argv = {"query": ["SELECT 1"], "ingest": ["--source", "s3://logs-bucket"]}.get(command, [])
    code, _, err = run(capsys, command, *argv, "--lake", lake, "--profile", "nosuchprofile")
    assert code == 1
    assert "--profile" in assert_one_line_error(err, "'nosuchprofile'")


def test_the_profiles_region_is_used_unless_region_is_given(aws_files):
    paris = aws.AwsSettings.from_env(profile="paris")
    assert aws.client("s3", paris).meta.region_name == "eu-west-3"
    assert aws.s3_filesystem(paris).region == "eu-west-3"  # what views reads an s3:// lake through
    aws.configure(paris)
    assert aws.s3_client().meta.region_name == "eu-west-3"
    flag = aws.AwsSettings.from_env(profile="paris", region="ap-south-1")
    assert aws.client("sqs", flag).meta.region_name == "ap-south-1"
    assert aws.s3_filesystem(flag).region == "ap-south-1"
    assert aws.client("s3", aws.AwsSettings()).meta.region_name == "us-east-1"  # nothing set anywhere


# ---------------------------------------------------------------- flags: usage errors exit 64


@pytest.mark.parametrize("flag, value", [("--workers", "-1"), ("--fetch-threads", "-2"), ("--buffer-mb", "0"),
                                         ("--commit-mb", "-5"), ("--workers", "many")])
def test_numeric_flags_are_checked_by_argparse(flag, value, tmp_path, capsys):
    code, _, err = run(capsys, "ingest", "--source", tmp_path, "--lake", tmp_path / "lake", flag, value)
    assert code == 64
    assert_one_line_error(err, flag, repr(value), "soclake ingest --help")
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize("argv", [["synth", "--output", "x", "--days", "0"], ["report", "--max-incidents", "-1"],
                                  ["hunt", "--limit", "-3"], ["query", "SELECT 1", "--limit", "-1"],
                                  ["backfill", "--source", "x", "--lake", "y", "--shard-mb", "0"]])
def test_other_numeric_flags_too(argv, capsys):
    code, _, err = run(capsys, *argv)
    assert code == 64 and assert_one_line_error(err, argv[-2])


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["ingest", "--lake", "x"], ["detect", "--no-such-flag"],
                                  ["detect", "--since", "yesterday"]])
def test_usage_errors_exit_64_not_2(argv, capsys):
    code, out, err = run(capsys, *argv)
    assert code == 64 and out == ""
    assert_one_line_error(err, "soclake")


@pytest.mark.parametrize("argv", [
    ["ingest", "--source", "{tmp}", "--lake", "{tmp}/lake", "--since", "2026-11-05", "--until", "2026-11-01"],
    ["backfill", "--source", "{tmp}", "--lake", "{tmp}/lake", "--since", "2026-11-05", "--until", "2026-11-01"],
    ["detect", "--lake", "{tmp}", "--since", "2026-11-05T10:00Z", "--until", "2026-11-05T09:00Z"],
    ["detect", "--lake", "{tmp}", "--since", "2026-11-05", "--until", "2026-11-05"],
])
def test_since_after_until_is_a_usage_error(argv, tmp_path, capsys):
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 64 and out == ""
    assert_one_line_error(err, "--since", "--until")
    assert not (tmp_path / "lake").exists()


def test_commit_mb_0_commits_after_every_object(tmp_path, capsys):
    args = parse_args(["ingest", "--source", "x", "--lake", "y", "--commit-mb", "0"])
    assert args.commit_mb == 0


def test_since_equal_to_until_lists_that_one_day(archive, tmp_path, capsys):
    from tests.archive import ct_bytes, ct_key, records_for

    for day in ("2026-11-04", "2026-11-05"):
        archive.put(ct_key(day=day), ct_bytes(records_for(3, day=day)))
    code, out, err = run(capsys, "ingest", "--source", archive.root, "--lake", tmp_path / "lake", "--json",
                         "--since", "2026-11-05", "--until", "2026-11-05", "--workers", "1")
    assert code == 0, err
    assert '"ingested_objects": 1' in out


# ---------------------------------------------------------------- rules, hunts, config


@pytest.mark.parametrize("make", ["empty", "missing", "file", "pattern"])
def test_a_rules_folder_that_holds_no_rules_is_an_error(make, lake, tmp_path, capsys):
    folder = tmp_path / "my-rules"
    if make == "empty":
        folder.mkdir()
        (folder / "README.md").write_text("rules go here")
    elif make == "file":
        folder.write_text("id: x\n")
    elif make == "pattern":
        folder = tmp_path / "my-rules" / "*.yml"
    for argv in (["detect", "--lake", lake], ["rules", "validate"], ["rules", "list"]):
        code, _, err = run(capsys, *argv, "--rules", folder)
        assert code == 1, argv
        assert_one_line_error(err, "--rules", str(folder))


def test_soclake_rules_env_is_checked_like_the_flag(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SOCLAKE_RULES", str(tmp_path / "typo"))
    code, _, err = run(capsys, "rules", "validate")
    assert code == 1 and assert_one_line_error(err, "SOCLAKE_RULES", str(tmp_path / "typo"))


def test_a_hunts_folder_that_holds_no_hunts_is_an_error(tmp_path, capsys):
    (tmp_path / "h").mkdir()
    code, _, err = run(capsys, "hunt", "--list", "--hunts", tmp_path / "h")
    assert code == 1 and assert_one_line_error(err, "--hunts", str(tmp_path / "h"))


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "sinks: []\n", "lake: ./lake\n"])
def test_an_empty_config_is_an_error(text, lake, tmp_path, capsys):
    path = tmp_path / "empty.yml"
    path.write_text(text)
    for argv in (["forward"], ["forward", "--status"]):
        code, _, err = run(capsys, *argv, "--config", path, "--lake", lake)
        assert code == 1
        assert "sinks" in assert_one_line_error(err, str(path))


SLACK_URL = "https://hooks.slack.com/services/T0001/B0002/NotARealSecret1234"
HEC_TOKEN = "5a1e9d9e-1111-2222-3333-PLAINTEXTTOKEN"


@pytest.mark.parametrize("body, key, line", [
    (f"  - {{name: hec, type: splunk_hec, url: 'https://splunk.example.com:8088', token: '{HEC_TOKEN}'}}\n",
     "sinks[0].token", 2),
    (f"  - name: slack\n    type: webhook\n    url: {SLACK_URL}\n    chanel: '#sec'\n", "sinks[0].chanel", 5),
    (f"  - name: slack\n    type: webhook\n    url: {SLACK_URL}\n    headers: {{Authorization: [{HEC_TOKEN}]}}\n",
     "sinks[0].headers", 5),
    (f"  - name: x\n    type: webhook\n    url: {SLACK_URL}\n  token: {HEC_TOKEN}\n", None, 5),  # bad YAML
])
def test_config_errors_never_print_a_secret(body, key, line, lake, tmp_path, capsys):
    path = tmp_path / "soclake.yml"
    path.write_text("sinks:\n" + body)
    with pytest.raises(ConfigError) as e:
        from pipeline.forward.config import load_config

        load_config(path)
    msg = str(e.value)
    assert HEC_TOKEN not in msg and SLACK_URL not in msg and "NotARealSecret" not in msg
    assert "input_value" not in msg and f"{path}:{line}:" in msg
    if key:
        assert key in msg
    code, _, err = run(capsys, "forward", "--config", path, "--lake", lake)
    assert code == 1 and HEC_TOKEN not in err and SLACK_URL not in err
    assert_one_line_error(err, str(path))


def test_run_checks_its_config_before_ingesting(archive, tmp_path, capsys):
    from tests.archive import ct_bytes, ct_key, records_for

    archive.put(ct_key(), ct_bytes(records_for(3)))
    (tmp_path / "empty.yml").write_text("")
    code, _, err = run(capsys, "run", "--source", archive.root, "--lake", tmp_path / "lake", "--json",
                       "--config", tmp_path / "empty.yml")
    assert code == 1 and assert_one_line_error(err, str(tmp_path / "empty.yml"))
    assert not (tmp_path / "lake").exists()  # nothing ingested


def test_retry_after_is_honoured_beyond_max_delay_up_to_its_own_ceiling():
    from pipeline.forward.base import SinkConfig
    from pipeline.forward.deliver import _backoff

    cfg = SinkConfig(name="s", type="jsonl", retry={"max_delay": 30})
    assert cfg.retry.max_retry_after == 300  # documented default: 5 minutes
    assert _backoff(0, cfg, 120) == 120
    assert _backoff(0, cfg, 86400) == 300
    assert _backoff(3, cfg, None) <= 30
    short = SinkConfig(name="s", type="jsonl", retry={"max_delay": 30, "max_retry_after": 60})
    assert _backoff(0, short, 120) == 60


# ---------------------------------------------------------------- everything else that used to trace back


def test_an_unwritable_output_is_one_line(tmp_path, capsys):
    target = tmp_path / "no" / "such" / "schema.md"
    code, _, err = run(capsys, "schema", "--output", target)
    assert code == 1 and assert_one_line_error(err, str(target))


def test_debug_shows_the_traceback_of_an_environment_error(tmp_path, capsys):
    target = tmp_path / "no" / "such" / "schema.md"
    code, _, err = run(capsys, "--debug", "schema", "--output", target)
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith("Error: ")


def test_main_module_exit_code_is_64_for_usage(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pipeline", "ingest", "--workers", "-1", "--source", "x",
                           "--lake", str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert done.returncode == 64 and done.stderr.count("\n") == 1 and "--workers" in done.stderr
