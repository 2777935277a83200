"""Behaviour of the synthetic archive generator and the record factories."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from pipeline.layout import META_DIR
from pipeline.synth import (
    KEY_PATTERNS,
    NULL,
    SCENARIOS,
    DirSink,
    Replace,
    S3Sink,
    assumed_role,
    aws_service,
    generate_archive,
    iam_user,
    make_cloudtrail_record,
    make_console_login,
    make_guardduty_finding,
    root,
    sso_user,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
CT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
GD_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SMALL = dict(seed=11, accounts=3, regions=("us-east-1", "eu-west-1"), days=2, events=6000, events_per_object=250,
             guardduty_findings=30)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _read_tree(root: Path) -> dict[str, bytes]:
    """The archive's objects (the signature sidecars under .soclake-meta/ are not objects)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and META_DIR not in p.parts}


class Archive:
    """A generated archive read back: CloudTrail records per key, findings, digests."""

    def __init__(self, root: Path, summary) -> None:
        self.root, self.summary, self.files = root, summary, _read_tree(root)
        self.records: dict[str, list[dict]] = {}
        self.findings: list[dict] = []
        self.digests: dict[str, dict] = {}
        for key, blob in self.files.items():
            if "/CloudTrail/" in key:
                self.records[key] = json.loads(gzip.decompress(blob))["Records"]
            elif "/GuardDuty/" in key:
                self.findings += [json.loads(line) for line in gzip.decompress(blob).splitlines()]
            elif "/CloudTrail-Digest/" in key:
                self.digests[key] = json.loads(gzip.decompress(blob))
        self.by_id = {r["eventID"]: r for recs in self.records.values() for r in recs}

    def all_records(self) -> list[dict]:
        return [r for recs in self.records.values() for r in recs]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Archive:
    root = tmp_path_factory.mktemp("archive")
    return Archive(root, generate_archive(DirSink(root), scenarios=("all",), **SMALL))


@pytest.fixture(scope="module")
def benign(tmp_path_factory) -> Archive:
    root = tmp_path_factory.mktemp("benign")
    return Archive(root, generate_archive(DirSink(root), **SMALL))


# ------------------------------------------------------------------------------------ factories

def test_cloudtrail_record_defaults_look_like_aws():
    rec = make_cloudtrail_record()
    assert rec["userIdentity"]["type"] == "IAMUser" and rec["userIdentity"]["accountId"] == "111111111111"
    assert rec["userIdentity"]["sessionContext"]["attributes"]["mfaAuthenticated"] == "true"
    assert rec["awsRegion"] == "us-east-1" and rec["readOnly"] is True and rec["eventType"] == "AwsApiCall"
    assert rec["eventName"].startswith("Describe") and rec["recipientAccountId"] == "111111111111"
    assert CT_TIME.match(rec["eventTime"]) and UUID.match(rec["eventID"]) and UUID.match(rec["requestID"])
    assert "errorCode" not in rec and rec["responseElements"] is None and rec["tlsDetails"]["tlsVersion"]
    assert make_cloudtrail_record()["eventID"] != rec["eventID"]


def test_overrides_deep_merge_remove_and_replace():
    overrides = {"userIdentity": {"type": "Root", "sessionContext": {"attributes": {"mfaAuthenticated": "false"}}}}
    rec = make_cloudtrail_record(**overrides, tlsDetails=None, responseElements=NULL,
                                 requestParameters=Replace({"groupId": "sg-1"}), errorCode="AccessDenied")
    ident = rec["userIdentity"]
    assert ident["type"] == "Root" and ident["userName"] == "alice"  # only that key changed
    assert ident["sessionContext"]["attributes"] == {"creationDate": "2026-11-01T09:55:00Z", "mfaAuthenticated": "false"}
    assert "tlsDetails" not in rec and rec["responseElements"] is None and "responseElements" in rec
    assert rec["requestParameters"] == {"groupId": "sg-1"} and rec["errorCode"] == "AccessDenied"
    assert overrides["userIdentity"]["type"] == "Root"  # inputs untouched
    assert make_cloudtrail_record()["userIdentity"]["type"] == "IAMUser"  # defaults not shared
    # nested removal, and a helper identity replaces as a whole
    rec = make_cloudtrail_record(userIdentity={"sessionContext": None})
    assert "sessionContext" not in rec["userIdentity"] and rec["userIdentity"]["userName"] == "alice"
    rec = make_cloudtrail_record(userIdentity=root("222222222222"))
    assert rec["userIdentity"] == root("222222222222") and rec["recipientAccountId"] == "222222222222"


def test_identity_helpers():
    key_user = iam_user("bob", "123456789012", mfa=None)
    assert key_user["accessKeyId"].startswith("AKIA") and "sessionContext" not in key_user
    assert key_user["arn"] == "arn:aws:iam::123456789012:user/bob" and key_user["principalId"].startswith("AIDA")
    assert iam_user("bob", mfa=False)["sessionContext"]["attributes"]["mfaAuthenticated"] == "false"
    role = assumed_role("app", "i-0abc", "123456789012")
    assert role["arn"] == "arn:aws:sts::123456789012:assumed-role/app/i-0abc"
    assert role["sessionContext"]["sessionIssuer"]["arn"] == "arn:aws:iam::123456789012:role/app"
    sso = sso_user("ann@example.com", "123456789012", permission_set="ReadOnlyAccess")
    issuer = sso["sessionContext"]["sessionIssuer"]
    assert sso["type"] == "AssumedRole" and issuer["userName"].startswith("AWSReservedSSO_ReadOnlyAccess_")
    assert "/aws-reserved/sso.amazonaws.com/" in issuer["arn"] and sso["arn"].endswith("/ann@example.com")
    assert "webIdFederationData" in sso["sessionContext"]
    assert root("123456789012")["arn"] == "arn:aws:iam::123456789012:root"
    assert aws_service("ec2.amazonaws.com") == {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}


def test_console_login_shapes():
    ok = make_console_login("bob", "123456789012", mfa=True)
    assert ok["eventSource"] == "signin.amazonaws.com" and ok["eventType"] == "AwsConsoleSignIn"
    assert ok["responseElements"] == {"ConsoleLogin": "Success"} and ok["additionalEventData"]["MFAUsed"] == "Yes"
    assert ok["additionalEventData"]["MobileVersion"] == "No" and "LoginTo" in ok["additionalEventData"]
    bad = make_console_login("bob", "123456789012", success=False)
    assert bad["responseElements"] == {"ConsoleLogin": "Failure"} and bad["errorMessage"] == "Failed authentication"
    assert bad["additionalEventData"]["MFAUsed"] == "No" and "arn" not in bad["userIdentity"]
    assert make_console_login(identity=root("123456789012"))["userIdentity"]["type"] == "Root"


def test_guardduty_finding_shapes():
    f = make_guardduty_finding()
    assert f["type"] == "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
    assert f["resource"]["resourceType"] == "AccessKey" and f["resource"]["accessKeyDetails"]["accessKeyId"]
    action = f["service"]["action"]
    assert action["actionType"] == "AWS_API_CALL" and action["awsApiCallAction"]["remoteIpDetails"]["ipAddressV4"]
    assert isinstance(f["severity"], float) and 1.0 <= f["severity"] <= 8.9
    assert GD_TIME.match(f["createdAt"]) and GD_TIME.match(f["updatedAt"]) and f["service"]["archived"] is False
    assert f["arn"].endswith(f"/finding/{f['id']}") and f["service"]["serviceName"] == "guardduty"
    probe = make_guardduty_finding(type="Recon:EC2/PortProbeUnprotectedPort", accountId="123456789012",
                                   service={"archived": True, "additionalInfo": {"sample": True}})
    assert probe["resource"]["resourceType"] == "Instance" and probe["resource"]["instanceDetails"]["instanceId"]
    assert probe["service"]["action"]["actionType"] == "PORT_PROBE" and probe["service"]["archived"] is True
    assert probe["service"]["detectorId"] and probe["service"]["additionalInfo"]["sample"] is True
    assert ":123456789012:" in probe["arn"] and probe["severity"] < 4


def test_factories_follow_a_seeded_rng():
    a = [make_cloudtrail_record(rng=random.Random(5))["eventID"], make_guardduty_finding(rng=random.Random(5))["id"]]
    b = [make_cloudtrail_record(rng=random.Random(5))["eventID"], make_guardduty_finding(rng=random.Random(5))["id"]]
    assert a == b


# ------------------------------------------------------------------------------------ archive layout

def test_same_arguments_give_identical_bytes(tmp_path, archive):
    kwargs = dict(SMALL, events=1500, days=1)
    one = generate_archive(DirSink(tmp_path / "one"), scenarios=("all",), **kwargs)
    two = generate_archive(DirSink(tmp_path / "two"), scenarios=("all",), **kwargs)
    assert _read_tree(tmp_path / "one") == _read_tree(tmp_path / "two") and one == two
    other = generate_archive(DirSink(tmp_path / "other"), **dict(kwargs, seed=12))
    assert set(other.keys["cloudtrail"]).isdisjoint(one.keys["cloudtrail"])


def test_keys_follow_the_aws_layout(archive):
    s = archive.summary
    assert sorted(archive.files) == sorted(k for keys in s.keys.values() for k in keys)
    for kind, keys in s.keys.items():
        for key in keys:
            m = KEY_PATTERNS[kind].match(key)
            assert m, key
            assert m["account"] in s.accounts
    for key, recs in archive.records.items():
        m = KEY_PATTERNS["cloudtrail"].match(key)
        delivered = datetime.strptime(m["ts"], "%Y%m%dT%H%MZ").strftime("%Y-%m-%dT%H:%M:%SZ")
        assert (m["y"], m["m"], m["d"]) == (m["ts"][:4], m["ts"][4:6], m["ts"][6:8])
        assert all(r["recipientAccountId"] == m["account"] and r["awsRegion"] == m["region"] for r in recs)
        times = [r["eventTime"] for r in recs]
        assert times == sorted(times) and times[-1] <= delivered
        assert _epoch(delivered) - _epoch(times[0]) <= 3600 + 600  # a window of at most an hour, then delivery
    assert {KEY_PATTERNS["guardduty"].match(k)["account"] for k in s.keys["guardduty"]} == {s.guardduty_account}
    assert len(set(s.accounts)) == 3 and all(re.fullmatch(r"\d{12}", a) for a in s.accounts)


def test_counts_match_the_summary(archive):
    s = archive.summary
    assert sum(map(len, archive.records.values())) == s.events
    assert len(archive.findings) == s.findings and len(archive.files) == s.objects
    assert sum(map(len, archive.files.values())) == s.bytes
    background = s.events - sum(len(sc.event_ids) for sc in s.scenarios)
    assert background == SMALL["events"]
    assert abs(len(s.keys["cloudtrail"]) - SMALL["events"] / SMALL["events_per_object"]) <= 12
    sizes = [len(recs) for recs in archive.records.values()]
    assert len(set(sizes)) > 5  # sizes vary per object
    days = {r["eventTime"][:10] for r in archive.all_records()}
    assert days >= {"2026-11-01", "2026-11-02"}
    assert 1000 < s.json_bytes / s.events < 2200


def test_background_looks_like_an_organisation(benign):
    recs = benign.all_records()
    kinds = {r["userIdentity"].get("type") for r in recs}
    assert {"AssumedRole", "IAMUser", "AWSService"} <= kinds
    sources = {r["eventSource"].split(".")[0] for r in recs}
    assert {"ec2", "s3", "iam", "sts", "kms", "lambda", "cloudformation", "logs", "ssm", "secretsmanager",
            "dynamodb"} <= sources
    assert sum(r["readOnly"] for r in recs) / len(recs) > 0.8
    denied = [r for r in recs if r.get("errorCode") in ("AccessDenied", "AccessDeniedException",
                                                         "Client.UnauthorizedOperation")]
    assert 0.001 < len(denied) / len(recs) < 0.05 and len({r["userIdentity"]["arn"] for r in denied}) >= 4
    arns = {r["userIdentity"].get("arn", "") for r in recs}
    assert any("AWSReservedSSO_" in a for a in arns) and any(":user/" in a for a in arns)
    assert any(r["eventName"] == "ConsoleLogin" for r in recs)
    assert any(r["userIdentity"].get("invokedBy") for r in recs)


def test_background_is_free_of_bad_things(benign):
    bad_names = {"StopLogging", "DeleteTrail", "DeleteDetector", "DisableKey", "ScheduleKeyDeletion", "CreateUser",
                 "AttachUserPolicy", "CreateAccessKey", "DeleteBucketPublicAccessBlock", "PutBucketAcl",
                 "UpdateDetector", "DeleteFlowLogs", "CreateLoginProfile"}
    denied_by_actor: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for r in benign.all_records():
        ident, blob = r["userIdentity"], json.dumps(r)
        assert ident.get("type") != "Root" and r["eventName"] not in bad_names, r
        assert "0.0.0.0/0" not in blob and "::/0" not in blob and "AdministratorAccess\"" not in blob
        if r["eventName"] == "ConsoleLogin" and ident["type"] == "IAMUser" and r["responseElements"]["ConsoleLogin"] == "Success":
            assert r["additionalEventData"]["MFAUsed"] == "Yes"
        if r["eventName"] == "PutBucketPolicy":
            assert all(st["Effect"] == "Deny" for st in r["requestParameters"]["bucketPolicy"]["Statement"])
        if "AccessDenied" in r.get("errorCode", "") or "Unauthorized" in r.get("errorCode", ""):
            denied_by_actor[ident["arn"]].append((_epoch(r["eventTime"]), r["eventName"]))
    for calls in denied_by_actor.values():  # nothing that looks like a discovery burst
        for t, _ in calls:
            assert len({n for u, n in calls if t <= u < t + 600}) < 5
    for f in benign.findings:
        assert f["severity"] < 7 or f["service"]["additionalInfo"].get("sample") is True


def test_scenarios_only_add_their_own_records(archive, benign):
    injected = {i for sc in archive.summary.scenarios for i in sc.event_ids}
    assert set(benign.by_id) == set(archive.by_id) - injected
    assert set(archive.by_id) >= injected


# ------------------------------------------------------------------------------------ scenarios

def _scenario(archive: Archive, name: str):
    sc = next(s for s in archive.summary.scenarios if s.name == name)
    return sc, [archive.by_id[i] for i in sc.event_ids]


def test_every_scenario_is_injected(archive):
    assert {s.name for s in archive.summary.scenarios} == set(SCENARIOS)
    finding_ids = {f["id"] for f in archive.findings}
    for sc in archive.summary.scenarios:
        assert sc.event_ids and set(sc.event_ids) <= set(archive.by_id), sc.name
        assert set(sc.finding_ids) <= finding_ids
        assert all(archive.by_id[i]["recipientAccountId"] == sc.account for i in sc.event_ids)


def test_leaked_access_key(archive):
    sc, recs = _scenario(archive, "leaked_access_key")
    key = sc.details["access_key"]
    assert key.startswith("AKIA") and all(r["userIdentity"]["accessKeyId"] == key for r in recs)
    times = [_epoch(r["eventTime"]) for r in recs]
    assert max(times) - min(times) < 3600
    denied = [r for r in recs if r.get("errorCode")]
    assert len({r["eventName"] for r in denied}) >= 15
    assert _epoch(denied[-1]["eventTime"]) - _epoch(denied[0]["eventTime"]) < 600
    names = [r["eventName"] for r in recs if not r.get("errorCode")]
    order = [names.index(n) for n in ("CreateUser", "AttachUserPolicy", "CreateAccessKey", "StopLogging", "DeleteDetector")]
    assert order == sorted(order)
    attach = next(r for r in recs if r["eventName"] == "AttachUserPolicy")
    assert attach["requestParameters"] == {"userName": sc.details["new_user"],
                                           "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}
    assert next(r for r in recs if r["eventName"] == "CreateAccessKey")["requestParameters"]["userName"] == sc.details["new_user"]
    # the same key is used benignly from CI addresses elsewhere in the archive
    assert any(r["userIdentity"].get("accessKeyId") == key and r["eventID"] not in sc.event_ids
               for r in archive.all_records())
    findings = [f for f in archive.findings if f["id"] in sc.finding_ids]
    assert any(f["resource"]["accessKeyDetails"]["accessKeyId"] == key and "IAMUser" in f["type"] for f in findings)


def test_console_bruteforce(archive):
    sc, recs = _scenario(archive, "console_bruteforce")
    logins = [r for r in recs if r["eventName"] == "ConsoleLogin"]
    failures = [r for r in logins if r["responseElements"]["ConsoleLogin"] == "Failure"]
    assert len(failures) >= 10 and len({r["sourceIPAddress"] for r in logins}) == 1
    assert _epoch(failures[-1]["eventTime"]) - _epoch(failures[0]["eventTime"]) <= 600
    success = logins[-1]
    assert success["responseElements"]["ConsoleLogin"] == "Success" and success["additionalEventData"]["MFAUsed"] == "No"
    assert success["userIdentity"]["type"] == "IAMUser" and success["eventTime"] >= failures[-1]["eventTime"]


def test_root_activity(archive):
    sc, recs = _scenario(archive, "root_activity")
    assert all(r["userIdentity"]["type"] == "Root" for r in recs)
    assert recs[0]["eventName"] == "ConsoleLogin" and recs[0]["responseElements"]["ConsoleLogin"] == "Success"
    assert {"CreateAccessKey", "PutBucketPolicy"} <= {r["eventName"] for r in recs if not r["readOnly"]}


def test_open_security_group(archive):
    sc, (rec,) = _scenario(archive, "open_security_group")
    perm = rec["requestParameters"]["ipPermissions"]["items"][0]
    assert rec["eventName"] == "AuthorizeSecurityGroupIngress" and rec["requestParameters"]["groupId"] == sc.details["group_id"]
    assert (perm["ipProtocol"], perm["fromPort"], perm["toPort"]) == ("tcp", 22, 22)
    assert perm["ipRanges"]["items"] == [{"cidrIp": "0.0.0.0/0"}]
    (finding,) = [f for f in archive.findings if f["id"] in sc.finding_ids]
    groups = finding["resource"]["instanceDetails"]["networkInterfaces"][0]["securityGroups"]
    assert groups[0]["groupId"] == sc.details["group_id"] and _epoch(finding["createdAt"]) > _epoch(rec["eventTime"])


def test_public_bucket(archive):
    sc, recs = _scenario(archive, "public_bucket")
    assert [r["eventName"] for r in recs] == ["DeleteBucketPublicAccessBlock", "PutBucketPolicy"]
    statement = recs[1]["requestParameters"]["bucketPolicy"]["Statement"][0]
    assert statement["Principal"] == "*" and statement["Effect"] == "Allow"
    assert recs[1]["requestParameters"]["bucketName"] == sc.details["bucket"]


# ------------------------------------------------------------------------------------ GuardDuty, digests

def test_guardduty_export(archive):
    findings = archive.findings
    assert all(set(f) >= {"schemaVersion", "accountId", "region", "id", "arn", "type", "resource", "service",
                          "severity", "createdAt", "updatedAt", "title", "description"} for f in findings)
    assert {f["accountId"] for f in findings} <= set(archive.summary.accounts)
    assert any(f["service"]["archived"] for f in findings)
    assert any(f["service"]["additionalInfo"].get("sample") for f in findings)
    seen = defaultdict(set)
    for f in findings:
        seen[f["id"]].add(f["updatedAt"])
    assert any(len(updates) == 2 for updates in seen.values())  # one finding exported again after an update
    assert archive.summary.findings == SMALL["guardduty_findings"] + 1 + sum(len(s.finding_ids) for s in archive.summary.scenarios)


def test_digests_chain_and_hash_the_log_files(archive):
    by_stream = defaultdict(list)
    for key in sorted(archive.digests):
        by_stream[KEY_PATTERNS["digest"].match(key)["account"], KEY_PATTERNS["digest"].match(key)["region"]].append(key)
    listed = set()
    for keys in by_stream.values():
        previous = None
        for key in keys:
            doc = archive.digests[key]
            assert doc["digestS3Object"] == key
            if previous:
                assert doc["previousDigestS3Object"] == previous
                assert doc["previousDigestHashValue"] == hashlib.sha256(gzip.decompress(archive.files[previous])).hexdigest()
            for log in doc["logFiles"]:
                assert log["hashValue"] == hashlib.sha256(gzip.decompress(archive.files[log["s3Object"]])).hexdigest()
                listed.add(log["s3Object"])
            previous = key
    assert listed == set(archive.records)


# ------------------------------------------------------------------------------------ options and sinks

def test_prefix_org_id_progress_and_validation(tmp_path):
    calls = []
    s = generate_archive(DirSink(tmp_path), **dict(SMALL, events=800, days=1, accounts=1, regions=("eu-west-1",)),
                         prefix="raw/", org_id="o-abc123def4", digests=False, progress=lambda o, e: calls.append((o, e)))
    assert s.keys["cloudtrail"] and not s.keys["digest"]
    assert all(k.startswith("raw/AWSLogs/o-abc123def4/") for k in s.keys["cloudtrail"])
    assert all(k.startswith(f"raw/AWSLogs/{s.accounts[0]}/GuardDuty/") for k in s.keys["guardduty"])
    assert calls and calls[-1] == (len(s.keys["cloudtrail"]), s.events)
    assert json.loads(json.dumps(s.to_dict()))["keys"]["cloudtrail"] == s.keys["cloudtrail"]
    with pytest.raises(ValueError):
        generate_archive(DirSink(tmp_path), scenarios=("nope",))
    with pytest.raises(ValueError):
        generate_archive(DirSink(tmp_path), org_id="org-1")


def test_s3_sink_against_a_moto_server():
    boto3 = pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket="org-trail")
        s = generate_archive(S3Sink(client, "org-trail"), **dict(SMALL, events=600, days=1, accounts=2,
                                                               regions=("us-east-1",), guardduty_findings=5),
                             scenarios=("public_bucket",))
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket="org-trail")
                for o in page.get("Contents", [])]
        assert sorted(keys) == sorted(k for ks in s.keys.values() for k in ks)
        body = client.get_object(Bucket="org-trail", Key=s.keys["cloudtrail"][0])["Body"].read()
        assert json.loads(gzip.decompress(body))["Records"]
        digest = json.loads(gzip.decompress(client.get_object(Bucket="org-trail", Key=s.keys["digest"][-1])["Body"].read()))
        assert digest["digestS3Bucket"] == "org-trail"
    finally:
        server.stop()
