"""Syslog sink against real peers on 127.0.0.1: rsyslogd (UDP, TCP octet-counted and LF framing,
JSON and CEF, RFC 5424 and 3164), a strict RFC 5424 TLS receiver, and fault servers (down then up,
reset mid-batch, never answering), with the delivery loop and the outbox in a local lake."""

from __future__ import annotations

import collections
import datetime as dt
import json
import shutil
import ssl
import time

import pytest

from pipeline.detect.alerts import Alert, AlertAttack, Evidence
from pipeline.errors import ConfigError
from pipeline.forward.base import TransientSinkError
from pipeline.forward.config import load_config
from pipeline.forward.deliver import deliver
from pipeline.forward.outbox import Outbox
from pipeline.forward.render import to_json
from pipeline.forward.sinks.syslog import (
    MARKER,
    SEVERITY,
    SyslogConfig,
    SyslogSink,
    _cut,
    rfc3339,
    to_cef,
)
from pipeline.lake.store import LocalStore
from tests.syslog_peers import INSTALL_HINT, Rsyslogd, StrictSyslogServer, free_port, make_cert, parse_5424

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
SEVS = ("info", "low", "medium", "high", "critical")
HOST = "soclake-test-host"


def make_alert(i: int, **kw) -> Alert:
    t = T0 + dt.timedelta(minutes=i)
    fields = dict(
        id=f"{i:032x}", rule_id="ec2_network_acl_allows_ingress_from_anywhere", rule_version=2,
        title=f"Network ACL opened to 0.0.0.0/0 by user u{i} (Zoë's account)", severity=SEVS[i % 5],
        first_seen=t - dt.timedelta(hours=1), last_seen=t, event_count=i + 1, account_id="123456789012",
        region="us-east-1", actor=f"arn:aws:iam::123456789012:user/u{i}", source_ips=["203.0.113.7"],
        resources=[f"arn:aws:ec2:us-east-1:123456789012:network-acl/acl-{i:04x}"],
        attack=AlertAttack(tactics=["TA0005", "TA0003"], techniques=["T1562.007"]),
        practice="Network exposure", runbook="1. Find the change ticket.\n2. Revert the entry.",
        dedup_key={"account_id": "123456789012", "n": i}, window_start=t.replace(minute=0),
        window_end=t.replace(minute=0) + dt.timedelta(hours=1),
        evidence=[Evidence(event_id=f"ev-{i}", event_time=t, fields={"eventName": "CreateNetworkAclEntry"})],
        entities=[f"principal:arn:aws:iam::123456789012:user/u{i}"], detected_at=t + dt.timedelta(seconds=30),
    )
    fields.update(kw)
    return Alert(**fields)


def cfg(**kw) -> SyslogConfig:
    base = {"name": "siem", "type": "syslog", "host": "127.0.0.1", "hostname": HOST}
    return SyslogConfig.model_validate({**base, **kw})


def run(config: SyslogConfig, alerts, store, sleep=None, sink=None):
    sink = sink or SyslogSink(config)
    [report] = deliver(alerts, [(config, sink)], store, sleep=sleep or (lambda s: None))
    return report


def assert_nothing_lost(report, alerts, store, name="siem"):
    box = Outbox.load(store, name)
    delivered = sum(1 for a in alerts if box.delivered.get(a.id) == Outbox.version(a))
    parked = sum(1 for a in alerts if a.id in box.parked)
    pending = sum(1 for a in alerts if box.pending(a))
    assert delivered + parked + pending == len(alerts)
    return delivered, parked, pending


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """Strict CEF:0 parser: 7 header fields (\\| and \\\\ escapes), then key=value with \\=, \\\\, \\n, \\r."""
    assert line.startswith("CEF:0|"), line[:20]
    header, cur, i = [], "", 6
    while len(header) < 6:
        c = line[i]
        if c == "\\":
            assert line[i + 1] in "|\\", f"bad header escape at {i}"
            cur, i = cur + line[i + 1], i + 2
        elif c == "|":
            header.append(cur)
            cur, i = "", i + 1
        else:
            assert c not in "\r\n"
            cur, i = cur + c, i + 1
    segs, cur, ext = [], "", line[i:]
    j = 0
    while j < len(ext):
        if ext[j] == "\\":
            cur, j = cur + ext[j:j + 2], j + 2
        elif ext[j] == "=":
            segs.append(cur)
            cur, j = "", j + 1
        else:
            assert ext[j] not in "\r\n", "raw line break in the extension"
            cur, j = cur + ext[j], j + 1
    segs.append(cur)
    keys, values = [segs[0]], []
    for s in segs[1:-1]:
        v, _, k = s.rpartition(" ")
        values.append(v)
        keys.append(k)
    values.append(segs[-1])
    unesc = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}
    out = {}
    for k, v in zip(keys, values, strict=True):
        assert k.isalnum(), f"bad extension key {k!r}"
        val, m = "", 0
        while m < len(v):
            if v[m] == "\\":
                assert v[m + 1] in unesc, f"bad escape in {k}"
                val, m = val + unesc[v[m + 1]], m + 2
            else:
                val, m = val + v[m], m + 1
        out[k] = val
    return header, out


def check_cef(msg: str, a: Alert) -> None:
    header, ext = parse_cef(msg)
    assert header == ["soclake", "soclake", header[2], a.rule_id, a.title,
                      str({"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}[a.severity])]
    assert ext["externalId"] == a.id and ext["suser"] == (a.actor or ext.get("suser"))
    assert ext["rt"] == str(int(a.detected_at.timestamp() * 1000)) and ext["cnt"] == str(a.event_count)
    assert ext["cs1Label"] == "account" and ext["cs1"] == a.account_id
    assert ext["cs2Label"] == "region" and ext["cs2"] == a.region
    assert ext["msg"] == a.runbook and ext["cat"] == ",".join(a.attack.tactics) and ext["act"] == "alert"


@pytest.fixture
def rsyslogd(tmp_path):
    if shutil.which("rsyslogd") is None and shutil.which("rsyslogd", path="/usr/sbin:/sbin") is None:
        pytest.fail(INSTALL_HINT)
    server = Rsyslogd(tmp_path / "rsyslog").start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "lake")


def by_alert(records) -> collections.Counter:
    return collections.Counter(parse_5424(r["rawmsg"].encode()).sd[0][1]["alertId"] for r in records)


# --- (a) rsyslogd ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol,framing,fmt", [
    ("udp", None, "json"), ("udp", None, "cef"),
    ("tcp", "octet-counting", "json"), ("tcp", "octet-counting", "cef"),
    ("tcp", "lf", "json"), ("tcp", "lf", "cef"),
])
def test_rsyslog_receives_and_parses_every_alert(rsyslogd, store, protocol, framing, fmt):
    alerts = [make_alert(i) for i in range(12)]
    port = rsyslogd.udp_port if protocol == "udp" else rsyslogd.tcp_port
    opts = {"protocol": protocol, "port": port, "format": fmt, "batch_size": 5}
    if framing:
        opts["framing"] = framing
    config = cfg(**opts)
    sink = SyslogSink(config)
    report = run(config, alerts, store, sink=sink)
    assert report.delivered == len(alerts) and report.error is None
    assert assert_nothing_lost(report, alerts, store) == (len(alerts), 0, 0)

    records = rsyslogd.wait_for(len(alerts))
    assert by_alert(records) == {a.id: 1 for a in alerts}  # each exactly once: no fault here
    for a in alerts:
        [r] = [r for r in records if f'alertId="{a.id}"' in r["structured-data"]]
        assert r["rawmsg"] == sink.render(a).decode()  # byte for byte what we sent
        # rsyslog's own RFC 5424 parser accepted it (a rejected header falls back to version 0)
        assert r["protocol-version"] == "1"
        assert r["app-name"] == "soclake" and r["procid"] == "-" and r["hostname"] == HOST
        assert r["msgid"] == a.rule_id[:32]
        assert r["structured-data"] == f'[soclake@32473 alertId="{a.id}" ruleId="{a.rule_id}" severity="{a.severity}"]'
        assert r["syslogfacility"] == "20" and r["syslogseverity"] == str(SEVERITY[a.severity])
        assert int(r["pri"]) == 20 * 8 + SEVERITY[a.severity]
        assert dt.datetime.fromisoformat(r["timereported"]) == a.detected_at
        assert r["inputname"] == ("imudp" if protocol == "udp" else "imtcp")
        if fmt == "json":
            assert json.loads(r["msg"]) == to_json(a)
        else:
            check_cef(r["msg"], a)


def test_rsyslog_rfc3164_on_request(rsyslogd, store):
    alerts = [make_alert(i) for i in range(3)]
    config = cfg(protocol="udp", port=rsyslogd.udp_port, rfc=3164)
    report = run(config, alerts, store)
    assert report.delivered == 3
    records = rsyslogd.wait_for(3)
    assert len(records) == 3
    for a, r in zip(sorted(alerts, key=lambda a: a.id), sorted(records, key=lambda r: json.loads(r["msg"])["id"]),
                    strict=True):
        assert r["protocol-version"] == "0" and r["programname"] == "soclake" and r["hostname"] == HOST
        assert r["syslogseverity"] == str(SEVERITY[a.severity]) and r["syslogfacility"] == "20"
        assert json.loads(r["msg"]) == to_json(a)


def test_rsyslog_sd_escaping(rsyslogd, store):
    odd = 'odd"rule\\name]x'
    a = make_alert(1, rule_id=odd)
    config = cfg(protocol="tcp", port=rsyslogd.tcp_port)
    sink = SyslogSink(config)
    assert b'ruleId="odd\\"rule\\\\name\\]x"' in sink.render(a)
    assert run(config, [a], store, sink=sink).delivered == 1
    [r] = rsyslogd.wait_for(1)
    assert r["protocol-version"] == "1"
    assert r["structured-data"] == f'[soclake@32473 alertId="{a.id}" ruleId="odd\\"rule\\\\name\\]x" severity="low"]'
    assert r["msgid"] == odd
    parsed = parse_5424(r["rawmsg"].encode())
    assert parsed.sd == [("soclake@32473", {"alertId": a.id, "ruleId": odd, "severity": "low"})]


def test_cef_escaping_exact_and_through_lf_framing(rsyslogd, store):
    a = make_alert(2, title="a|b\\c\nd=e", actor="x=y\\z|w", region="us|east",
                   runbook="line1\nline2\r\nback\\slash = done")
    line = to_cef(a, HOST)
    head = line[:line.index("|rt=") + 1] if "|rt=" in line else line
    assert head == "CEF:0|soclake|soclake|0.1.0|ec2_network_acl_allows_ingress_from_anywhere|a\\|b\\\\c d=e|5|"
    assert "suser=x\\=y\\\\z|w " in line and "cs2=us|east " in line
    assert line.endswith(" msg=line1\\nline2\\nback\\\\slash \\= done")
    assert "\n" not in line and "\r" not in line
    header, ext = parse_cef(line)
    assert header[4] == "a|b\\c d=e" and ext["suser"] == "x=y\\z|w" and ext["cs2"] == "us|east"
    assert ext["msg"] == "line1\nline2\nback\\slash = done"

    alerts = [a, make_alert(3, runbook="only\nnewlines\n"), make_alert(4)]
    config = cfg(protocol="tcp", port=rsyslogd.tcp_port, framing="lf", format="cef")
    assert run(config, alerts, store).delivered == 3
    records = rsyslogd.wait_for(3)
    assert by_alert(records) == {x.id: 1 for x in alerts}  # line breaks in values did not split frames
    for x in alerts:
        [r] = [r for r in records if x.id in r["structured-data"]]
        assert parse_cef(r["msg"])[1]["msg"] == x.runbook.replace("\r\n", "\n")


def test_udp_oversized_message_is_truncated_safely(rsyslogd, store):
    big = make_alert(5, runbook="é" + "Ünïcödé runbook text; " * 400)
    small = make_alert(6)
    config = cfg(protocol="udp", port=rsyslogd.udp_port)
    sink = SyslogSink(config)
    body = sink.body(big)
    assert len(body) > 2048
    report = run(config, [big, small], store, sink=sink)
    assert report.delivered == 2 and not report.parked
    records = rsyslogd.wait_for(2)
    assert by_alert(records) == {big.id: 1, small.id: 1}
    [r] = [r for r in records if big.id in r["structured-data"]]
    raw = r["rawmsg"].encode()
    assert len(raw) <= 2048 and raw.endswith(MARKER) and r["protocol-version"] == "1"
    assert f'truncated="{len(body)}"' in r["structured-data"]
    msg = r["msg"].encode()
    assert body.startswith(msg[:-len(MARKER)])  # a clean prefix: whole UTF-8 characters only
    msg.decode("utf-8")


def test_cut_keeps_utf8_and_cef_escapes_whole():
    assert _cut("aé".encode(), 2) == b"a"  # never half a character
    assert _cut(b"ab\\\\cd", 3) == b"ab"  # never a dangling escape backslash
    assert _cut(b"ab\\\\cd", 4) == b"ab\\\\"
    assert _cut(b"ab\\ncd", 3) == b"ab"
    big = make_alert(5, runbook="back\\slash=" * 400)  # CEF: the cut lands among escapes
    sink = SyslogSink(cfg(protocol="udp", port=1, format="cef"))
    raw = sink.render(big)
    assert len(raw) <= 2048 and raw.endswith(MARKER)
    header, ext = parse_cef(parse_5424(raw).msg)  # still a valid CEF line
    assert ext["externalId"] == big.id and ext["cat"] == "TA0005,TA0003"  # msg is last: only it was cut
    assert ext["msg"].endswith(MARKER.decode()) and big.runbook.startswith(ext["msg"][:-len(MARKER)])


def test_udp_oversize_reject_parks_with_reason(rsyslogd, store):
    big = make_alert(7, runbook="x" * 5000)
    alerts = [big, make_alert(8), make_alert(9)]
    config = cfg(protocol="udp", port=rsyslogd.udp_port, oversize="reject")
    report = run(config, alerts, store)
    assert report.delivered == 2
    assert list(report.parked) == [big.id] and "exceeds max_message_size 2048" in report.parked[big.id]
    assert assert_nothing_lost(report, alerts, store) == (2, 1, 0)
    assert Outbox.load(store, "siem").parked[big.id]["reason"] == report.parked[big.id]
    records = rsyslogd.wait_for(2)
    assert by_alert(records) == {alerts[1].id: 1, alerts[2].id: 1}
    assert run(config, alerts, store).pending == 0  # parked stays parked, delivered are not resent


# --- (c) faults ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_rsyslog_down_then_up_nothing_lost(tmp_path, store, protocol):
    if shutil.which("rsyslogd") is None and shutil.which("rsyslogd", path="/usr/sbin:/sbin") is None:
        pytest.fail(INSTALL_HINT)
    server = Rsyslogd(tmp_path / "rsyslog")  # not running yet: connections refused
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        if len(sleeps) == 2:
            server.start()

    alerts = [make_alert(i) for i in range(8)]
    port = server.udp_port if protocol == "udp" else server.tcp_port
    try:
        config = cfg(protocol=protocol, port=port, retry={"attempts": 5, "base_delay": 0.01})
        report = run(config, alerts, store, sleep=sleep)
        assert report.attempts == 3 and len(sleeps) == 2  # refused twice, then accepted
        assert report.delivered == len(alerts) and report.left == 0 and report.error is None
        assert assert_nothing_lost(report, alerts, store) == (len(alerts), 0, 0)
        counts = by_alert(server.wait_for(len(alerts)))
        assert set(counts) == {a.id for a in alerts}  # everything arrived
        if protocol == "tcp":
            assert set(counts.values()) == {1}  # refused connections carried nothing
    finally:
        server.stop()


def test_tcp_reset_mid_batch_is_retried_at_least_once(store):
    alerts = [make_alert(i) for i in range(10)]
    with StrictSyslogServer(reset_after=3) as server:
        config = cfg(protocol="tcp", port=server.port)
        report = run(config, alerts, store)
        messages = server.wait_for(13)
        assert report.attempts == 2 and report.delivered == 10 and report.error is None
        assert server.connections == 2 and not server.errors
    counts = collections.Counter(m.sd[0][1]["alertId"] for m in messages)
    assert set(counts) == {a.id for a in alerts}  # at least once each
    assert sum(counts.values()) == 13  # the 3 read before the reset came again
    assert assert_nothing_lost(report, alerts, store) == (10, 0, 0)


def test_tcp_receiver_that_never_reads_times_out_then_recovers(store):
    alerts = [make_alert(i) for i in range(4)]
    sleeps = []
    with StrictSyslogServer(blackhole=True) as hole:
        config = cfg(protocol="tcp", port=hole.port, retry={"attempts": 2, "timeout": 0.3})
        t = time.monotonic()
        report = run(config, alerts, store, sleep=sleeps.append)
        assert time.monotonic() - t < 3
    assert report.delivered == 0 and report.left == 4 and len(sleeps) == 1
    assert "timed out after 0.3s" in report.error
    assert assert_nothing_lost(report, alerts, store) == (0, 0, 4)
    with StrictSyslogServer() as server:  # back: the next run delivers what was left
        report = run(cfg(protocol="tcp", port=server.port), alerts, store)
        assert report.delivered == 4
        assert collections.Counter(m.sd[0][1]["alertId"] for m in server.wait_for(4)) == {a.id: 1 for a in alerts}
    assert assert_nothing_lost(report, alerts, store) == (4, 0, 0)


class CrashingStore(LocalStore):
    """The outbox save after a successful send fails once (a crash between send and state update)."""

    fail = 1

    def put(self, rel, data):
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        super().put(rel, data)


def test_crash_between_send_and_save_resends(tmp_path):
    alerts = [make_alert(i) for i in range(5)]
    store = CrashingStore(tmp_path / "lake")
    with StrictSyslogServer() as server:
        config = cfg(protocol="tcp", port=server.port)
        first = run(config, alerts, store)
        assert "disk full" in first.error
        server.wait_for(5)
        second = run(config, alerts, store)  # state was not saved: all pending again, resent
        assert second.pending == 5 and second.delivered == 5
        third = run(config, alerts, store)
        assert third.pending == 0
        counts = collections.Counter(m.sd[0][1]["alertId"] for m in server.wait_for(10))
    assert counts == {a.id: 2 for a in alerts}  # syslog is not idempotent: at-least-once, twice here
    assert assert_nothing_lost(second, alerts, store) == (5, 0, 0)


def test_connection_refused_raises_transient():
    sink = SyslogSink(cfg(protocol="tcp", port=free_port(), retry={"timeout": 0.3}))
    with pytest.raises(TransientSinkError, match="cannot connect.*ConnectionRefused"):
        sink.send([make_alert(1)])


# --- (b) TLS ----------------------------------------------------------------------------------------------

def server_context(tmp_path, client_ca: str | None = None):
    ca, cert, key = make_cert(tmp_path / "pki")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx, ca


@pytest.mark.parametrize("close_notify", [True, False])
def test_tls_strict_rfc5424_every_alert_parsed(tmp_path, store, close_notify):
    ctx, ca = server_context(tmp_path)
    alerts = [make_alert(i) for i in range(20)]
    with StrictSyslogServer(tls=ctx, close_notify=close_notify) as server:
        config = cfg(protocol="tls", port=server.port, ca_file=ca, server_hostname="syslog.test", batch_size=7)
        report = run(config, alerts, store)
        messages = server.wait_for(20)
        assert report.delivered == 20 and report.error is None
        assert server.connections == 3 and not server.errors  # one connection per batch, nothing malformed
    assert assert_nothing_lost(report, alerts, store) == (20, 0, 0)
    got = {m.sd[0][1]["alertId"]: m for m in messages}
    assert len(messages) == 20 and set(got) == {a.id for a in alerts}
    for a in alerts:
        m = got[a.id]
        assert m.version == 1 and m.facility == 20 and m.severity == SEVERITY[a.severity]
        assert m.timestamp == a.detected_at and rfc3339(a.detected_at).endswith(".123456Z")
        assert (m.hostname, m.app_name, m.procid, m.msgid) == (HOST, "soclake", None, a.rule_id[:32])
        assert m.sd == [("soclake@32473", {"alertId": a.id, "ruleId": a.rule_id, "severity": a.severity})]
        assert json.loads(m.msg) == to_json(a)


def test_tls_cef_and_sd_escaping_strict(tmp_path, store):
    ctx, ca = server_context(tmp_path)
    a = make_alert(3, rule_id='r"\\]', title="t|=\\\n", runbook="a=b\nc\\d")
    with StrictSyslogServer(tls=ctx) as server:
        config = cfg(protocol="tls", port=server.port, ca_file=ca, format="cef")
        assert run(config, [a], store).delivered == 1
        [m] = server.wait_for(1)
        assert not server.errors
    assert m.sd[0][1]["ruleId"] == 'r"\\]' and m.msgid == 'r"\\]'
    header, ext = parse_cef(m.msg)
    assert header[3] == 'r"\\]' and header[4] == "t|=\\ " and ext["msg"] == "a=b\nc\\d"


def test_strict_parser_rejects_malformed():
    from tests.syslog_peers import Malformed

    good = b'<165>1 2024-01-01T00:00:00.5Z h app - id [a@1 k="v\\]"] msg'
    assert parse_5424(good).sd == [("a@1", {"k": "v]"})]
    for bad in [b'<192>1 - h a - - -', b'<13>2 - h a - - -', b'<13>1 2024-13-01T00:00:00Z h a - - -',
                b'<13>1 2024-01-01 00:00:00 h a - - -', b'<13>1 - h a - ' + b"m" * 33 + b' -',
                b'<13>1 - h a - - [a@1 k="v]"]', b'<13>1 - h a - - [nopen k="v"]', b'<13>1 - h a - - [a@1 k=v]',
                b'<13>1 - h a - - -msg', b'<013>1 - h a - - -', b'<13>1 - h a - - - \xff']:
        with pytest.raises(Malformed):
            parse_5424(bad)
    with StrictSyslogServer() as server:  # the server drops a connection that sends a malformed frame
        import socket

        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(b"10 <13>1 - h ")
            time.sleep(0.1)
        deadline = time.time() + 2
        while not server.errors and time.time() < deadline:
            time.sleep(0.02)
        assert server.errors and not server.messages


def test_tls_untrusted_certificate_is_transient_then_verify_off(tmp_path, store):
    ctx, _ = server_context(tmp_path)
    other_ca, _, _ = make_cert(tmp_path / "other", name="other.test")
    alerts = [make_alert(i) for i in range(3)]
    with StrictSyslogServer(tls=ctx) as server:
        config = cfg(protocol="tls", port=server.port, ca_file=other_ca, retry={"attempts": 2})
        report = run(config, alerts, store)
        assert report.delivered == 0 and report.left == 3 and "certificate verify failed" in report.error
        assert not server.messages
        report = run(cfg(protocol="tls", port=server.port, verify=False), alerts, store)
        assert report.delivered == 3
        assert len(server.wait_for(3)) == 3
    assert assert_nothing_lost(report, alerts, store) == (3, 0, 0)


def test_tls_client_certificate_with_secret_password(tmp_path, store, monkeypatch):
    password = "pw-9f8e7d6c5b4a-never-shown"
    monkeypatch.setenv("SYSLOG_KEY_PASSWORD", password)
    client_ca, client_cert, client_key = make_cert(tmp_path / "client", name="soclake-client", client=True,
                                                   password=password.encode())
    ctx, ca = server_context(tmp_path, client_ca=client_ca)
    alerts = [make_alert(i) for i in range(4)]
    with StrictSyslogServer(tls=ctx) as server:
        no_cert = cfg(protocol="tls", port=server.port, ca_file=ca, retry={"attempts": 2, "timeout": 2})
        denied = run(no_cert, alerts, store)
        assert denied.delivered == 0 and denied.left == 4 and denied.error
        config = cfg(protocol="tls", port=server.port, ca_file=ca, cert_file=client_cert, key_file=client_key,
                     key_password={"env": "SYSLOG_KEY_PASSWORD"})
        sink = SyslogSink(config)
        report = run(config, alerts, store, sink=sink)
        assert report.delivered == 4
        assert collections.Counter(m.sd[0][1]["alertId"] for m in server.wait_for(4)) == {a.id: 1 for a in alerts}
    assert assert_nothing_lost(report, alerts, store) == (4, 0, 0)
    monkeypatch.setenv("SYSLOG_KEY_PASSWORD", "wrong-password-also-secret")
    with pytest.raises(ConfigError) as err:
        SyslogSink(config)
    shown = [str(err.value), repr(config), config.model_dump_json(), json.dumps(denied.to_dict()),
             json.dumps(report.to_dict()), repr(vars(sink))]
    for text in shown:
        assert password not in text and "wrong-password-also-secret" not in text
    assert "cannot load TLS files" in str(err.value)


# --- configuration ---------------------------------------------------------------------------------------------

def test_config_defaults_validation_and_registry(tmp_path):
    from pipeline.forward.registry import SINK_TYPES

    assert SINK_TYPES["syslog"] == (SyslogConfig, SyslogSink)
    path = tmp_path / "forward.yml"
    path.write_text("sinks:\n  - {name: s, type: syslog, host: 127.0.0.1, protocol: udp, facility: local7}\n")
    [sc] = load_config(path)[1]
    sink = SyslogSink(sc)
    assert (sink.port, sink.limit, sink.pri_base) == (514, 2048, 23 * 8)
    assert SyslogSink(cfg(protocol="tcp")).limit == 65536 and SyslogSink(cfg(protocol="tls")).port == 6514
    assert SyslogSink(cfg(protocol="tls")).limit == 65536
    for bad in ["{name: s, type: syslog, host: h, colour: red}",
                "{name: s, type: syslog, host: h, protocol: udp, framing: lf}",
                "{name: s, type: syslog, host: h, protocol: tcp, ca_file: /x}",
                "{name: s, type: syslog, host: h, facility: local9}",
                "{name: s, type: syslog, host: h, app_name: 'two words'}",
                "{name: s, type: syslog, host: h, protocol: tls, key_password: plain}",
                "{name: s, type: syslog, host: h, rfc: 3165}"]:
        path.write_text(f"sinks:\n  - {bad}\n")
        with pytest.raises(ConfigError):
            load_config(path)
