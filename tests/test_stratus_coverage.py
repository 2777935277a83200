"""Every AWS technique of Stratus Red Team (v2.x) has a rule whose alert cites the technique's events.

Each technique below is a short, realistic event sequence (shaped like the AWS documentation's
example records and what the Stratus detonation calls), run through the real normaliser and the
real SQL (``pipeline.detect.testing``). docs/stratus.md is the same mapping, for people.

Rule ids another branch adds (``EXPECTED_EXTERNAL``) are checked only once they exist; until then
the test asserts that they are listed there, so the lead can check them after the merge.
"""

from __future__ import annotations

import pytest

from pipeline.detect.rules import RuleTest, load_rules
from pipeline.detect.testing import run_test

CATALOGUE = {r.id: r for r in load_rules()}
#: Rule ids provided by another branch (resource sharing and IAM privilege escalation family).
EXPECTED_EXTERNAL: set[str] = set()  # every mapped rule is in the catalogue now

ACCOUNT = "111111111111"
ATTACKER = {"type": "IAMUser", "principalId": "AIDAEXAMPLECILEGACY01", "arn": f"arn:aws:iam::{ACCOUNT}:user/ci-legacy",
            "accountId": ACCOUNT, "accessKeyId": "AKIAEXAMPLECILEGACY1", "userName": "ci-legacy"}
INSTANCE = {"type": "AssumedRole", "principalId": "AROAEXAMPLEWEBROLE01:i-0a4fab226be14a0f7",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/web-role/i-0a4fab226be14a0f7", "accountId": ACCOUNT,
            "accessKeyId": "ASIAEXAMPLEWEBROLE01",
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLEWEBROLE01",
                                                 "arn": f"arn:aws:iam::{ACCOUNT}:role/web-role", "accountId": ACCOUNT,
                                                 "userName": "web-role"},
                               "attributes": {"creationDate": "2026-11-01T09:30:00Z", "mfaAuthenticated": "false"},
                               "ec2RoleDelivery": "2.0"}}


def ev(source: str, name: str, second: int = 0, **kw) -> dict:
    """One CloudTrail record by the attacker's key, `second` seconds after 10:00 UTC."""
    m, s = divmod(second, 60)
    return {"eventSource": f"{source}.amazonaws.com", "eventName": name, "eventTime": f"2026-11-01T10:{m:02d}:{s:02d}Z",
            "userIdentity": ATTACKER, "sourceIPAddress": "198.51.100.22",
            "userAgent": "stratus-red-team_4c9f aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5", **kw}


def data(source: str, name: str, second: int = 0, **kw) -> dict:
    return ev(source, name, second, eventCategory="Data", managementEvent=False, **kw)


def denied(e: dict, code: str = "AccessDenied") -> dict:
    return {**e, "errorCode": code, "errorMessage": "not authorized to perform this operation"}


def trust(principal: str) -> str:
    return ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"' + principal
            + '"},"Action":"sts:AssumeRole"}]}')


BUCKET = "stratus-red-team-ransomware-bucket"
S3_HOST = {"Host": f"{BUCKET}.s3.us-east-1.amazonaws.com"}

#: technique -> (rule ids that must alert, events, indexes of the events the alert must cite; None = all it cites are the technique's)
TECHNIQUES: dict[str, tuple[list[str], list[dict], list[int] | None]] = {
    # credential access
    "aws.credential-access.ec2-get-password-data": (
        ["ec2_password_data_retrieved"],
        [denied(ev("ec2", "GetPasswordData", i, readOnly=True, requestParameters={"instanceId": f"i-0{i:016x}"}),
                "Client.UnauthorizedOperation") for i in range(30)], None),
    "aws.credential-access.ec2-steal-instance-credentials": (
        ["ec2_instance_credentials_used_outside_instance"],
        [ev("ssm", "UpdateInstanceInformation", 0, userIdentity=INSTANCE, sourceIPAddress="203.0.113.15",
            requestParameters={"instanceId": "i-0a4fab226be14a0f7", "agentVersion": "3.3.1142.0"}),
         ev("ec2", "DescribeInstances", 120, readOnly=True, userIdentity=INSTANCE, requestParameters={"instancesSet": {}}),
         ev("sts", "GetCallerIdentity", 125, readOnly=True, userIdentity=INSTANCE, requestParameters=None)], [1, 2]),
    "aws.credential-access.secretsmanager-batch-retrieve-secrets": (
        ["secretsmanager_batch_get_secret_value"],
        [ev("secretsmanager", "BatchGetSecretValue", 0, readOnly=True,
            requestParameters={"filters": [{"key": "tag-key", "values": ["StratusRedTeam"]}], "maxResults": 20})], [0]),
    "aws.credential-access.secretsmanager-retrieve-secrets": (
        ["secrets_many_distinct_read"],
        [ev("secretsmanager", "ListSecrets", 0, readOnly=True, requestParameters={"maxResults": 100})]
        + [ev("secretsmanager", "GetSecretValue", 1 + i, readOnly=True,
              requestParameters={"secretId": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:stratus-red-team-secret-{i}-Ab12Cd"})
           for i in range(20)], None),
    "aws.credential-access.ssm-retrieve-securestring-parameters": (
        ["ssm_securestring_parameters_read_in_bulk"],
        [ev("ssm", "DescribeParameters", 0, readOnly=True, requestParameters={"maxResults": 50}),
         ev("ssm", "GetParameters", 2, readOnly=True,
            requestParameters={"names": [f"/credentials/stratus-red-team/credentials-{i}" for i in range(10)], "withDecryption": True})], [1]),
    # defense evasion
    "aws.defense-evasion.cloudtrail-delete": (
        ["cloudtrail_trail_deleted"],
        [ev("cloudtrail", "DeleteTrail", 0, requestParameters={"name": "stratus-red-team-trail"})], [0]),
    "aws.defense-evasion.cloudtrail-event-selectors": (
        ["cloudtrail_management_events_dropped"],
        [ev("cloudtrail", "PutEventSelectors", 0, requestParameters={
            "trailName": "stratus-red-team-trail",
            "eventSelectors": [{"readWriteType": "All", "includeManagementEvents": False,
                                "dataResources": [{"type": "AWS::S3::Object", "values": []}]}]})], [0]),
    "aws.defense-evasion.cloudtrail-lifecycle-rule": (
        ["cloudtrail_bucket_lifecycle_shortened"],
        [ev("cloudtrail", "CreateTrail", 0, requestParameters={"name": "stratus-red-team-trail", "s3BucketName": "stratus-red-team-trail-bucket-a1b2c3"}),
         ev("s3", "PutBucketLifecycle", 300, requestParameters={
             "bucketName": "stratus-red-team-trail-bucket-a1b2c3", "lifecycle": "",
             "LifecycleConfiguration": {"Rule": {"ID": "nuke-cloudtrail-logs-after-1-day", "Status": "Enabled",
                                                 "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}}})], [1]),
    "aws.defense-evasion.cloudtrail-stop": (
        ["cloudtrail_logging_stopped"],
        [ev("cloudtrail", "StopLogging", 0, requestParameters={"name": "stratus-red-team-trail"})], [0]),
    "aws.defense-evasion.dns-delete-logs": (
        ["route53_resolver_query_logging_removed"],
        [ev("route53resolver", "DisassociateResolverQueryLogConfig", 0,
            requestParameters={"resolverQueryLogConfigId": "rqlc-4b5c6d7e8f901234", "resourceId": "vpc-0a1b2c3d4e5f60718"}),
         ev("route53resolver", "DeleteResolverQueryLogConfig", 5, requestParameters={"resolverQueryLogConfigId": "rqlc-4b5c6d7e8f901234"})],
        [0, 1]),
    "aws.defense-evasion.organizations-leave": (
        ["organizations_leave"],
        [ev("organizations", "LeaveOrganization", 0, requestParameters=None)], [0]),
    "aws.defense-evasion.vpc-remove-flow-logs": (
        ["vpc_flow_logs_deleted"],
        [ev("ec2", "DeleteFlowLogs", 0, requestParameters={"DeleteFlowLogsRequest": {"FlowLogId": {"content": "fl-0a1b2c3d4e5f60718", "tag": 1}}},
            responseElements={"DeleteFlowLogsResponse": {"unsuccessful": "", "requestId": "5b1a2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}})], [0]),
    # discovery
    "aws.discovery.ec2-enumerate-from-instance": (
        ["instance_credentials_discovery_burst"],
        [ev(src, name, i * 3, readOnly=True, userIdentity=INSTANCE, sourceIPAddress="203.0.113.15", requestParameters=None)
         for i, (src, name) in enumerate([("sts", "GetCallerIdentity"), ("s3", "ListBuckets"), ("iam", "GetAccountSummary"),
                                          ("iam", "ListRoles"), ("iam", "ListUsers"), ("iam", "GetAccountAuthorizationDetails"),
                                          ("ec2", "DescribeSnapshots"), ("cloudtrail", "DescribeTrails"), ("guardduty", "ListDetectors")])],
        None),
    "aws.discovery.ec2-get-user-data": (
        ["ec2_user_data_read_in_bulk"],
        [denied(ev("ec2", "DescribeInstanceAttribute", i, readOnly=True,
                   requestParameters={"instanceId": f"i-0{i:016x}", "attribute": "userData"}), "Client.UnauthorizedOperation")
         for i in range(15)], None),
    "aws.discovery.ses-enumerate": (
        ["ses_enumeration"],
        [ev("ses", "GetAccountSendingEnabled", 0, readOnly=True, requestParameters=None),
         ev("ses", "GetSendQuota", 1, readOnly=True, requestParameters=None),
         ev("ses", "ListIdentities", 2, readOnly=True, requestParameters={"identityType": "EmailAddress"}),
         ev("ses", "GetIdentityVerificationAttributes", 3, readOnly=True, requestParameters={"identities": ["stratus@example.com"]})],
        [0, 1, 2, 3]),
    # execution
    "aws.execution.ec2-launch-unusual-instances": (
        ["ec2_unusual_instance_type_launched"],
        [denied(ev("ec2", "RunInstances", 0, requestParameters={
            "instancesSet": {"items": [{"imageId": "ami-0c02fb55956c7d316", "minCount": 10, "maxCount": 10}]},
            "instanceType": "p2.xlarge"}), "Client.UnauthorizedOperation")], [0]),
    "aws.execution.ec2-user-data": (
        ["ec2_instance_user_data_modified"],
        [ev("ec2", "StopInstances", 0, requestParameters={"instancesSet": {"items": [{"instanceId": "i-0a4fab226be14a0f7"}]}, "force": False}),
         ev("ec2", "ModifyInstanceAttribute", 60, requestParameters={"instanceId": "i-0a4fab226be14a0f7", "userData": "<sensitiveDataRemoved>"},
            responseElements={"_return": True}),
         ev("ec2", "StartInstances", 65, requestParameters={"instancesSet": {"items": [{"instanceId": "i-0a4fab226be14a0f7"}]}})], [1]),
    "aws.execution.ssm-send-command": (
        ["ssm_send_command_shell"],
        [ev("ssm", "SendCommand", 0, requestParameters={
            "instanceIds": ["i-0a4fab226be14a0f7", "i-0b5fab226be14a0f8", "i-0c6fab226be14a0f9"], "documentName": "AWS-RunShellScript",
            "parameters": "HIDDEN_DUE_TO_SECURITY_REASONS", "interactive": False},
            responseElements={"command": {"commandId": "3f2a1b0c-9d8e-4f7a-b6c5-d4e3f2a1b0c9", "documentName": "AWS-RunShellScript"}})], [0]),
    "aws.execution.ssm-start-session": (
        ["ssm_session_started"],
        [ev("ssm", "StartSession", i, requestParameters={"target": f"i-0{i}5fab226be14a0f8"},
            responseElements={"sessionId": f"ci-legacy-0e7f2b9c4d1a3e5f{i}", "tokenValue": "Value hidden due to security reasons."})
         for i in range(3)], [0, 1, 2]),
    # exfiltration
    "aws.exfiltration.ec2-security-group-open-port-22-ingress": (
        ["ec2_security_group_ssh_open_to_world"],
        [ev("ec2", "AuthorizeSecurityGroupIngress", 0, requestParameters={
            "groupId": "sg-0a1b2c3d4e5f60718",
            "ipPermissions": {"items": [{"ipProtocol": "tcp", "fromPort": 22, "toPort": 22,
                                         "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}]}})], [0]),
    "aws.exfiltration.ec2-share-ami": (
        ["ec2_ami_shared_publicly_or_externally"],
        [ev("ec2", "ModifyImageAttribute", 0, requestParameters={
            "imageId": "ami-0c55b159cbfafe1f0", "launchPermission": {"add": {"items": [{"userId": "012345678912"}]}},
            "attributeType": "launchPermission"})], [0]),
    "aws.exfiltration.ec2-share-ebs-snapshot": (
        ["ec2_snapshot_shared_publicly_or_externally"],
        [ev("ec2", "ModifySnapshotAttribute", 0, requestParameters={
            "snapshotId": "snap-0a1b2c3d4e5f60718", "createVolumePermission": {"add": {"items": [{"userId": "012345678912"}]}},
            "attributeType": "CREATE_VOLUME_PERMISSION"})], [0]),
    "aws.exfiltration.rds-share-snapshot": (
        ["ec2_snapshot_shared_publicly_or_externally"],
        [ev("rds", "ModifyDBSnapshotAttribute", 0, requestParameters={
            "dBSnapshotIdentifier": "stratus-red-team-rds-snapshot", "attributeName": "restore", "valuesToAdd": ["012345678912"]})], [0]),
    "aws.exfiltration.s3-backdoor-bucket-policy": (
        ["s3_bucket_policy_external_account"],
        [ev("s3", "PutBucketPolicy", 0, requestParameters={
            "bucketName": "stratus-red-team-bucket", "policy": (
                '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::193672423079:root"},'
                '"Action":["s3:GetObject","s3:GetBucketLocation","s3:ListBucket"],'
                '"Resource":["arn:aws:s3:::stratus-red-team-bucket/*","arn:aws:s3:::stratus-red-team-bucket"]}]}')})], [0]),
    # impact
    "aws.impact.bedrock-invoke-model": (
        ["bedrock_model_invoked"],
        [ev("bedrock", "InvokeModel", 0, readOnly=True, requestParameters={"modelId": "anthropic.claude-3-haiku-20240307-v1:0"})], [0]),
    "aws.impact.s3-ransomware-batch-deletion": (
        ["s3_versions_listed_then_batch_deleted"],
        [data("s3", "ListObjectVersions", 0, readOnly=True, requestParameters={"bucketName": BUCKET, "versions": "", **S3_HOST}),
         data("s3", "DeleteObjects", 2, requestParameters={"bucketName": BUCKET, "delete": "", **S3_HOST})], [0, 1]),
    "aws.impact.s3-ransomware-client-side-encryption": (
        ["s3_object_encrypted_with_customer_key"],
        [data("s3", "PutObject", i, requestParameters={"bucketName": BUCKET, "key": f"file-{i}.txt", **S3_HOST,
                                                      "x-amz-server-side-encryption-customer-algorithm": "AES256"},
              additionalEventData={"SSEApplied": "SSE_C", "bytesTransferredIn": 512})
         for i in range(12)], None),
    "aws.impact.s3-ransomware-individual-deletion": (
        ["s3_objects_deleted_in_bulk"],
        [data("s3", "ListObjectVersions", 0, readOnly=True, requestParameters={"bucketName": BUCKET, "versions": "", **S3_HOST})]
        + [data("s3", "DeleteObject", 1 + i, requestParameters={"bucketName": BUCKET, "key": f"file-{i}.txt",
                                                               "versionId": f"v{i:04d}EXAMPLEversionId", **S3_HOST})
           for i in range(51)], None),
    # initial access
    "aws.initial-access.console-login-without-mfa": (
        ["console_login_without_mfa"],
        [ev("signin", "ConsoleLogin", 0, userIdentity={"type": "IAMUser", "principalId": "AIDAEXAMPLESTRATUS01",
                                                        "arn": f"arn:aws:iam::{ACCOUNT}:user/stratus-red-team-user",
                                                        "accountId": ACCOUNT, "userName": "stratus-red-team-user"},
            eventType="AwsConsoleSignIn", requestParameters=None, responseElements={"ConsoleLogin": "Success"},
            additionalEventData={"LoginTo": "https://console.aws.amazon.com/console/home", "MobileVersion": "No", "MFAUsed": "No"})],
        [0]),
    # lateral movement
    "aws.lateral-movement.ec2-instance-connect": (
        ["ec2_instance_connect_ssh_key_pushed"],
        [ev("ec2-instance-connect", "SendSSHPublicKey", 0, requestParameters={
            "instanceId": "i-0a4fab226be14a0f7", "instanceOSUser": "ec2-user", "sSHPublicKey": "ssh-ed25519 AAAAC3EXAMPLE"},
            responseElements={"success": True})], [0]),
    "aws.lateral-movement.ec2-serial-console-send-ssh-public-key": (
        ["ec2_serial_console_access"],
        [ev("ec2", "EnableSerialConsoleAccess", 0, requestParameters={"EnableSerialConsoleAccessRequest": ""},
            responseElements={"EnableSerialConsoleAccessResponse": {"serialConsoleAccessEnabled": True}}),
         ev("ec2-instance-connect", "SendSerialConsoleSSHPublicKey", 10, requestParameters={
             "instanceId": "i-0a4fab226be14a0f7", "serialPort": 0, "sSHPublicKey": "ssh-ed25519 AAAAC3EXAMPLE"},
            responseElements={"success": True})], [0, 1]),
    # persistence
    "aws.persistence.iam-backdoor-role": (
        ["iam_role_trust_policy_external_account"],
        [ev("iam", "UpdateAssumeRolePolicy", 0, requestParameters={
            "roleName": "stratus-red-team-backdoor-role", "policyDocument": trust("arn:aws:iam::193672423079:root")})], [0]),
    "aws.persistence.iam-backdoor-user": (
        ["iam_access_key_created_for_other_user"],
        [ev("iam", "CreateAccessKey", 0, requestParameters={"userName": "stratus-red-team-backdoor-user"},
            responseElements={"accessKey": {"userName": "stratus-red-team-backdoor-user", "accessKeyId": "AKIAEXAMPLEBACKDOOR1",
                                            "status": "Active"}})], [0]),
    "aws.persistence.iam-create-admin-user": (
        ["iam_admin_policy_attached"],
        [ev("iam", "CreateUser", 0, requestParameters={"userName": "stratus-red-team-admin-user"}),
         ev("iam", "AttachUserPolicy", 2, requestParameters={"userName": "stratus-red-team-admin-user",
                                                            "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"})], [1]),
    "aws.persistence.iam-create-backdoor-identity-provider": (
        ["iam_identity_provider_created_or_updated"],
        [ev("iam", "CreateSAMLProvider", 0, requestParameters={"sAMLMetadataDocument": "<md:EntityDescriptor/>", "name": "stratus-red-team-saml"},
            responseElements={"sAMLProviderArn": f"arn:aws:iam::{ACCOUNT}:saml-provider/stratus-red-team-saml"})], [0]),
    "aws.persistence.iam-create-user-login-profile": (
        ["iam_login_profile_created_for_other_user"],
        [ev("iam", "CreateLoginProfile", 0, requestParameters={"userName": "stratus-red-team-user", "passwordResetRequired": False},
            responseElements={"loginProfile": {"userName": "stratus-red-team-user", "passwordResetRequired": False}})], [0]),
    "aws.persistence.lambda-backdoor-function": (
        ["lambda_permission_public"],
        [ev("lambda", "AddPermission20150331v2", 0, requestParameters={
            "functionName": "stratus-red-team-backdoor-f", "statementId": "backdoor", "action": "lambda:InvokeFunction",
            "principal": "*"},
            responseElements={"statement": '{"Sid":"backdoor","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunction"}'})], [0]),
    "aws.persistence.lambda-layer-extension": (
        ["lambda_function_layers_changed"],
        [ev("lambda", "UpdateFunctionConfiguration20150331v2", 0, requestParameters={
            "functionName": "stratus-red-team-func", "layers": ["arn:aws:lambda:us-east-1:701894745736:layer:stratus-red-team-extension:1"]})],
        [0]),
    "aws.persistence.lambda-overwrite-code": (
        ["lambda_function_code_updated"],
        [ev("lambda", "UpdateFunctionCode20150331v2", 0, requestParameters={"functionName": "stratus-red-team-ow-func", "publish": False},
            responseElements={"functionName": "stratus-red-team-ow-func", "codeSha256": "Q0Wj3bE1m2F3n4X5y6Z7a8B9c0D1e2F3g4H5i6J7k8L="})], [0]),
    "aws.persistence.rolesanywhere-create-trust-anchor": (
        ["iam_roles_anywhere_trust_anchor_created"],
        [ev("rolesanywhere", "CreateTrustAnchor", 0, requestParameters={
            "name": "stratus-red-team-ta", "enabled": True, "source": {"sourceType": "CERTIFICATE_BUNDLE"}},
            responseElements={"trustAnchor": {"name": "stratus-red-team-ta",
                                              "trustAnchorArn": f"arn:aws:rolesanywhere:us-east-1:{ACCOUNT}:trust-anchor/0f5a6b7c"}}),
         ev("rolesanywhere", "CreateProfile", 3, requestParameters={
             "name": "stratus-red-team-profile", "roleArns": [f"arn:aws:iam::{ACCOUNT}:role/stratus-red-team-role"]})], [0, 1]),
    "aws.persistence.sts-federation-token": (
        ["sts_federation_token_issued"],
        [ev("sts", "GetFederationToken", 0, readOnly=True, requestParameters={"name": "stratus_red_team", "durationSeconds": 129600},
            responseElements={"federatedUser": {"arn": f"arn:aws:sts::{ACCOUNT}:federated-user/stratus_red_team"},
                              "credentials": {"accessKeyId": "ASIAEXAMPLEFEDTOKEN1"}})], [0]),
    # privilege escalation
    "aws.privilege-escalation.iam-update-user-login-profile": (
        ["iam_login_profile_created_for_other_user"],
        [ev("iam", "UpdateLoginProfile", 0, requestParameters={"userName": "stratus-red-team-user", "passwordResetRequired": False})], [0]),
}


def _with_ids(technique: str, events: list[dict]) -> list[dict]:
    return [{**e, "eventID": f"{technique.rsplit('.', 1)[-1]}-{i:03d}"} for i, e in enumerate(events)]


def test_the_mapping_lists_every_stratus_aws_technique_once():
    assert len(TECHNIQUES) == 42
    tactics = {t.split(".")[1] for t in TECHNIQUES}
    assert tactics == {"credential-access", "defense-evasion", "discovery", "execution", "exfiltration", "impact",
                       "initial-access", "lateral-movement", "persistence", "privilege-escalation"}


def test_rules_missing_from_this_branch_are_the_expected_external_ones():
    mapped = {r for ids, _, _ in TECHNIQUES.values() for r in ids}
    assert mapped - CATALOGUE.keys() <= EXPECTED_EXTERNAL, "a mapped rule id exists nowhere"


@pytest.mark.parametrize("technique", sorted(TECHNIQUES))
def test_technique_alerts_and_cites_its_events(technique):
    ids, events, cited = TECHNIQUES[technique]
    events = _with_ids(technique, events)
    own = {e["eventID"] for e in events}
    present = [r for r in ids if r in CATALOGUE]
    assert present or set(ids) <= EXPECTED_EXTERNAL
    for rule_id in present:
        rule = CATALOGUE[rule_id]
        res = run_test(rule, 0, RuleTest(name=technique, alerts=1, events=events))
        assert res.alerts, f"{rule_id} did not alert on {technique}: {res.problems}"
        evidence = {e.event_id for a in res.alerts for e in a.evidence if e.event_id}
        assert evidence and evidence <= own, f"{rule_id} cites {evidence - own or 'nothing'}"
        if cited is not None:
            want = {events[i]["eventID"] for i in cited}
            assert want <= evidence, f"{rule_id} does not cite {sorted(want - evidence)}"
