"""Operations: run summaries, ``soclake status``, EMF metrics, the one config file."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest

from pipeline.cli import main, parse_args
from pipeline.ops import metrics
from tests.archive import ct_bytes, ct_key, records_for

NOW = dt.datetime.now(dt.UTC)


def _fresh_archive(archive, hours_ago=0.5):
    t = NOW - dt.timedelta(hours=hours_ago)
    day, hour = t.strftime("%Y-%m-%d"), t.hour
    for account, region in (("111111111111", "us-east-1"), ("222222222222", "eu-west-1")):
        archive.put(ct_key(account, region, day, f"{hour:02d}00", "a"), ct_bytes(records_for(5, account, region, day, hour)))
    old = (NOW - dt.timedelta(days=3)).strftime("%Y-%m-%d")
    archive.put(ct_key("333333333333", "us-east-1", old, "1000", "b"), ct_bytes(records_for(3, "333333333333", "us-east-1", old)))
    archive.put(ct_key("111111111111", "us-east-1", day, f"{hour:02d}05", "bad"), b"not gzip at all")


def _status(lake, capsys, *extra):
    capsys.readouterr()
    code = main(["status", "--lake", str(lake), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_status_after_a_run_names_sources_runs_quarantine_and_stale_sources(archive, tmp_path, capsys):
    _fresh_archive(archive)
    lake = tmp_path / "lake"
    assert main(["run", "--source", str(archive.root), "--lake", str(lake), "--json", "--workers", "1"]) == 2
    code, st = _status(lake, capsys)
    assert code == 0 and st["healthy"]  # no --max-lag: nothing is judged stale
    by = {(s["account"], s["region"]): s for s in st["sources"] if s["service"] == "cloudtrail"}
    assert set(by) == {("111111111111", "us-east-1"), ("222222222222", "eu-west-1"), ("333333333333", "us-east-1")}
    assert by[("111111111111", "us-east-1")]["objects"] == 2 and by[("111111111111", "us-east-1")]["quarantined"] == 1
    assert by[("222222222222", "eu-west-1")]["newest_event"] and by[("222222222222", "eu-west-1")]["lag_seconds"] < 7200
    assert st["quarantined"][0]["object"].endswith("Z_bad.json.gz")
    assert len(st["quarantined"]) == 1 and "gzip" in st["quarantined"][0]["reason"].lower()
    assert st["runs"]["ingest"]["last"]["outcome"] == "partial"  # one object quarantined
    assert st["runs"]["ingest"]["last"]["objects_quarantined"] == 1
    assert st["runs"]["detect"]["last"]["outcome"] == "ok"
    assert st["runs"]["forward"] == {}

    code, st = _status(lake, capsys, "--max-lag", "2h")
    assert code == 2 and not st["healthy"]
    assert [(s["account"], s["stale"]) for s in st["sources"] if s["stale"]] == [("333333333333", True)]
    assert _status(lake, capsys, "--max-lag", "4d")[0] == 0

    capsys.readouterr()
    assert main(["status", "--lake", str(lake), "--max-lag", "2h"]) == 2
    text = capsys.readouterr().out
    assert "STALE: 1 source(s)" in text and "ingest   partial" in text and "Quarantined objects: 1" in text


RFC3339 = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\b")
SPACED = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d")  # the old "YYYY-MM-DD HH:MM"


def test_status_formats_share_the_flag_and_print_rfc3339_times(archive, tmp_path, capsys):
    _fresh_archive(archive)
    lake = tmp_path / "lake"
    assert main(["run", "--source", str(archive.root), "--lake", str(lake), "--json", "--workers", "1"]) == 2
    capsys.readouterr()
    assert main(["status", "--lake", str(lake), "--format", "table"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Lake {lake} at ") and RFC3339.search(text.splitlines()[0]) and not SPACED.search(text)
    header = next(line for line in text.splitlines() if "NEWEST EVENT" in line)
    row = next(line for line in text.splitlines() if "222222222222" in line)
    assert header.split()[:3] == ["SOURCE", "ACCOUNT", "REGION"] and len(RFC3339.findall(row)) == 2
    assert re.search(r"ingest +partial +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+s ago", text), text
    assert main(["status", "--lake", str(lake), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {(r["service"], r["account"]) for r in rows} >= {("cloudtrail", "111111111111"), ("cloudtrail", "333333333333")}
    assert all(RFC3339.fullmatch(r["newest_event"]) for r in rows if r["newest_event"])
    assert main(["status", "--lake", str(lake), "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(rows) and all(x["state"] == "ok" for x in lines)
    code, st = _status(lake, capsys)  # --json: the whole document, times with Z
    assert code == 0 and st["now"].endswith("Z") and RFC3339.fullmatch(st["sources"][0]["newest_object_time"])


def test_status_of_a_missing_lake_is_an_error(tmp_path, capsys):
    assert main(["status", "--lake", str(tmp_path / "nope")]) == 1
    assert "no lake at" in capsys.readouterr().err


def test_a_failed_run_is_recorded_with_its_error_and_the_last_ok_run_kept(archive, tmp_path, capsys):
    _fresh_archive(archive)
    lake = tmp_path / "lake"
    assert main(["detect", "--lake", str(tmp_path), "--json"]) in (0, 2)  # any folder: an empty lake
    assert main(["ingest", "--source", str(archive.root), "--lake", str(lake), "--json", "--workers", "1"]) == 2
    assert main(["detect", "--lake", str(lake), "--json"]) == 0
    assert main(["detect", "--lake", str(lake), "--rules", str(tmp_path / "no-such-rules")]) == 1
    _, st = _status(lake, capsys)
    det = st["runs"]["detect"]
    assert det["last"]["outcome"] == "error" and "no-such-rules" in det["last"]["error"]
    assert det["last_ok"]["outcome"] == "ok" and det["runs"] == 2


def test_forward_runs_and_outbox_counts_show_in_status(archive, tmp_path, capsys):
    _fresh_archive(archive)
    lake, out = tmp_path / "lake", tmp_path / "alerts.jsonl"
    cfg = tmp_path / "soclake.yml"
    cfg.write_text(f"sinks:\n  - name: archive\n    type: jsonl\n    path: {out}\n")
    main(["run", "--source", str(archive.root), "--lake", str(lake), "--json", "--workers", "1"])
    assert main(["forward", "--lake", str(lake), "--config", str(cfg), "--json"]) == 0
    _, st = _status(lake, capsys)
    fwd = st["runs"]["forward"]["last"]
    assert fwd["outcome"] == "ok" and fwd["sinks"]["archive"]["left"] == 0
    assert st["sinks"][0]["sink"] == "archive" and st["sinks"][0]["parked"] == 0 and st["sinks"][0]["pending"] == 0
    _, st = _status(lake, capsys, "--config", str(cfg))
    assert st["sinks"][0]["pending"] == 0 and st["sinks"][0]["delivered"] == st["sinks"][0]["routed"]


def test_emf_lines_only_when_asked(archive, tmp_path, capsys, monkeypatch):
    _fresh_archive(archive)
    lake = tmp_path / "lake"
    monkeypatch.delenv("SOCLAKE_METRICS", raising=False)
    main(["ingest", "--source", str(archive.root), "--lake", str(lake), "--quiet", "--workers", "1"])
    assert "_aws" not in capsys.readouterr().out
    main(["--metrics", "emf", "detect", "--lake", str(lake), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert len(lines) == 1
    doc = lines[0]
    spec = doc["_aws"]["CloudWatchMetrics"][0]
    assert spec["Namespace"] == "soclake" and spec["Dimensions"] == [["Command"]]
    assert doc["Command"] == "detect" and doc["RunsFailed"] == 0 and "AlertsNew" in doc
    assert {m["Name"] for m in spec["Metrics"]} <= set(doc)  # every declared metric has its value
    monkeypatch.setenv("SOCLAKE_METRICS", "emf")
    main(["ingest", "--source", str(archive.root), "--lake", str(lake), "--quiet", "--workers", "1"])
    line = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')][0]
    assert line["Command"] == "ingest" and "EventsIngested" in line and line["LagSeconds"] < 7200


def test_emf_line_shape():
    doc = json.loads(metrics.emf_line("forward", {"alerts_forwarded": 3, "alerts_parked": 1, "run_seconds": 1.5,
                                                  "runs_failed": 0, "sinks": {"x": 1}}, now=NOW))
    assert doc["AlertsForwarded"] == 3 and doc["AlertsParked"] == 1 and "sinks" not in doc
    assert doc["_aws"]["Timestamp"] == int(NOW.timestamp() * 1000)


# -- one config file -------------------------------------------------------------------------------

def _parse(argv):
    return parse_args(argv)


def test_precedence_file_then_environment_then_flags(tmp_path, monkeypatch):
    cfg = tmp_path / "soclake.yml"
    cfg.write_text("lake: /from/file\nsource: /logs/file\ndetect:\n  lookback: 1h\n  memory_mb: 300\n"
                   "ingest: {workers: 3}\naws: {region: eu-west-3}\nstatus: {max_lag: 90m}\n")
    for v in ("SOCLAKE_LAKE", "SOCLAKE_DETECT__LOOKBACK", "AWS_REGION", "AWS_DEFAULT_REGION", "SOCLAKE_CONFIG"):
        monkeypatch.delenv(v, raising=False)
    a = _parse(["detect", "--config", str(cfg)])
    assert (a.lake, a.lookback, a.memory_mb, a.region) == ("/from/file", dt.timedelta(hours=1), 300, "eu-west-3")
    a = _parse(["--config", str(cfg), "run"])  # the file gives the required --source
    assert (a.source, a.workers) == ("/logs/file", 3)
    assert _parse(["status", "--config", str(cfg)]).max_lag == dt.timedelta(minutes=90)
    monkeypatch.setenv("SOCLAKE_DETECT__LOOKBACK", "2h")
    monkeypatch.setenv("SOCLAKE_LAKE", "/from/env")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("SOCLAKE_CONFIG", str(cfg))
    a = _parse(["detect"])
    assert (a.lake, a.lookback, a.memory_mb, a.region) == ("/from/env", dt.timedelta(hours=2), 300, None)
    a = _parse(["detect", "--lake", "/from/flag", "--lookback", "3h"])
    assert (a.lake, a.lookback) == ("/from/flag", dt.timedelta(hours=3))


def test_config_check_masks_secrets_and_validates_sinks(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SOCLAKE_CONFIG", raising=False)
    cfg = tmp_path / "soclake.yml"
    cfg.write_text("lake: s3://soc-lake/prod\nmetrics: emf\nsinks:\n  - name: hook\n    type: webhook\n"
                   "    url: https://hooks.example.internal/T0/B0/s3cr3tW3bh00kPath\n    template: slack\n"
                   "  - name: splunk\n    type: splunk_hec\n    url: https://splunk.example.internal:8088\n"
                   "    token: {env: SPLUNK_HEC_TOKEN}\n")
    assert main(["config", "check", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "valid (2 sink(s))" in out and "s3cr3tW3bh00kPath" not in out and "***" in out
    assert "SPLUNK_HEC_TOKEN" in out and "lake: s3://soc-lake/prod" in out


@pytest.mark.parametrize("text, expect", [
    ("lake: x\ningest:\n  workrs: 3\n", "soclake.yml:3: ingest.workrs: Extra inputs are not permitted"),
    ("lake: x\ndetect:\n  lookback: soon\n", "soclake.yml:3: detect.lookback:"),
    ("lake: x\nmetrics: loud\n", "soclake.yml:2: metrics:"),
    ("sinks:\n  - name: s\n    type: splunk_hec\n    url: https://h:8088\n    token: hunter2-very-secret\n",
     "soclake.yml:5: sinks[0].token"),
])
def test_config_errors_name_line_and_key_never_the_value(tmp_path, capsys, monkeypatch, text, expect):
    monkeypatch.delenv("SOCLAKE_CONFIG", raising=False)
    cfg = tmp_path / "soclake.yml"
    cfg.write_text(text)
    assert main(["config", "check", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert expect in err and "hunter2" not in err
    assert err.count("\n") == 1


def test_a_bad_environment_variable_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SOCLAKE_INGEST__WORKERS", "many")
    assert main(["ingest", "--source", str(tmp_path), "--lake", str(tmp_path / "l")]) == 1
    assert "environment SOCLAKE_INGEST__WORKERS" in capsys.readouterr().err


def test_the_example_config_is_valid(capsys, monkeypatch):
    monkeypatch.delenv("SOCLAKE_CONFIG", raising=False)
    assert main(["config", "check", "deploy/soclake.example.yml"]) == 0


def test_a_block_of_code_records_its_runs_as_the_commands_do(tmp_path, capsys):
    """runs.recording (what the demo uses around ingest and detect): a noted step lands with its figures,
    a block that fails records the error of the step it never noted; status shows both."""
    from pipeline.ops import runs

    lake = tmp_path / "lake"
    lake.mkdir()
    with runs.recording(str(lake), "forward"):
        runs.note_forward([])
    with pytest.raises(RuntimeError), runs.recording(str(lake), "detect"):
        raise RuntimeError("the rules folder vanished")
    _, st = _status(lake, capsys)
    assert st["runs"]["forward"]["last"]["outcome"] == "ok"
    assert st["runs"]["detect"]["last"]["outcome"] == "error"
    assert "the rules folder vanished" in st["runs"]["detect"]["last"]["error"]
    assert "ingest" not in st["runs"] or not st["runs"]["ingest"]
