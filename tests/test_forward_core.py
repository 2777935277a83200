"""The delivery loop and the outbox: retries, partial failures, parking, independence of sinks,
versions, routing, crash safety, config and secrets validation."""

import datetime as dt
import json
import subprocess
import sys

import pytest

from pipeline.detect.alerts import Alert
from pipeline.errors import ConfigError
from pipeline.forward.base import PermanentSinkError, SendResult, SinkConfig, TransientSinkError
from pipeline.forward.config import load_config
from pipeline.forward.deliver import deliver
from pipeline.forward.outbox import Outbox
from pipeline.forward.secrets import SecretRef
from pipeline.lake import LocalStore

T = dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC)


def make_alert(n, severity="high", rule="r1", detected=T):
    return Alert(id=f"a{n:03d}", rule_id=rule, rule_version=1, title=f"alert {n}", severity=severity, first_seen=T,
                 last_seen=T, event_count=1, attack={"tactics": ["TA0001"], "techniques": []}, practice="p",
                 runbook="r", window_start=T, window_end=T + dt.timedelta(hours=1), detected_at=detected)


class ScriptedSink:
    """A destination that keeps what it received and fails as scripted."""

    def __init__(self, name="dest", max_batch=3, script=()):
        self.name, self.max_batch, self.script = name, max_batch, list(script)
        self.received: list[str] = []
        self.calls: list[list[str]] = []

    def send(self, alerts):
        ids = [a.id for a in alerts]
        self.calls.append(ids)
        step = self.script.pop(0) if self.script else "ok"
        if step == "down":
            raise TransientSinkError("connection refused")
        if step == "429":
            raise TransientSinkError("429 Too Many Requests", retry_after=7)
        if step == "reject-all":
            raise PermanentSinkError("403 invalid token")
        if step == "partial":  # first entry fails transiently, second for good
            self.received += ids[2:]
            return SendResult(delivered=ids[2:], retry={ids[0]: "throttled"}, rejected={ids[1]: "too large"})
        self.received += ids
        return SendResult(delivered=ids)

    def close(self):
        pass


def cfg(name="dest", **kw):
    return SinkConfig(name=name, type="scripted", **kw)


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "lake")


def test_everything_pending_is_delivered_once_and_reruns_send_nothing(store):
    alerts = [make_alert(i) for i in range(7)]
    sink = ScriptedSink()
    [rep] = deliver(alerts, [(cfg(), sink)], store, sleep=lambda s: None)
    assert sorted(sink.received) == [a.id for a in alerts] and rep.delivered == 7 and rep.left == 0
    assert [len(c) for c in sink.calls] == [3, 3, 1]
    again = ScriptedSink()
    deliver(alerts, [(cfg(), again)], store, sleep=lambda s: None)
    assert again.calls == []


def test_only_failed_entries_are_retried_and_rejected_ones_are_parked_with_reason(store):
    alerts = [make_alert(i) for i in range(3)]
    sink = ScriptedSink(script=["partial"])
    [rep] = deliver(alerts, [(cfg(), sink)], store, sleep=lambda s: None)
    assert sink.calls == [["a000", "a001", "a002"], ["a000"]]
    assert rep.parked == {"a001": "too large"} and sorted(sink.received) == ["a000", "a002"]
    box = Outbox.load(store, "dest")
    assert box.parked["a001"]["reason"] == "too large" and not box.pending(alerts[1])


def test_retry_after_is_honoured_and_backoff_is_bounded(store):
    slept = []
    sink = ScriptedSink(script=["429", "down", "ok"])
    deliver([make_alert(1)], [(cfg(), sink)], store, sleep=slept.append)
    assert slept[0] == 7 and 0 <= slept[1] <= 1.0 and sink.received == ["a001"]


def test_a_sink_that_stays_down_keeps_its_alerts_pending_and_does_not_block_others(store):
    alerts = [make_alert(i) for i in range(4)]
    down = ScriptedSink("down", script=["down"] * 50)
    up = ScriptedSink("up")
    reps = deliver(alerts, [(cfg("down", retry={"attempts": 3}), down), (cfg("up"), up)], store, sleep=lambda s: None)
    assert reps[0].left == 4 and reps[0].delivered == 0 and "connection refused" in reps[0].error
    assert len(down.calls) == 3  # gave up on the first batch after its attempts, did not hammer on
    assert sorted(up.received) == [a.id for a in alerts]
    back = ScriptedSink("down")
    [rep] = deliver(alerts, [(cfg("down"), back)], store, sleep=lambda s: None)
    assert sorted(back.received) == [a.id for a in alerts] and rep.left == 0


def test_a_permanent_failure_parks_the_batch_and_is_not_retried_forever(store):
    sink = ScriptedSink(script=["reject-all"])
    [rep] = deliver([make_alert(1)], [(cfg(), sink)], store, sleep=lambda s: None)
    assert rep.parked == {"a001": "403 invalid token"} and len(sink.calls) == 1
    assert deliver([make_alert(1)], [(cfg(), ScriptedSink())], store)[0].pending == 0


def test_a_new_version_of_an_alert_is_delivered_again(store):
    deliver([make_alert(1)], [(cfg(), ScriptedSink())], store)
    grown = make_alert(1, detected=T + dt.timedelta(hours=2))
    sink = ScriptedSink()
    deliver([grown], [(cfg(), sink)], store)
    assert sink.received == ["a001"]


def test_crash_between_send_and_state_update_resends(store, monkeypatch):
    sink = ScriptedSink()
    real = Outbox.save
    monkeypatch.setattr(Outbox, "save", lambda self: (_ for _ in ()).throw(KeyboardInterrupt("crash")))
    with pytest.raises(KeyboardInterrupt):
        deliver([make_alert(1)], [(cfg(), sink)], store)
    monkeypatch.setattr(Outbox, "save", real)
    again = ScriptedSink()
    deliver([make_alert(1)], [(cfg(), again)], store)
    assert sink.received == ["a001"] and again.received == ["a001"]  # at least once: sent again


def test_routing_by_severity_and_rule():
    c = cfg(min_severity="medium", rules=["iam_*", "root_*"], exclude_rules=["root_api_call"])
    assert c.routes(make_alert(1, "high", "iam_admin_policy_attached"))
    assert not c.routes(make_alert(1, "low", "iam_admin_policy_attached"))
    assert not c.routes(make_alert(1, "high", "root_api_call"))
    assert not c.routes(make_alert(1, "high", "guardduty_finding"))


def test_secrets_never_in_plain_text_and_never_printed(monkeypatch):
    with pytest.raises(ValueError, match="never written in the config file"):
        SecretRef.model_validate("hunter2")
    monkeypatch.setenv("HEC_TOKEN", "s3cr3t-value")
    ref = SecretRef(env="HEC_TOKEN")
    assert ref.resolve() == "s3cr3t-value" and "s3cr3t" not in repr(ref)
    monkeypatch.delenv("HEC_TOKEN")
    with pytest.raises(ConfigError, match="HEC_TOKEN is not set"):
        ref.resolve()


def test_config_errors_name_the_sink(tmp_path):
    bad = tmp_path / "c.yml"
    bad.write_text("sinks:\n  - {name: x, type: carrier_pigeon}\n")
    with pytest.raises(ConfigError, match="unknown type 'carrier_pigeon'"):
        load_config(bad)
    bad.write_text("sinks:\n  - {name: x, type: jsonl, path: a.jsonl, colour: red}\n")
    with pytest.raises(ConfigError, match="colour"):
        load_config(bad)


def test_forward_cli_delivers_and_reports_status(tmp_path):
    from pipeline.detect.alert_store import write_alerts

    lake = tmp_path / "lake"
    write_alerts(LocalStore(lake), [make_alert(i, "high" if i % 2 else "low") for i in range(4)], {}, "run1")
    conf = tmp_path / "c.yml"
    conf.write_text(f"sinks:\n  - {{name: file, type: jsonl, path: {tmp_path / 'out.jsonl'}, min_severity: high}}\n")
    base = [sys.executable, "-m", "pipeline", "forward", "--lake", str(lake), "--config", str(conf)]
    done = subprocess.run(base, capture_output=True, text=True)
    assert done.returncode == 0 and "file: 2 delivered of 2 pending" in done.stdout
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(x["id"] for x in lines) == ["a001", "a003"]
    status = json.loads(subprocess.run(base + ["--status", "--json"], capture_output=True, text=True).stdout)
    assert status == [{"sink": "file", "type": "jsonl", "routed": 2, "delivered": 2, "pending": 0, "parked": []}]


def test_the_example_config_in_deploy_is_valid():
    from pathlib import Path

    from pipeline.forward.registry import SINK_TYPES

    _, sinks = load_config(Path(__file__).resolve().parent.parent / "deploy" / "soclake.example.yml")
    assert {s.type for s in sinks} <= set(SINK_TYPES)
    assert {"jsonl", "splunk_hec", "syslog", "securityhub", "sqs", "webhook"} <= {s.type for s in sinks}


def test_incidents_are_delivered_as_their_own_stream_and_again_when_they_grow(tmp_path):
    """soclake forward with `streams: [incidents]` sends incidents, versioned by updated_at."""
    from pipeline import views
    from pipeline.correlate.store import rebuild
    from pipeline.detect.alert_store import write_alerts
    from pipeline.forward.run import forward

    lake, store = tmp_path / "lake", LocalStore(tmp_path / "lake")
    first = [make_alert(1, "high", "root_console_login"), make_alert(2, "medium", "root_api_call")]
    for a in first:
        a.entities, a.actor = ["principal:arn:aws:iam::111111111111:root"], "arn:aws:iam::111111111111:root"
    write_alerts(store, first, {}, "run1")
    rebuild(views.connect(str(lake)), store)
    conf = tmp_path / "c.yml"
    out = tmp_path / "incidents.jsonl"
    conf.write_text(f"sinks:\n  - {{name: inc, type: jsonl, path: {out}, streams: [incidents]}}\n")
    [rep] = forward(str(lake), store, str(conf))
    [msg] = [json.loads(x) for x in out.read_text().splitlines()]
    assert rep.delivered == 1 and msg["rule_id"] == "soclake_incident" and msg["severity"] == "critical"
    assert {e["fields"]["alert_id"] for e in msg["evidence"]} == {"a001", "a002"}
    assert forward(str(lake), store, str(conf))[0].delivered == 0  # unchanged: not sent again
    late = make_alert(3, "high", "iam_admin_policy_attached", detected=T + dt.timedelta(hours=5))
    late.entities = ["principal:arn:aws:iam::111111111111:root"]
    write_alerts(store, [late], {}, "run2")
    rebuild(views.connect(str(lake)), store)
    [rep2] = forward(str(lake), store, str(conf))
    grown = json.loads(out.read_text().splitlines()[-1])
    assert rep2.delivered == 1 and grown["id"] == msg["id"] and grown["event_count"] == 3


def test_forward_status_takes_the_shared_format_flag(tmp_path):
    """--format table|json|jsonl|csv on forward --status (--json kept): one row per sink, parked alerts named."""
    import csv
    import io
    import re

    from pipeline.detect.alert_store import write_alerts

    lake, store = tmp_path / "lake", LocalStore(tmp_path / "lake")
    alerts = [make_alert(i) for i in range(3)]
    write_alerts(store, alerts, {}, "run1")
    conf = tmp_path / "c.yml"
    conf.write_text(f"sinks:\n  - {{name: file, type: jsonl, path: {tmp_path / 'out.jsonl'}}}\n"
                    f"  - {{name: other, type: jsonl, path: {tmp_path / 'other.jsonl'}, min_severity: critical}}\n")
    box = Outbox.load(store, "file")
    box.park(alerts[0], "rejected: field too long")
    box.save()
    base = [sys.executable, "-m", "pipeline", "forward", "--lake", str(lake), "--config", str(conf), "--status"]

    def out(*fmt):
        done = subprocess.run(base + list(fmt), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    table = out("--format", "table").splitlines()
    assert table[0].split() == ["SINK", "TYPE", "ROUTED", "DELIVERED", "PENDING", "PARKED"]
    assert table[1].split() == ["file", "jsonl", "3", "0", "2", "1"] and table[2].split() == ["other", "jsonl", "0", "0", "0", "0"]
    assert re.fullmatch(r"  file: parked a000 since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z: rejected: field too long", table[3])
    rows = list(csv.DictReader(io.StringIO(out("--format", "csv"))))
    assert [(r["sink"], r["pending"]) for r in rows] == [("file", "2"), ("other", "0")]
    assert json.loads(rows[0]["parked"])[0]["alert"] == "a000"
    lines = [json.loads(x) for x in out("--format", "jsonl").splitlines()]
    assert json.loads(out("--json")) == json.loads(out("--format", "json")) == lines and lines[0]["parked"][0]["alert"] == "a000"
