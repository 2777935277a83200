"""AWS sinks (Security Hub, SQS, SNS, EventBridge) against a moto server on 127.0.0.1 (real HTTP),
through the real delivery loop and outbox on a LocalStore.

What arrived is read back at the destination: from the queue itself, from an SQS queue subscribed
to the topic, from an SQS queue an EventBridge rule targets, and with Security Hub GetFindings.
Faults are injected on the sink's own botocore client with event hooks: ``before-call`` returns an
error response instead of sending (throttling, 5xx, 429, access denied); per-entry failures drop the
entries from the request in ``before-parameter-build`` (so they never reach moto) and report them as
failed in ``after-call``, in each API's own shape.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from pipeline import aws
from pipeline.detect.alerts import Alert
from pipeline.forward.base import PermanentSinkError, TransientSinkError
from pipeline.forward.config import load_config
from pipeline.forward.deliver import deliver
from pipeline.forward.outbox import Outbox
from pipeline.forward.sinks import aws as awssinks
from pipeline.lake import LocalStore

T = dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC)
ACCOUNT = "123456789012"  # moto's
KEY_ID, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"


def make_alert(aid: str, title="Root console login", runbook="Check who logged in.", detected=T, severity="high"):
    return Alert(id=aid, rule_id="root_console_login", rule_version=1, title=title, severity=severity,
                 first_seen=T, last_seen=T, event_count=1, account_id="111122223333", region="us-east-1",
                 resources=["arn:aws:iam::111122223333:root"], attack={"tactics": ["TA0001"], "techniques": []},
                 practice="identity", runbook=runbook, window_start=T, window_end=T + dt.timedelta(hours=1),
                 detected_at=detected)


def client(name, endpoint):
    return boto3.client(name, endpoint_url=endpoint, region_name="us-east-1")


def drain(sqs, url) -> list[dict]:
    """Read and delete everything in the queue."""
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                   MessageAttributeNames=["All"], AttributeNames=["All"]).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def new_queue(sqs, fifo=False) -> tuple[str, str]:
    name = f"q{uuid.uuid4().hex[:12]}" + (".fifo" if fifo else "")
    url = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"} if fifo else {})["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


# ---------------------------------------------------------------- destinations


@dataclass
class Dest:
    """One destination on moto: how to configure the sink and how to read back what arrived."""

    kind: str
    model: type
    sink_cls: type
    op: str  # botocore operation name
    entries_key: str
    alert_of: object  # request entry -> alert id
    options: dict
    read_fn: object  # () -> list of alert ids newly arrived
    idempotent: bool
    queue: str | None = None  # where SQS, SNS and EventBridge deliveries are read back
    sqs: object = None
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    seen: Counter = field(default_factory=Counter)

    def alerts(self, n, **kw) -> list[Alert]:
        return [make_alert(f"{self.run}{i:04d}", **kw) for i in range(n)]

    def cfg(self, name="aws", **kw):
        return self.model(name=name, type=self.model.model_fields["type"].annotation.__args__[0], **self.options, **kw)

    def read(self) -> Counter:
        """How many copies of each alert arrived so far (queues are drained as they are read)."""
        self.seen.update(self.read_fn())
        return self.seen

    def depth(self) -> int:
        """Messages waiting, read without consuming them: moto forgets a FIFO deduplication id once its
        message is deleted (real SQS keeps it 5 minutes), so dedup checks must not drain in between."""
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def _queue_reader(sqs, url, body_id):
    return lambda: [body_id(json.loads(m["Body"])) for m in drain(sqs, url)]


@pytest.fixture(scope="session")
def hub(moto_endpoint):
    sh = client("securityhub", moto_endpoint)
    try:
        sh.enable_security_hub()
    except ClientError as e:  # already enabled on this server
        assert e.response["Error"]["Code"] == "ResourceConflictException"
    return sh


def findings(sh, prefix) -> list[dict]:
    out, token = [], None
    while True:
        page = sh.get_findings(MaxResults=100, **({"NextToken": token} if token else {}))
        out += [f for f in page["Findings"] if f["Id"].startswith(prefix)]
        token = page.get("NextToken")
        if not token:
            return out


def make_dest(kind, endpoint, hub=None) -> Dest:
    sqs = client("sqs", endpoint)
    fifo = kind.endswith("_fifo")
    if kind.startswith("sqs"):
        url, _ = new_queue(sqs, fifo)
        return Dest(kind, awssinks.SqsConfig, awssinks.SqsSink, "SendMessageBatch", "Entries",
                    lambda e: json.loads(e["MessageBody"])["id"], {"queue_url": url},
                    _queue_reader(sqs, url, lambda b: b["id"]), fifo, url, sqs)
    if kind.startswith("sns"):
        sns = client("sns", endpoint)
        topic = sns.create_topic(Name=f"t{uuid.uuid4().hex[:12]}" + (".fifo" if fifo else ""),
                                 Attributes={"FifoTopic": "true"} if fifo else {})["TopicArn"]
        url, arn = new_queue(sqs, fifo)
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        return Dest(kind, awssinks.SnsConfig, awssinks.SnsSink, "PublishBatch", "PublishBatchRequestEntries",
                    lambda e: json.loads(e["Message"])["id"], {"topic_arn": topic},
                    _queue_reader(sqs, url, lambda b: json.loads(b["Message"])["id"]), fifo, url, sqs)
    if kind == "eventbridge":
        ev = client("events", endpoint)
        bus, rule = f"bus{uuid.uuid4().hex[:10]}", "to-queue"
        url, arn = new_queue(sqs)
        ev.create_event_bus(Name=bus)
        ev.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["soclake"]}))
        ev.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        return Dest(kind, awssinks.EventBridgeConfig, awssinks.EventBridgeSink, "PutEvents", "Entries",
                    lambda e: json.loads(e["Detail"])["id"], {"event_bus_name": bus},
                    _queue_reader(sqs, url, lambda b: b["detail"]["id"]), False, url, sqs)
    assert kind == "securityhub"
    d = Dest(kind, awssinks.SecurityHubConfig, awssinks.SecurityHubSink, "BatchImportFindings", "Findings",
             lambda e: e["Id"], {}, None, True)
    d.read_fn = lambda: []  # Security Hub holds findings: read() is the current state, not new arrivals
    d.read = lambda: Counter(f["Id"] for f in findings(hub, d.run))
    d.depth = lambda: sum(d.read().values())
    return d


ALL = ["sqs", "sqs_fifo", "sns", "sns_fifo", "eventbridge", "securityhub"]
LIMIT = {"sqs": 10, "sqs_fifo": 10, "sns": 10, "sns_fifo": 10, "eventbridge": 10, "securityhub": 100}


@pytest.fixture(params=ALL)
def dest(request, aws_settings, moto_endpoint, hub):
    return make_dest(request.param, moto_endpoint, hub)


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "lake")


def accounted(alerts, store, name):
    """Nothing lost: every alert is delivered, parked or still pending (exactly one of them)."""
    box = Outbox.load(store, name)
    delivered = {a.id for a in alerts if box.delivered.get(a.id) == Outbox.version(a)}
    parked = {a.id for a in alerts if box.parked.get(a.id, {}).get("version") == Outbox.version(a)}
    pending = {a.id for a in alerts if box.pending(a)}
    assert delivered | parked | pending == {a.id for a in alerts}
    assert not (delivered & parked) and not (delivered & pending) and not (parked & pending)
    return delivered, parked, pending


# ---------------------------------------------------------------- fault injection on the sink's client


class Faults:
    """Scripted outcomes for the sink's batch calls, one step per call; also records every call.

    Steps: None (send for real), ("error", status, code, message, headers) for the whole call, or
    {alert_id: (code, message, sender_fault)}: those entries are not sent and are reported failed."""

    def __init__(self, dest: Dest, sink, steps=()):
        self.dest, self.steps = dest, list(steps)
        self.calls: list[list[str]] = []  # alert ids the sink sent, per call
        self.http_calls = 0  # counted on before-call
        events = sink.client.meta.events
        svc = sink.client.meta.service_model.service_id.hyphenize()
        events.register(f"before-parameter-build.{svc}.{dest.op}", self._params)
        events.register(f"before-call.{svc}.{dest.op}", self._before)
        events.register(f"after-call.{svc}.{dest.op}", self._after)

    def _params(self, params, **_):
        entries = params[self.dest.entries_key]
        self.calls.append([self.dest.alert_of(e) for e in entries])
        self.step = self.steps.pop(0) if self.steps else None
        self.original = list(entries)
        if isinstance(self.step, dict):
            params[self.dest.entries_key] = [e for e in entries if self.dest.alert_of(e) not in self.step]

    def _before(self, **_):
        self.http_calls += 1
        if isinstance(self.step, tuple):
            _, status, code, message, headers = self.step
            parsed = {"Error": {"Code": code, "Message": message},
                      "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers}}
            return AWSResponse("http://127.0.0.1/", status, headers, None), parsed
        return None

    def _after(self, parsed, **_):
        if not isinstance(self.step, dict):
            return
        failed = [(e, self.step[self.dest.alert_of(e)]) for e in self.original if self.dest.alert_of(e) in self.step]
        if self.dest.op in ("SendMessageBatch", "PublishBatch"):
            parsed.setdefault("Failed", []).extend(
                {"Id": e["Id"], "Code": c, "Message": m, "SenderFault": sf} for e, (c, m, sf) in failed)
        elif self.dest.op == "BatchImportFindings":
            parsed.setdefault("FailedFindings", []).extend(
                {"Id": e["Id"], "ErrorCode": c, "ErrorMessage": m} for e, (c, m, _) in failed)
            parsed["FailedCount"] = len(parsed["FailedFindings"])
        else:  # PutEvents: results in request order
            real = iter(parsed.get("Entries", []))
            parsed["Entries"] = [{"ErrorCode": self.step[self.dest.alert_of(e)][0],
                                  "ErrorMessage": self.step[self.dest.alert_of(e)][1]}
                                 if self.dest.alert_of(e) in self.step else next(real) for e in self.original]
            parsed["FailedEntryCount"] = len(failed)


def run(dest, store, alerts, faults=(), sleeps=None, **cfg_kw):
    cfg = dest.cfg(**cfg_kw)
    sink = dest.sink_cls(cfg)
    f = Faults(dest, sink, faults)
    [rep] = deliver(alerts, [(cfg, sink)], store, sleep=(sleeps if sleeps is not None else []).append)
    return rep, f


# ---------------------------------------------------------------- every destination, end to end


def test_each_alert_arrives_once_in_batches_within_the_api_limit(dest, store):
    n = 2 * LIMIT[dest.kind] + 3
    alerts = dest.alerts(n)
    rep, f = run(dest, store, alerts, batch_size=n)  # one send() of everything: the sink splits it
    assert rep.delivered == n and rep.parked == {} and rep.left == 0 and rep.error is None
    assert [len(c) for c in f.calls] == [LIMIT[dest.kind]] * 2 + [3] and f.http_calls == 3
    assert dest.read() == Counter({a.id: 1 for a in alerts})
    assert accounted(alerts, store, "aws")[0] == {a.id for a in alerts}
    rep2, f2 = run(dest, store, alerts)  # nothing pending: nothing sent
    assert rep2.pending == 0 and f2.calls == []


@pytest.mark.parametrize("status,code,headers,slept", [
    (400, "ThrottlingException", {}, None), (400, "RequestLimitExceeded", {}, None), (503, "SlowDown", {}, None),
    (500, "InternalFailure", {}, None), (429, "TooManyRequestsException", {"retry-after": "7"}, 7.0)])
def test_throttling_and_5xx_are_retried_then_delivered(dest, store, status, code, headers, slept):
    alerts = dest.alerts(3)
    sleeps = []
    rep, f = run(dest, store, alerts, [("error", status, code, "slow down", headers)] * 2, sleeps)
    assert rep.delivered == 3 and rep.left == 0 and rep.parked == {} and rep.attempts == 3
    assert len(sleeps) == 2 and (slept is None or sleeps == [slept, slept])
    assert f.calls == [[a.id for a in alerts]] * 3 and f.http_calls == 3
    assert dest.read() == Counter({a.id: 1 for a in alerts})


def test_only_failed_entries_are_resent_and_rejected_ones_parked_with_the_aws_reason(dest, store):
    alerts = dest.alerts(5)
    a0, a1, a2 = alerts[0].id, alerts[1].id, alerts[2].id
    retry_code = {"sqs": "InternalError", "sns": "InternalError", "eventbridge": "InternalFailure",
                  "securityhub": "ThrottlingException"}[dest.kind.removesuffix("_fifo")]
    step = {a0: (retry_code, "try again", False), a2: ("InvalidParameterValue", "attribute is bad", True)}
    sleeps = []
    rep, f = run(dest, store, alerts, [step], sleeps)
    assert f.calls == [[a.id for a in alerts], [a0]]  # only the transient failure is sent again
    assert rep.delivered == 4 and rep.left == 0 and len(sleeps) == 1
    assert rep.parked == {a2: "InvalidParameterValue: attribute is bad"}
    assert dest.read() == Counter({a.id: 1 for a in alerts if a.id != a2})
    delivered, parked, pending = accounted(alerts, store, "aws")
    assert parked == {a2} and pending == set() and a1 in delivered


def test_crash_between_send_and_state_update_resends(dest, store, monkeypatch):
    alerts = dest.alerts(4)
    real_save, crashed = Outbox.save, []

    def save_once_fails(box):
        if not crashed:
            crashed.append(1)
            raise OSError("disk full")
        real_save(box)

    monkeypatch.setattr(Outbox, "save", save_once_fails)
    rep, _ = run(dest, store, alerts)
    assert rep.error == "OSError: disk full" and dest.depth() == 4  # it arrived, the state update did not
    assert accounted(alerts, store, "aws")[2] == {a.id for a in alerts}  # the state never recorded the send
    rep2, f2 = run(dest, store, alerts)
    assert rep2.pending == 4 and rep2.delivered == 4 and len(f2.calls) == 1
    # Idempotent destinations (FIFO dedup id, ASFF Id) hold one copy; others have it at least once.
    assert dest.read() == Counter({a.id: 1 if dest.idempotent else 2 for a in alerts})
    assert accounted(alerts, store, "aws")[0] == {a.id for a in alerts}


@pytest.mark.parametrize("outage", ["refused", "silent"])
def test_destination_down_or_silent_then_back(dest, store, aws_settings, outage):
    alerts = dest.alerts(3)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if outage == "silent":
        sock.listen(16)  # the kernel accepts the connection; nobody ever answers
    else:
        sock.close()  # nothing listens: connection refused
    aws.configure(aws.AwsSettings(region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}"))
    sleeps, t0 = [], time.monotonic()
    try:
        rep, _ = run(dest, store, alerts, sleeps=sleeps, retry={"attempts": 2, "timeout": 0.3})
    finally:
        sock.close()
        aws.configure(aws_settings)
    assert time.monotonic() - t0 < 5 and len(sleeps) == 1
    assert rep.delivered == 0 and rep.parked == {} and rep.left == 3
    assert ("Read timeout" if outage == "silent" else "EndpointConnectionError") in rep.error
    assert accounted(alerts, store, "aws")[2] == {a.id for a in alerts}
    rep2, _ = run(dest, store, alerts)
    assert rep2.delivered == 3 and rep2.left == 0
    assert dest.read() == Counter({a.id: 1 for a in alerts})


def test_access_denied_is_parked_with_code_and_message_never_credentials(dest, store, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    alerts = dest.alerts(3)
    message = f"User with access key {KEY_ID} is not authorized to perform {dest.op}"
    rep, f = run(dest, store, alerts, [("error", 403, "AccessDenied", message, {})])
    assert len(f.calls) == 1 and rep.delivered == 0 and rep.left == 0
    reason = f"{dest.sink_cls.what}: AccessDenied: User with access key <key id> is not authorized to perform {dest.op}"
    assert rep.parked == {a.id: reason for a in alerts}
    assert accounted(alerts, store, "aws")[1] == {a.id for a in alerts}
    text = json.dumps(rep.to_dict()) + store.get("_state/outbox/aws.json").decode()
    assert KEY_ID not in text and SECRET not in text
    assert dest.read() == Counter()
    # Transient failures, too, never show credentials (the client did sign with them).
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    aws.configure(aws.AwsSettings(region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}"))
    sink = dest.sink_cls(dest.cfg())
    with pytest.raises(TransientSinkError) as err:
        sink.send(dest.alerts(1))
    assert KEY_ID not in str(err.value) and SECRET not in str(err.value)


# ---------------------------------------------------------------- SQS


def test_sqs_oversized_message_parked_and_batches_split_by_size(aws_settings, moto_endpoint, store):
    dest = make_dest("sqs", moto_endpoint)
    big = make_alert(f"{dest.run}big", runbook="x" * (257 * 1024))
    mid = [make_alert(f"{dest.run}mid{i}", runbook="y" * (100 * 1024)) for i in range(6)]
    small = dest.alerts(4)
    alerts = [big, *mid, *small]
    sizes = []
    cfg = dest.cfg()
    sink = awssinks.SqsSink(cfg)
    f = Faults(dest, sink)
    sink.client.meta.events.register(
        "before-parameter-build.sqs.SendMessageBatch",
        lambda params, **_: sizes.append(sum(len(e["MessageBody"].encode()) for e in params["Entries"])))
    [rep] = deliver(alerts, [(cfg, sink)], store, sleep=lambda s: None)
    assert set(rep.parked) == {big.id} and rep.parked[big.id].startswith("too large: ")
    assert "262144" in rep.parked[big.id] and rep.delivered == 10 and rep.left == 0
    assert all(s <= 256 * 1024 for s in sizes) and all(len(c) <= 10 for c in f.calls) and len(f.calls) == 4
    assert dest.read() == Counter({a.id: 1 for a in alerts if a is not big})
    assert accounted(alerts, store, "aws")[1] == {big.id}


def test_sqs_fifo_messages_carry_group_dedup_and_attributes(aws_settings, moto_endpoint, store):
    sqs = client("sqs", moto_endpoint)
    url, _ = new_queue(sqs, fifo=True)
    a = make_alert(uuid.uuid4().hex, severity="critical")
    cfg = awssinks.SqsConfig(name="q", type="sqs", queue_url=url, format="ocsf")
    [rep] = deliver([a], [(cfg, awssinks.SqsSink(cfg))], store, sleep=lambda s: None)
    [m] = drain(sqs, url)
    assert rep.delivered == 1 and json.loads(m["Body"])["finding_info"]["uid"] == a.id
    assert m["Attributes"]["MessageGroupId"] == "111122223333"
    assert m["Attributes"]["MessageDeduplicationId"] == awssinks._dedup_id(a)
    assert {k: v["StringValue"] for k, v in m["MessageAttributes"].items()} == {
        "severity": "critical", "rule_id": "root_console_login"}
    # A new version of the alert is a new message; a resend of the same version is not.
    a2 = a.model_copy(update={"detected_at": T + dt.timedelta(hours=1)})
    deliver([a2], [(cfg, awssinks.SqsSink(cfg))], store, sleep=lambda s: None)
    deliver([a2], [(cfg, awssinks.SqsSink(cfg))], LocalStore(store.root / "other"), sleep=lambda s: None)
    assert len(drain(sqs, url)) == 1


def test_sqs_missing_queue_is_a_real_permanent_error(aws_settings, moto_endpoint, store):
    alerts = [make_alert(uuid.uuid4().hex)]
    cfg = awssinks.SqsConfig(name="q", type="sqs", queue_url=f"{moto_endpoint}/{ACCOUNT}/no-such-queue")
    [rep] = deliver(alerts, [(cfg, awssinks.SqsSink(cfg))], store, sleep=lambda s: None)
    [reason] = rep.parked.values()
    assert reason.startswith("sqs SendMessageBatch: ")
    assert "NonExistentQueue" in reason or "QueueDoesNotExist" in reason


def test_resend_to_idempotent_destinations_is_not_duplicated(aws_settings, moto_endpoint, hub, store, tmp_path):
    for kind in ("sqs_fifo", "sns_fifo", "securityhub"):
        dest = make_dest(kind, moto_endpoint, hub)
        alerts = dest.alerts(5)
        run(dest, store, alerts)
        run(dest, LocalStore(tmp_path / kind), alerts)  # forgotten state: everything is sent again
        assert dest.read() == Counter({a.id: 1 for a in alerts}), kind


# ---------------------------------------------------------------- SNS, EventBridge, Security Hub


def test_sns_subject_is_short_printable_ascii(aws_settings, moto_endpoint, store):
    sqs, sns = client("sqs", moto_endpoint), client("sns", moto_endpoint)
    topic = sns.create_topic(Name=f"t{uuid.uuid4().hex[:10]}")["TopicArn"]
    url, arn = new_queue(sqs)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    a = make_alert(uuid.uuid4().hex, title="  Root login\nfrom Zürich\t" + "x" * 200)
    cfg = awssinks.SnsConfig(name="t", type="sns", topic_arn=topic)
    deliver([a], [(cfg, awssinks.SnsSink(cfg))], store, sleep=lambda s: None)
    [m] = drain(sqs, url)
    envelope = json.loads(m["Body"])
    assert envelope["Subject"] == ("Root login from Z?rich " + "x" * 200)[:99]
    assert json.loads(envelope["Message"])["id"] == a.id


def test_eventbridge_event_shape_and_oversized_event_parked(aws_settings, moto_endpoint, store):
    dest = make_dest("eventbridge", moto_endpoint)
    alerts = dest.alerts(2) + [make_alert(f"{dest.run}big", runbook="z" * (256 * 1024))]
    cfg = dest.cfg(format="ocsf")
    [rep] = deliver(alerts, [(cfg, awssinks.EventBridgeSink(cfg))], store, sleep=lambda s: None)
    assert rep.delivered == 2 and list(rep.parked) == [alerts[2].id] and "too large" in rep.parked[alerts[2].id]
    events = [json.loads(m["Body"]) for m in drain(client("sqs", moto_endpoint), dest.queue)]
    assert sorted(e["detail"]["finding_info"]["uid"] for e in events) == sorted(a.id for a in alerts[:2])
    assert {(e["source"], e["detail-type"], e["detail"]["class_uid"]) for e in events} == {
        ("soclake", "soclake Alert", 2004)}
    assert accounted(alerts, store, "aws")[1] == {alerts[2].id}


def test_securityhub_findings_update_in_place_with_product_from_sts(aws_settings, moto_endpoint, hub, store):
    dest = make_dest("securityhub", moto_endpoint, hub)
    alerts = dest.alerts(3)
    run(dest, store, alerts)
    later = [a.model_copy(update={"detected_at": T + dt.timedelta(hours=2), "severity": "critical"}) for a in alerts]
    rep, f = run(dest, store, later)  # a new version of each: the same findings, updated
    assert rep.delivered == 3 and len(f.calls) == 1
    got = {x["Id"]: x for x in findings(hub, dest.run)}
    assert sorted(got) == sorted(a.id for a in alerts)
    for x in got.values():
        assert x["ProductArn"] == f"arn:aws:securityhub:us-east-1:{ACCOUNT}:product/{ACCOUNT}/default"
        assert x["Severity"]["Label"] == "CRITICAL" and x["UpdatedAt"].startswith("2026-11-01T12:00")
        # Imported by this account for the alert's account: AwsAccountId is the importer's, as the default
        # product ARN requires; the alert's account stays on the finding.
        assert x["AwsAccountId"] == ACCOUNT and x["ProductFields"]["soclake/account_id"] == "111122223333"
        assert {"Type": "AwsAccount", "Id": "AWS::::Account:111122223333"} in x["Resources"]
    alert_mode = dest.cfg(finding_account="alert", product_account=ACCOUNT)
    assert awssinks.SecurityHubSink(alert_mode)._entry(0, alerts[0])[0]["AwsAccountId"] == "111122223333"


def test_securityhub_short_success_count_is_resent_not_claimed(aws_settings, moto_endpoint, hub, store):
    dest = make_dest("securityhub", moto_endpoint, hub)
    alerts = dest.alerts(2)
    cfg = dest.cfg(product_account="210987654321", product_region="eu-west-1")
    sink = awssinks.SecurityHubSink(cfg)
    lies = [1]

    def short(parsed, **_):
        if lies:
            lies.pop()
            parsed["SuccessCount"] = 1

    sink.client.meta.events.register("after-call.securityhub.BatchImportFindings", short)
    [rep] = deliver(alerts, [(cfg, sink)], store, sleep=lambda s: None)
    assert rep.delivered == 2 and rep.attempts == 2
    got = findings(hub, dest.run)
    assert Counter(x["Id"] for x in got) == Counter({a.id: 1 for a in alerts})
    assert {x["ProductArn"] for x in got} == {"arn:aws:securityhub:eu-west-1:210987654321:product/210987654321/default"}


# ---------------------------------------------------------------- mapping, helpers, config


@pytest.mark.parametrize("code,status,kind", [
    ("ThrottlingException", 400, TransientSinkError), ("TooManyRequestsException", 429, TransientSinkError),
    ("RequestLimitExceeded", 400, TransientSinkError), ("SlowDown", 503, TransientSinkError),
    ("Whatever", 502, TransientSinkError), ("AccessDenied", 403, PermanentSinkError),
    ("AccessDeniedException", 403, PermanentSinkError), ("ValidationException", 400, PermanentSinkError),
    ("InvalidParameterValue", 400, PermanentSinkError)])
def test_client_errors_map_to_transient_or_permanent(code, status, kind):
    e = ClientError({"Error": {"Code": code, "Message": "msg"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")
    mapped = awssinks.sink_error(e, "svc Op")
    assert type(mapped) is kind and str(mapped) == f"svc Op: {code}: msg"


def test_an_xml_error_body_is_reported_by_its_code_and_message_on_one_line():
    body = ('<?xml version="1.0" encoding="utf-8"?>\n<ErrorResponse><Errors><Error><Code>AccessDenied</Code>'
            "<Message>User: arn:aws:sts::123456789012:assumed-role/r/s is not authorized to perform: "
            "sqs:SendMessageBatch</Message></Error></Errors></ErrorResponse>")
    e = ClientError({"Error": {"Code": "403", "Message": body}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "Op")
    mapped = awssinks.sink_error(e, "sqs SendMessageBatch")
    assert isinstance(mapped, PermanentSinkError)
    assert str(mapped) == ("sqs SendMessageBatch: AccessDenied: User: arn:aws:sts::123456789012:assumed-role/r/s "
                           "is not authorized to perform: sqs:SendMessageBatch")


def test_network_errors_are_transient():
    for e in (EndpointConnectionError(endpoint_url="http://127.0.0.1:1/"),
              ReadTimeoutError(endpoint_url="http://u:p@127.0.0.1:1/"), ConnectTimeoutError(endpoint_url="x")):
        mapped = awssinks.sink_error(e, "svc Op")
        assert isinstance(mapped, TransientSinkError) and "u:p@" not in str(mapped)


def test_entry_ids_subjects_and_chunks():
    import re

    ids = [awssinks._entry_id(i, a) for i, a in enumerate(["a" * 100, "a" * 100, "x/y:z.é"])]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"[A-Za-z0-9_-]{1,80}", i) for i in ids)
    assert awssinks._subject("\n\n") == "soclake alert" and len(awssinks._subject("é" * 300)) == 99
    items = [(None, None, 100 * 1024)] * 5 + [(None, None, 1)] * 25
    chunks = awssinks._chunks(items, 10, 256 * 1024)
    assert [len(c) for c in chunks] == [2, 2, 10, 10, 6]
    assert all(sum(x[2] for x in c) <= 256 * 1024 for c in chunks)


def test_sink_types_registered_and_options_validated(tmp_path):
    from pipeline.forward.registry import SINK_TYPES

    assert {"securityhub", "sqs", "sns", "eventbridge"} <= set(SINK_TYPES)
    path = tmp_path / "forward.yaml"
    path.write_text("sinks:\n  - {name: q, type: sqs, queue_url: 'https://sqs/1/q.fifo', message_attributes: [severity]}\n"
                    "  - {name: h, type: securityhub, product_account: '123456789012', min_severity: high}\n"
                    "  - {name: e, type: eventbridge, event_bus_name: sec, format: ocsf}\n"
                    "  - {name: t, type: sns, topic_arn: 'arn:aws:sns:us-east-1:1:t'}\n")
    _, sinks = load_config(path)
    assert [s.type for s in sinks] == ["sqs", "securityhub", "eventbridge", "sns"]
    assert sinks[2].source == "soclake" and sinks[2].detail_type == "soclake Alert"
    from pipeline.errors import ConfigError

    for bad in ("{name: q, type: sqs, queue_url: u, color: red}", "{name: h, type: securityhub, product_account: '12'}",
                "{name: q, type: sqs, queue_url: u, message_attributes: [password]}"):
        path.write_text(f"sinks:\n  - {bad}\n")
        with pytest.raises(ConfigError):
            load_config(path)
