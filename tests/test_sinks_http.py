"""HTTP sinks (Splunk HEC, Elasticsearch _bulk, webhooks) against real protocol peers on 127.0.0.1,
driven through the real delivery loop and outbox (LocalStore in tmp_path) with a stubbed sleep.

Every test checks the books: each alert is delivered, parked or pending (exactly one of them);
nothing is counted delivered that did not arrive; idempotent destinations (Elasticsearch by _id,
PagerDuty by dedup_key) hold exactly one copy whatever was resent.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import json
import logging
import re
from collections import Counter

import pytest
from pydantic import ValidationError

from pipeline.detect.alerts import Alert, AlertAttack, Evidence
from pipeline.errors import ConfigError
from pipeline.forward.base import PermanentSinkError, TransientSinkError
from pipeline.forward.deliver import deliver
from pipeline.forward.outbox import Outbox
from pipeline.forward.registry import SINK_TYPES, build_sink
from pipeline.forward.sinks.http_common import endpoint_label, parse_retry_after
from pipeline.forward.sinks.splunk_hec import SplunkHecSink, hec_base
from pipeline.lake import LocalStore
from tests.http_peers import EsPeer, HecPeer, JsonPeer, PagerDutyPeer, SlackPeer

HEC_TOKEN = "0b6f4a1e-5e0d-4c2a-hec-token-9f1d"
BAD_HEC_TOKEN = "ffffffff-bad-token-not-splunks-0000"
ES_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
ES_PASSWORD = "es-p4ssw0rd-elastic-xyz"
PD_KEY = "R0UT1NGKEYsoclake00000000000001"
BAD_PD_KEY = "R0UT1NGKEYsoclake0000000000bad0"
SLACK_PATH = "/services/T0SOC/B0LAKE/s3cr3tPathToken0123456789"
SECRETS = [HEC_TOKEN, BAD_HEC_TOKEN, ES_KEY, ES_PASSWORD, PD_KEY, BAD_PD_KEY, "s3cr3tPathToken", "B0LAKE"]
T0 = dt.datetime(2024, 5, 1, 23, 10, tzinfo=dt.UTC)


def make_alert(i: int, *, severity: str = "high", detected_at: dt.datetime | None = None, actor: str | None = None,
               event_count: int | None = None) -> Alert:
    first = T0 + dt.timedelta(minutes=20 * i)  # i >= 3 falls on the next day (another daily index)
    start = first.replace(hour=0, minute=0)
    return Alert(
        id=f"{i:032x}", rule_id="console_login_without_mfa", rule_version=2,
        title=f"Console login without MFA by user{i}", severity=severity, first_seen=first,
        last_seen=first + dt.timedelta(minutes=5), event_count=event_count or i + 1, account_id="111122223333",
        region="us-east-1", actor=actor or f"arn:aws:iam::111122223333:user/user{i}", source_ips=["203.0.113.9"],
        resources=[f"arn:aws:iam::111122223333:user/user{i}"],
        attack=AlertAttack(tactics=["TA0001"], techniques=["T1078.004"]), practice="identity",
        runbook="Confirm the login with the user; enforce MFA.", dedup_key={"actor": f"user{i}"},
        window_start=start, window_end=start + dt.timedelta(days=1), evidence=[Evidence(event_id=f"ev-{i}")],
        entities=[f"principal:user{i}"], detected_at=detected_at or T0 + dt.timedelta(hours=2),
    )


class Sleeper:
    """The stubbed sleep: records what was asked; ``on={n: fn}`` runs fn at the n-th call."""

    def __init__(self, on=None):
        self.calls: list[float] = []
        self.on = on or {}
        self.now = 0.0

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds
        if fn := self.on.get(len(self.calls)):
            fn()

    def clock(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "lake")


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for var, value in {"T_HEC_TOKEN": HEC_TOKEN, "T_BAD_HEC_TOKEN": BAD_HEC_TOKEN, "T_ES_KEY": ES_KEY,
                       "T_ES_PASSWORD": ES_PASSWORD, "T_PD_KEY": PD_KEY, "T_BAD_PD_KEY": BAD_PD_KEY}.items():
        monkeypatch.setenv(var, value)


def books(alerts, name, store, arrived: Counter, idempotent_copies=None) -> tuple[set, set, set]:
    """Delivered / parked / pending from the saved outbox; checks they partition the alerts."""
    box = Outbox.load(store, name)
    ids = {a.id for a in alerts}
    parked = {a.id for a in alerts if box.parked.get(a.id, {}).get("version") == Outbox.version(a)}
    delivered = {a.id for a in alerts if a.id not in parked and box.delivered.get(a.id) == Outbox.version(a)}
    pending = {a.id for a in alerts if box.pending(a)}
    assert delivered | parked | pending == ids
    assert len(delivered) + len(parked) + len(pending) == len(ids)  # nothing lost, nothing in two states
    assert delivered <= {i for i, n in arrived.items() if n > 0}  # "delivered" means it is there
    if idempotent_copies is not None:
        assert all(idempotent_copies(i) == 1 for i in delivered)
    return delivered, parked, pending


def slack_arrived(peer: SlackPeer) -> Counter:
    return Counter(re.search(r"soclake alert `(\w+)`", m["blocks"][-1]["elements"][0]["text"])[1]
                   for m in peer.messages)


def assert_clean(*things) -> None:
    for thing in things:
        text = thing if isinstance(thing, str) else json.dumps(thing, default=str)
        for secret in SECRETS:
            assert secret not in text


# -- the four destinations, behind one interface for the fault tests ------------------------------


class Kind:
    def __init__(self, name, peer, raw, idempotent):
        self.name, self.peer, self.raw, self.idempotent = name, peer, raw, idempotent

    def cfg(self, **over):
        return SINK_TYPES[self.raw["type"]][0].model_validate({**self.raw, **over})

    def sink(self, cfg):
        return build_sink(cfg)

    def arrived(self) -> Counter:
        p = self.peer
        if isinstance(p, HecPeer):
            return p.alert_ids()
        if isinstance(p, EsPeer):
            return Counter(p.writes)
        if isinstance(p, PagerDutyPeer):
            return Counter({k: len(v) for k, v in p.incidents.items()})
        return slack_arrived(p)

    def copies(self, alert_id):
        """Copies held at an idempotent destination (None for the others)."""
        if isinstance(self.peer, EsPeer):
            return self.peer.copies(alert_id)
        if isinstance(self.peer, PagerDutyPeer):
            return int(alert_id in self.peer.incidents)
        return None

    def books(self, alerts, store):
        return books(alerts, self.raw["name"], store, self.arrived(), self.copies if self.idempotent else None)

    def busy(self) -> tuple[int, bytes]:
        if isinstance(self.peer, HecPeer):
            return 503, b'{"text":"Server is busy","code":9}'
        if isinstance(self.peer, EsPeer):
            return 503, b'{"error":{"type":"cluster_block_exception","reason":"no master"},"status":503}'
        return 500, b"internal_error"


@pytest.fixture(params=["splunk_hec", "elasticsearch", "slack", "pagerduty"])
def kind(request, monkeypatch):
    name = request.param
    if name == "splunk_hec":
        peer = HecPeer(HEC_TOKEN).start()
        raw = {"name": "splunk", "type": "splunk_hec", "url": peer.url, "token": {"env": "T_HEC_TOKEN"},
               "index": "security"}
        k = Kind(name, peer, raw, idempotent=False)
    elif name == "elasticsearch":
        peer = EsPeer(api_key=ES_KEY).start()
        raw = {"name": "elastic", "type": "elasticsearch", "url": peer.url, "api_key": {"env": "T_ES_KEY"}}
        k = Kind(name, peer, raw, idempotent=True)
    elif name == "slack":
        peer = SlackPeer(SLACK_PATH).start()
        monkeypatch.setenv("T_SLACK_URL", peer.url + SLACK_PATH)
        raw = {"name": "slack", "type": "webhook", "template": "slack", "url": {"env": "T_SLACK_URL"}}
        k = Kind(name, peer, raw, idempotent=False)
    else:
        peer = PagerDutyPeer(PD_KEY).start()
        raw = {"name": "pd", "type": "webhook", "template": "pagerduty", "url": peer.url + "/v2/enqueue",
               "routing_key": {"env": "T_PD_KEY"}}
        k = Kind(name, peer, raw, idempotent=True)
    yield k
    peer.stop()


FAST = {"attempts": 4, "base_delay": 0.01, "max_delay": 30.0}


def test_delivers_each_alert_once_and_not_again(kind, store):
    alerts = [make_alert(i) for i in range(5)]
    cfg = kind.cfg(retry=FAST)
    sleep = Sleeper()
    (r,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=sleep)
    assert (r.pending, r.delivered, r.left, r.parked, r.error) == (5, 5, 0, {}, None)
    assert kind.arrived() == Counter({a.id: 1 for a in alerts})
    delivered, _, _ = kind.books(alerts, store)
    assert delivered == {a.id for a in alerts} and sleep.calls == []
    sent = len(kind.peer.requests)
    (r2,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=sleep)
    assert r2.pending == 0 and len(kind.peer.requests) == sent  # the outbox knows: nothing resent


def test_down_then_back(kind, store):
    alerts = [make_alert(i) for i in range(3)]
    kind.peer.down()
    cfg = kind.cfg(retry={**FAST, "attempts": 2})
    (r1,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=Sleeper())
    assert (r1.delivered, r1.left, r1.parked, r1.attempts) == (0, 3, {}, 2)
    assert "connection refused" in r1.error
    assert kind.books(alerts, store)[2] == {a.id for a in alerts}  # all pending: kept for the next run

    sleep = Sleeper(on={2: kind.peer.up})  # comes back during the second backoff of the next run
    cfg = kind.cfg(retry=FAST)
    (r2,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=sleep)
    assert (r2.delivered, r2.left, r2.error) == (3, 0, None)
    assert len(sleep.calls) == 2 and all(0 <= s <= 0.01 * 2 ** n for n, s in enumerate(sleep.calls))
    assert kind.arrived() == Counter({a.id: 1 for a in alerts})
    assert kind.books(alerts, store)[0] == {a.id for a in alerts}


def test_server_errors_then_ok(kind, store):
    alerts = [make_alert(i) for i in range(3)]
    status, body = kind.busy()
    kind.peer.fail(2, status, body)
    cfg = kind.cfg(retry=FAST)
    sleep = Sleeper()
    (r,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=sleep)
    assert (r.delivered, r.left, r.error) == (3, 0, None) and len(sleep.calls) == 2
    assert kind.arrived() == Counter({a.id: 1 for a in alerts})
    assert kind.books(alerts, store)[0] == {a.id for a in alerts}


def test_server_errors_past_the_attempts_leave_alerts_pending(kind, store):
    alerts = [make_alert(i) for i in range(2)]
    status, body = kind.busy()
    kind.peer.fail(10, status, body)
    cfg = kind.cfg(retry={**FAST, "attempts": 3})
    (r,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=Sleeper())
    assert (r.delivered, r.left, r.parked) == (0, 2, {}) and f"HTTP {status}" in r.error
    assert kind.books(alerts, store)[2] == {a.id for a in alerts}


def test_429_retry_after_is_honoured(kind, store):
    alerts = [make_alert(i) for i in range(2)]
    kind.peer.fail(1, 429, b'{"text":"slow down"}', headers={"Retry-After": "7"})
    cfg = kind.cfg(retry=FAST)
    sleep = Sleeper()
    (r,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=sleep)
    assert sleep.calls == [7.0]
    assert (r.delivered, r.left) == (2, 0)
    assert kind.arrived() == Counter({a.id: 1 for a in alerts})
    kind.books(alerts, store)


def test_slow_response_past_the_timeout_is_resent(kind, store):
    alerts = [make_alert(i) for i in range(2)]
    kind.peer.slow(1, 1.0)  # processed, but answered after the client gave up
    cfg = kind.cfg(retry={**FAST, "timeout": 0.3})
    sleep = Sleeper()
    (r,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=sleep)
    assert (r.delivered, r.left, r.error) == (2, 0, None) and len(sleep.calls) == 1
    arrived = kind.arrived()
    assert arrived[alerts[0].id] == 2 and arrived[alerts[1].id] >= 1  # at least once: the slow one again
    delivered, _, _ = kind.books(alerts, store)  # idempotent ones: still exactly one copy
    assert delivered == {a.id for a in alerts}


class CrashingStore(LocalStore):
    """The outbox save after a successful send fails once: a crash between send and state update."""

    crashes = 1

    def put(self, rel, data):
        if rel.startswith("_state/outbox/") and self.crashes:
            self.crashes -= 1
            raise OSError("simulated crash before the outbox was saved")
        super().put(rel, data)


def test_crash_between_send_and_state_update_resends(kind, tmp_path):
    alerts = [make_alert(i) for i in range(3)]
    store = CrashingStore(tmp_path / "lake")
    cfg = kind.cfg(retry=FAST)
    (r1,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=Sleeper())
    assert "simulated crash" in r1.error
    assert Outbox.load(store, cfg.name).delivered == {}  # nothing was recorded
    (r2,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=Sleeper())
    assert (r2.pending, r2.delivered, r2.left, r2.error) == (3, 3, 0, None)
    arrived = kind.arrived()
    assert arrived[alerts[0].id] == 2 and all(arrived[a.id] >= 1 for a in alerts)
    delivered, _, _ = kind.books(alerts, store)  # ES and PagerDuty: one copy each all the same
    assert delivered == {a.id for a in alerts}


def _permanent(kind, alerts, monkeypatch):
    """Script a permanent refusal; returns (config overrides, refused ids, expected reason text)."""
    ids = {a.id for a in alerts}
    if kind.name == "splunk_hec":
        kind.peer.indexes = {"main"}
        return {"index": "no_such_index"}, ids, "HTTP 400: Incorrect index (code 7)"
    if kind.name == "elasticsearch":
        kind.peer.reject = {alerts[1].id: ("mapper_parsing_exception", "failed to parse field [event_count]")}
        return {}, {alerts[1].id}, "HTTP 400: mapper_parsing_exception: failed to parse field [event_count]"
    if kind.name == "slack":
        monkeypatch.setenv("T_SLACK_URL", kind.peer.url + "/services/T0SOC/B0LAKE/revokedToken9")
        return {}, ids, "HTTP 404: no_service"
    return {"routing_key": {"env": "T_BAD_PD_KEY"}}, ids, "Invalid routing key"


def test_permanent_rejection_is_parked_with_the_reason(kind, store, monkeypatch):
    alerts = [make_alert(i) for i in range(3)]
    over, refused, reason = _permanent(kind, alerts, monkeypatch)
    cfg = kind.cfg(retry=FAST, **over)
    sleep = Sleeper()
    (r,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=sleep)
    assert sleep.calls == []  # a permanent refusal is not retried
    assert set(r.parked) == refused and all(reason in v for v in r.parked.values())
    assert r.delivered == len(alerts) - len(refused) and r.left == 0
    delivered, parked, pending = kind.books(alerts, store)
    assert parked == refused and pending == set() and delivered == {a.id for a in alerts} - refused
    box = Outbox.load(store, cfg.name)
    assert all(reason in box.parked[i]["reason"] for i in refused)
    assert all(kind.arrived()[i] == 0 for i in refused)
    assert_clean(r.to_dict(), box.parked)
    sent = len(kind.peer.requests)
    (r2,) = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=sleep)
    assert r2.pending == 0 and len(kind.peer.requests) == sent  # parked stays parked


def _echo(req) -> bytes:
    """A hostile peer: echoes the credentials it received (header, path, body) in its error answer."""
    return json.dumps({"auth": req.headers.get("authorization"), "path": req.path,
                       "body": req.body.decode("utf-8", "replace")[:400]}).encode()


def test_secrets_never_appear_in_reports_state_logs_or_exceptions(kind, store, caplog):
    caplog.set_level(logging.DEBUG)
    alerts = [make_alert(i) for i in range(2)]
    cfg = kind.cfg(retry={**FAST, "attempts": 2})
    kind.peer.fail(1, 500, _echo)  # transient: in report.error
    if kind.name == "elasticsearch":  # ES refuses items inside a 200 answer: echo there
        kind.peer.reject = {alerts[0].id: ("mapper_parsing_exception", f"bad Authorization ApiKey {ES_KEY}")}
    else:
        kind.peer.fail(1, 400, _echo)  # permanent: parked reason, saved in the outbox
    r1, = deliver(alerts, [(cfg, kind.sink(cfg))], store, sleep=Sleeper())
    reasons = list(r1.parked.values())
    assert reasons and all("[redacted]" in v for v in reasons)  # the echo came back, its secrets did not
    kind.peer.down()
    (r2,) = deliver([make_alert(7)], [(cfg, kind.sink(cfg))], store, sleep=Sleeper())
    assert r2.error
    errors = []
    sink = kind.sink(cfg)
    for setup in (lambda: None, lambda: kind.peer.up() or kind.peer.fail(1, 503, _echo),
                  lambda: kind.peer.fail(1, 403, _echo)):
        setup()
        try:
            res = sink.send([make_alert(8)])
            errors += [*res.retry.values(), *res.rejected.values()]
        except (TransientSinkError, PermanentSinkError) as e:
            errors += [str(e), repr(e), str(e.__cause__)]
    sink.close()
    assert len(errors) >= 3
    assert_clean(r1.to_dict(), r2.to_dict(), errors, caplog.text, repr(cfg),
                 store.get(f"_state/outbox/{cfg.name}.json").decode())


# -- Splunk HEC -----------------------------------------------------------------------------------


@pytest.fixture
def hec():
    peer = HecPeer(HEC_TOKEN).start()
    yield peer
    peer.stop()


def _hec_cfg(peer, **over):
    raw = {"name": "splunk", "type": "splunk_hec", "url": peer.url, "token": {"env": "T_HEC_TOKEN"},
           "retry": FAST, **over}
    return SINK_TYPES["splunk_hec"][0].model_validate(raw)


@pytest.mark.parametrize("gzip", [True, False])
def test_hec_event_shape(hec, store, gzip):
    alerts = [make_alert(i, severity=s) for i, s in enumerate(["critical", "low", "info"])]
    cfg = _hec_cfg(hec, url=hec.url + "/services/collector/event", index="security", source="soclake-test",
                   host="soclake-01", gzip=gzip)
    (r,) = deliver(alerts, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
    assert r.delivered == 3
    (req,) = hec.requests
    assert req.path == "/services/collector/event" and req.headers["authorization"] == f"Splunk {HEC_TOKEN}"
    assert (req.headers.get("content-encoding") == "gzip") is gzip and (req.raw != req.body) is gzip
    assert [e["fields"] for e in hec.events] == [
        {"alert_id": a.id, "rule_id": a.rule_id, "severity": a.severity} for a in alerts]
    for ev, a in zip(hec.events, alerts):
        assert ev["time"] == a.last_seen.timestamp()
        assert ev["event"] == json.loads(a.model_dump_json())
        assert (ev["index"], ev["sourcetype"], ev["source"], ev["host"]) == (
            "security", "soclake:alert", "soclake-test", "soclake-01")
    books(alerts, "splunk", store, hec.alert_ids())


def test_hec_base_url_forms():
    assert hec_base("https://s.example.com:8088") == "https://s.example.com:8088"
    assert hec_base("https://s.example.com:8088/services/collector/event/") == "https://s.example.com:8088"
    assert hec_base("https://gw.example.com/splunk/services/collector") == "https://gw.example.com/splunk"


def test_hec_bad_event_is_isolated_and_parked(hec, store):
    alerts = [make_alert(i) for i in range(4)]
    hec.poison = {alerts[2].id}
    cfg = _hec_cfg(hec)
    sleep = Sleeper()
    (r,) = deliver(alerts, [(cfg, build_sink(cfg))], store, sleep=sleep)
    assert len(hec.requests) == 1 + 4 and sleep.calls == []  # the batch, then one request per alert
    assert r.parked == {alerts[2].id: f"{hec.url}: HTTP 400: Invalid data format (code 6)"}
    assert r.delivered == 3
    arrived = hec.alert_ids()
    assert arrived[alerts[2].id] == 0 and all(arrived[a.id] >= 1 for a in alerts if a is not alerts[2])
    # Splunk indexes the events before a bad one: those two arrived twice (at least once, never lost).
    assert arrived[alerts[0].id] == arrived[alerts[1].id] == 2 and arrived[alerts[3].id] == 1
    delivered, parked, _ = books(alerts, "splunk", store, arrived)
    assert parked == {alerts[2].id} and len(delivered) == 3


def test_hec_indexer_acknowledgement(store):
    peer = HecPeer(HEC_TOKEN, ack=True).start()
    try:
        peer.ack_after_polls = 2  # "false" twice, then indexed
        alerts = [make_alert(i) for i in range(3)]
        cfg = _hec_cfg(peer, ack=True, ack_poll_interval=0.25, ack_timeout=10)
        polls = Sleeper()
        sink = SplunkHecSink(cfg, sleep=polls, clock=polls.clock)
        (r,) = deliver(alerts, [(cfg, sink)], store, sleep=Sleeper())
        assert (r.delivered, r.left) == (3, 0) and polls.calls == [0.25, 0.25]
        event, *acks = peer.requests
        assert [q.path for q in acks] == ["/services/collector/ack"] * 3
        channel = event.headers["x-splunk-request-channel"]
        assert re.fullmatch(r"[0-9a-f-]{36}", channel) and all(
            q.headers["x-splunk-request-channel"] == channel for q in acks)
        assert json.loads(acks[0].body) == {"acks": [0]}
        books(alerts, "splunk", store, peer.alert_ids())
    finally:
        peer.stop()


def test_hec_missing_acknowledgement_is_resent(store):
    peer = HecPeer(HEC_TOKEN, ack=True).start()
    try:
        peer.never_ack = True
        alerts = [make_alert(i) for i in range(2)]
        cfg = _hec_cfg(peer, ack=True, ack_poll_interval=1, ack_timeout=3, retry={**FAST, "attempts": 2})
        polls = Sleeper()
        (r1,) = deliver(alerts, [(cfg, SplunkHecSink(cfg, sleep=polls, clock=polls.clock))], store, sleep=Sleeper())
        assert (r1.delivered, r1.left) == (0, 2) and "no indexer acknowledgement within 3s" in r1.error
        assert polls.calls == [1, 1, 1] * 2  # two attempts, each polling until the deadline
        assert books(alerts, "splunk", store, peer.alert_ids())[2] == {a.id for a in alerts}
        peer.never_ack = False
        (r2,) = deliver(alerts, [(cfg, SplunkHecSink(cfg, sleep=polls, clock=polls.clock))], store, sleep=Sleeper())
        assert (r2.delivered, r2.left) == (2, 0)
        assert peer.alert_ids() == Counter({a.id: 3 for a in alerts})  # at least once: unacked batches resent
        books(alerts, "splunk", store, peer.alert_ids())
    finally:
        peer.stop()


def _self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (cryptography comes with moto, a test dependency)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "soclake test peer")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = tmp_path / "peer.crt", tmp_path / "peer.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


def test_hec_over_tls_unknown_certificate_stays_pending_then_ca_file_delivers(tmp_path, store):
    peer = HecPeer(HEC_TOKEN)
    peer.tls = _self_signed(tmp_path)
    peer.start()
    try:
        alerts = [make_alert(i) for i in range(2)]
        cfg = _hec_cfg(peer, retry={**FAST, "attempts": 2})
        (r1,) = deliver(alerts, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
        assert (r1.delivered, r1.parked, r1.left) == (0, {}, 2) and "TLS error" in r1.error
        assert peer.events == []
        cfg = _hec_cfg(peer, ca_file=peer.tls[0])
        (r2,) = deliver(alerts, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
        assert (r2.delivered, r2.left) == (2, 0)
        insecure = _hec_cfg(peer, name="insecure", verify_tls=False)
        (r3,) = deliver(alerts, [(insecure, build_sink(insecure))], store, sleep=Sleeper())
        assert r3.delivered == 2
        assert peer.alert_ids() == Counter({a.id: 2 for a in alerts})
        books(alerts, "splunk", store, peer.alert_ids())
    finally:
        peer.stop()


# -- Elasticsearch --------------------------------------------------------------------------------


@pytest.fixture
def es():
    peer = EsPeer(api_key=ES_KEY).start()
    yield peer
    peer.stop()


def _es_cfg(peer, **over):
    raw = {"name": "elastic", "type": "elasticsearch", "url": peer.url, "api_key": {"env": "T_ES_KEY"},
           "retry": FAST, **over}
    return SINK_TYPES["elasticsearch"][0].model_validate(raw)


def test_es_daily_indices_document_ids_and_shape(es, store):
    alerts = [make_alert(i) for i in range(5)]
    cfg = _es_cfg(es)
    (r,) = deliver(alerts, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
    assert r.delivered == 5
    assert {k: sorted(v) for k, v in es.indices.items()} == {
        "soclake-alerts-2024.05.01": [a.id for a in alerts[:3]],
        "soclake-alerts-2024.05.02": [a.id for a in alerts[3:]]}
    (req,) = es.requests
    assert req.headers["authorization"] == f"ApiKey {ES_KEY}"
    assert req.headers["content-type"] == "application/x-ndjson"
    doc = es.docs()[alerts[0].id]
    assert doc.pop("@timestamp") == alerts[0].last_seen.isoformat()
    assert doc == json.loads(alerts[0].model_dump_json())
    books(alerts, "elastic", store, Counter(es.writes), es.copies)


def test_es_ocsf_and_basic_auth(store):
    peer = EsPeer(basic=("soclake", ES_PASSWORD)).start()
    try:
        cfg = _es_cfg(peer, api_key=None, username="soclake", password={"env": "T_ES_PASSWORD"}, format="ocsf",
                      index_prefix="findings")
        alerts = [make_alert(0)]
        (r,) = deliver(alerts, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
        assert r.delivered == 1
        doc = peer.indices["findings-2024.05.01"][alerts[0].id]
        assert doc["class_uid"] == 2004 and doc["finding_info"]["uid"] == alerts[0].id
        books(alerts, "elastic", store, Counter(peer.writes), peer.copies)
    finally:
        peer.stop()


def test_es_partial_failure_resends_only_the_failed_items(es, store):
    alerts = [make_alert(i) for i in range(6)]
    es.item_faults = {alerts[1].id: [429], alerts[4].id: [503, 503]}
    es.reject = {alerts[3].id: ("mapper_parsing_exception", "failed to parse field [event_count] of type [long]")}
    sleep = Sleeper()
    (r,) = deliver(alerts, [(_es_cfg(es), build_sink(_es_cfg(es)))], store, sleep=sleep)
    assert (r.delivered, r.left, r.attempts, len(sleep.calls)) == (5, 0, 3, 2)
    assert r.parked == {alerts[3].id: f"{es.url}: HTTP 400: mapper_parsing_exception: failed to parse field "
                                      "[event_count] of type [long]"}
    resent = [[json.loads(line)["index"]["_id"] for line in q.body.decode().splitlines()[0::2]]
              for q in es.requests[1:]]
    assert resent == [[alerts[1].id, alerts[4].id], [alerts[4].id]]
    assert es.writes == Counter({a.id: 1 for a in alerts if a is not alerts[3]})
    delivered, parked, _ = books(alerts, "elastic", store, Counter(es.writes), es.copies)
    assert parked == {alerts[3].id} and len(delivered) == 5


def test_es_newer_version_overwrites_the_same_document(es, store):
    v1 = [make_alert(i) for i in range(3)]
    v2 = [make_alert(i, detected_at=T0 + dt.timedelta(hours=3), event_count=50) for i in range(3)]
    cfg = _es_cfg(es)
    deliver(v1, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
    (r,) = deliver(v2, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
    assert r.pending == 3 and r.delivered == 3
    assert all(es.copies(a.id) == 1 and es.docs()[a.id]["event_count"] == 50 for a in v2)
    books(v2, "elastic", store, Counter(es.writes), es.copies)


def test_es_request_too_large_is_split(es, store):
    alerts = [make_alert(i) for i in range(4)]
    es.fail(1, 413, b'{"error":"Request Entity Too Large","status":413}')
    sleep = Sleeper()
    (r,) = deliver(alerts, [(_es_cfg(es), build_sink(_es_cfg(es)))], store, sleep=sleep)
    assert (r.delivered, r.attempts, sleep.calls) == (4, 1, [])
    assert len(es.requests) == 3
    books(alerts, "elastic", store, Counter(es.writes), es.copies)


def test_es_bad_credentials_keep_alerts_pending(es, store, monkeypatch):
    """Wrong credentials are not the alerts' fault: they wait for the fixed token, never parked."""
    monkeypatch.setenv("T_ES_KEY", "d3Jvbmcta2V5LXdyb25nLWtleQ==")
    alerts = [make_alert(0)]
    (r,) = deliver(alerts, [(_es_cfg(es), build_sink(_es_cfg(es)))], store, sleep=Sleeper())
    assert r.parked == {} and r.left == 1 and r.delivered == 0
    assert "HTTP 401" in r.error and "check the sink's token or credentials" in r.error
    assert "d3Jvbmcta2V5" not in json.dumps(r.to_dict())


# -- webhooks ---------------------------------------------------------------------------------------


def _hook_cfg(**raw):
    return SINK_TYPES["webhook"][0].model_validate({"name": "hook", "type": "webhook", "retry": FAST, **raw})


def test_slack_payload_escapes_alert_text(store, monkeypatch):
    peer = SlackPeer(SLACK_PATH).start()
    try:
        monkeypatch.setenv("T_SLACK_URL", peer.url + SLACK_PATH)
        alerts = [make_alert(0, actor="<!channel> <https://evil.example|click>"), make_alert(1, severity="critical")]
        cfg = _hook_cfg(template="slack", url={"env": "T_SLACK_URL"})
        (r,) = deliver(alerts, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
        assert r.delivered == 2 and len(peer.requests) == 2  # one message per alert
        m0, m1 = peer.messages
        assert m0["text"] == "[HIGH] Console login without MFA by user0"
        assert [b["type"] for b in m0["blocks"]] == ["header", "section", "section", "context"]
        actor = next(f["text"] for f in m0["blocks"][1]["fields"] if f["text"].startswith("*Actor*"))
        assert actor == "*Actor*\n&lt;!channel&gt; &lt;https://evil.example|click&gt;"
        assert m1["blocks"][0]["text"]["text"].startswith(":red_circle: [CRITICAL]")
        books(alerts, "hook", store, slack_arrived(peer))
    finally:
        peer.stop()


def test_slack_429_mid_batch_resends_only_the_rest(store, monkeypatch):
    peer = SlackPeer(SLACK_PATH).start()
    try:
        monkeypatch.setenv("T_SLACK_URL", peer.url + SLACK_PATH)
        alerts = [make_alert(i) for i in range(3)]
        cfg = _hook_cfg(template="slack", url={"env": "T_SLACK_URL"}, batch_size=3)
        peer.fail(1, 429, b"rate_limited", headers={"Retry-After": "2"}, skip=1)  # the second message
        sleep = Sleeper()
        (r,) = deliver(alerts, [(cfg, build_sink(cfg))], store, sleep=sleep)
        assert sleep.calls == [2.0] and (r.delivered, r.left, r.attempts) == (3, 0, 2)
        assert len(peer.requests) == 4  # alert 0, alert 1 (429), then alerts 1 and 2 only
        assert slack_arrived(peer) == Counter({a.id: 1 for a in alerts})
        books(alerts, "hook", store, slack_arrived(peer))
    finally:
        peer.stop()


@pytest.mark.parametrize("card", ["adaptive", "messagecard"])
def test_teams_cards(store, card):
    peer = JsonPeer(202, b"").start()
    try:
        alerts = [make_alert(0, severity="critical")]
        cfg = _hook_cfg(template="teams", teams_card=card, url=peer.url + "/workflows/abc/triggers/manual")
        (r,) = deliver(alerts, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
        assert r.delivered == 1
        (body,) = peer.bodies
        if card == "adaptive":
            att = body["attachments"][0]
            assert body["type"] == "message" and att["contentType"] == "application/vnd.microsoft.card.adaptive"
            assert att["content"]["type"] == "AdaptiveCard" and att["content"]["body"][0]["color"] == "Attention"
            assert {"title": "Account", "value": "111122223333"} in att["content"]["body"][1]["facts"]
        else:
            assert body["@type"] == "MessageCard" and body["themeColor"] == "8B0000"
            assert body["title"] == "[CRITICAL] Console login without MFA by user0"
        books(alerts, "hook", store, Counter(a.id for a in alerts))
    finally:
        peer.stop()


def test_pagerduty_event_and_dedup(store):
    peer = PagerDutyPeer(PD_KEY).start()
    try:
        sev = ["critical", "high", "medium", "low", "info"]
        alerts = [make_alert(i, severity=s) for i, s in enumerate(sev)]
        cfg = _hook_cfg(template="pagerduty", url=peer.url + "/v2/enqueue", routing_key={"env": "T_PD_KEY"})
        (r,) = deliver(alerts, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
        assert r.delivered == 5
        events = [peer.incidents[a.id][0] for a in alerts]
        assert [e["payload"]["severity"] for e in events] == ["critical", "error", "warning", "info", "info"]
        e = events[0]
        assert (e["routing_key"], e["event_action"], e["dedup_key"]) == (PD_KEY, "trigger", alerts[0].id)
        assert e["payload"]["source"] == "111122223333/us-east-1"
        assert e["payload"]["custom_details"]["alert_id"] == alerts[0].id
        # A newer version updates the same incident (same dedup_key): one incident per alert.
        v2 = [make_alert(0, severity="critical", detected_at=T0 + dt.timedelta(hours=5), event_count=9)]
        deliver(v2, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
        assert len(peer.incidents) == 5 and len(peer.incidents[alerts[0].id]) == 2
        books(v2, "hook", store, Counter(list(peer.incidents)), lambda i: int(i in peer.incidents))
    finally:
        peer.stop()


def test_json_template_batches_headers_and_ocsf(store, monkeypatch):
    monkeypatch.setenv("T_SOAR", "Bearer soar-token-123456")
    SECRETS.append("soar-token-123456")
    peer = JsonPeer().start()
    try:
        alerts = [make_alert(i) for i in range(5)]
        cfg = _hook_cfg(url=peer.url + "/hooks/soclake", method="PUT", batch=True, batch_size=2,
                        headers={"Authorization": {"env": "T_SOAR"}, "X-Source": "soclake"})
        (r,) = deliver(alerts, [(cfg, build_sink(cfg))], store, sleep=Sleeper())
        assert r.delivered == 5 and [len(b) for b in peer.bodies] == [2, 2, 1]
        assert [d["id"] for b in peer.bodies for d in b] == [a.id for a in alerts]
        q = peer.requests[0]
        assert (q.method, q.headers["authorization"], q.headers["x-source"]) == ("PUT", "Bearer soar-token-123456",
                                                                                 "soclake")
        books(alerts, "hook", store, Counter(d["id"] for b in peer.bodies for d in b))
        peer.fail(1, 500, _echo)  # echoes the Authorization header and path back
        sink = build_sink(cfg)
        with pytest.raises(TransientSinkError) as err:
            sink.send([make_alert(9)])
        assert '"auth": "[redacted]"' in str(err.value)
        assert_clean(str(err.value))
        ocsf = _hook_cfg(name="ocsf", url=peer.url + "/ocsf", format="ocsf")
        deliver([make_alert(0)], [(ocsf, build_sink(ocsf))], store, sleep=Sleeper())
        assert peer.bodies[-1]["class_uid"] == 2004
    finally:
        SECRETS.remove("soar-token-123456")
        peer.stop()


# -- configuration and helpers ------------------------------------------------------------------------


@pytest.mark.parametrize("raw, message", [
    ({"type": "splunk_hec", "url": "ftp://x", "token": {"env": "T"}}, "http:// or https://"),
    ({"type": "splunk_hec", "url": "https://x:8088", "token": "plain-token"}, "never written in the config"),
    ({"type": "splunk_hec", "url": "https://x:8088", "token": {"env": "T"}, "tokn": 1}, "Extra inputs"),
    ({"type": "elasticsearch", "url": "https://x", "api_key": {"env": "K"}, "username": "u",
      "password": {"env": "P"}}, "either api_key or username"),
    ({"type": "elasticsearch", "url": "https://x", "username": "u"}, "go together"),
    ({"type": "elasticsearch", "url": "https://x", "index_prefix": "Alerts"}, "lowercase"),
    ({"type": "webhook", "template": "pagerduty"}, "needs routing_key"),
    ({"type": "webhook", "template": "slack"}, "needs url"),
    ({"type": "webhook", "template": "slack", "url": "https://hooks.example/x", "batch": True}, "json only"),
    ({"type": "webhook", "url": "https://x", "routing_key": {"env": "K"}}, "pagerduty only"),
])
def test_config_errors(raw, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        SINK_TYPES[raw["type"]][0].model_validate({"name": "s", **raw})


def test_pagerduty_url_default_and_missing_secret(monkeypatch):
    cfg = _hook_cfg(template="pagerduty", routing_key={"env": "T_PD_KEY"})
    assert cfg.url == "https://events.pagerduty.com/v2/enqueue"
    monkeypatch.delenv("T_PD_KEY")
    with pytest.raises(ConfigError, match="T_PD_KEY is not set"):
        build_sink(cfg)
    monkeypatch.setenv("T_URL", "not a url/with/s3cr3tPathToken")
    with pytest.raises(ConfigError) as err:
        build_sink(_hook_cfg(template="slack", url={"env": "T_URL"}))
    assert_clean(str(err.value))


def test_retry_after_and_endpoint_label():
    assert parse_retry_after("7") == 7.0 and parse_retry_after(" 0 ") == 0.0
    now = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    date = email.utils.format_datetime(now + dt.timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(date, now=now) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert endpoint_label("https://user:pw@hooks.slack.com/services/T/B/secret?x=1") == "https://hooks.slack.com"
    assert endpoint_label("http://127.0.0.1:8088/services/collector") == "http://127.0.0.1:8088"
