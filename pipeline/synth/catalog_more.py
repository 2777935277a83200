"""The benign API catalogue, continued: IAM, STS, KMS, Lambda, logs, SSM, Secrets Manager,
DynamoDB, CloudFormation, ECR, ECS, CloudWatch, CloudTrail, SQS, Organizations, GuardDuty, ..."""

from __future__ import annotations

from typing import Any

from pipeline.synth.catalog import Api, core_apis
from pipeline.synth.ids import stable_hex, stable_id


def build_apis(inv: dict[str, Any]) -> dict[str, list[Api]]:
    """Every benign API of the catalogue with a few request variants each, keyed ``service:Name``."""
    apis = core_apis(inv)
    for key, variants in more_apis(inv).items():
        apis.setdefault(key, []).extend(variants)
    return apis


def more_apis(inv: dict[str, Any]) -> dict[str, list[Api]]:
    acct, region, env = inv["account"], inv["region"], inv["env"]
    apis: dict[str, list[Api]] = {}

    def add(source: str, name: str, ro: bool, variants: list, **kw: Any) -> None:
        for v in variants:
            req, resp, extra = (v + (None, None))[:3] if isinstance(v, tuple) else (v, None, None)
            api = Api(source, name, ro, req, resp, extra, **kw)
            apis.setdefault(api.key, []).append(api)

    def res(kind: str, arns: list[str]) -> dict:
        return {"resources": [{"accountId": acct, "type": kind, "ARN": a} for a in arns]}

    # IAM (global: recorded in us-east-1)
    iam = "iam.amazonaws.com"
    roles = inv["roles"]
    add(iam, "GetRole", True, [{"roleName": r} for r in roles[:6]])
    add(iam, "ListRoles", True, [{}, {"maxItems": 1000}])
    add(iam, "ListAttachedRolePolicies", True, [{"roleName": r} for r in roles[:4]])
    add(iam, "ListRolePolicies", True, [{"roleName": r} for r in roles[:4]])
    add(iam, "GetRolePolicy", True, [{"roleName": r, "policyName": "inline-access"} for r in roles[:3]])
    add(iam, "GetPolicy", True, [{"policyArn": f"arn:aws:iam::{acct}:policy/{p}"}
                                 for p in ("orders-api-access", "backup-operator", "deploy-boundary")])
    add(iam, "GetPolicyVersion", True, [{"policyArn": f"arn:aws:iam::{acct}:policy/orders-api-access", "versionId": "v3"}])
    add(iam, "ListPolicies", True, [{"scope": "Local", "onlyAttached": False, "maxItems": 100}])
    add(iam, "ListUsers", True, [{}])
    add(iam, "GetUser", True, [{"userName": u} for u in ("ci-legacy", "svc-backup")])
    add(iam, "ListAccessKeys", True, [{"userName": u} for u in ("ci-legacy", "svc-backup")])
    add(iam, "ListMFADevices", True, [{"userName": "jdoe"}])
    add(iam, "GetAccountPasswordPolicy", True, [None])
    add(iam, "GetAccountSummary", True, [None])
    add(iam, "GetAccountAuthorizationDetails", True, [{"filter": ["Role", "LocalManagedPolicy"], "maxItems": 100}])
    add(iam, "TagRole", False, [{"roleName": r, "tags": [{"key": "owner", "value": "platform"}]} for r in roles[:3]])
    add(iam, "PutRolePolicy", False, [{"roleName": "orders-api-role", "policyName": "inline-access", "policyDocument":
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["dynamodb:GetItem","dynamodb:PutItem",'
        f'"dynamodb:Query"],"Resource":"arn:aws:dynamodb:{region}:{acct}:table/orders"}}]}}'}])

    # STS
    sts = "sts.amazonaws.com"
    add(sts, "GetCallerIdentity", True, [None])

    # KMS
    kms = "kms.amazonaws.com"
    keys = [f"arn:aws:kms:{region}:{acct}:key/{k}" for k in inv["kms_keys"]]
    for fn in inv["functions"][:3]:
        add(kms, "Decrypt", True, [({"encryptionContext": {"aws:lambda:FunctionArn":
            f"arn:aws:lambda:{region}:{acct}:function:{fn}"}, "encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
            None, res("AWS::KMS::Key", [keys[0]]))])
    add(kms, "Decrypt", True, [({"encryptionContext": {"SecretARN": f"arn:aws:secretsmanager:{region}:{acct}:secret:{s}",
                                                       "SecretVersionId": stable_hex(s, length=8)},
                                 "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}, None, res("AWS::KMS::Key", [keys[1]]))
                                for s in inv["secrets"]])
    add(kms, "GenerateDataKey", True, [({"keyId": f"alias/{env}-data", "keySpec": "AES_256", "encryptionContext": {
        "aws:dynamodb:tableName": t, "aws:dynamodb:subscriberId": acct}}, None, res("AWS::KMS::Key", [keys[2]]))
        for t in inv["tables"][:2]])
    add(kms, "DescribeKey", True, [({"keyId": k}, None, res("AWS::KMS::Key", [a]))
                                   for k, a in zip(inv["kms_keys"], keys, strict=True)])
    add(kms, "GetKeyRotationStatus", True, [({"keyId": a}, None, res("AWS::KMS::Key", [a])) for a in keys])
    add(kms, "ListAliases", True, [None, {"limit": 100}])
    add(kms, "ListKeys", True, [{"limit": 1000}])

    # Lambda (the eventNames carry API version suffixes)
    lam = "lambda.amazonaws.com"
    fns = inv["functions"]
    add(lam, "ListFunctions20150331", True, [{}, {"maxItems": 50}], version="1.08")
    add(lam, "GetFunction20150331v2", True, [{"functionName": f} for f in fns], version="1.08")
    add(lam, "GetFunctionConfiguration20150331v2", True, [{"functionName": f} for f in fns[:3]], version="1.08")
    add(lam, "ListEventSourceMappings20150331", True, [{"functionName": fns[3]}], version="1.08")
    for f in fns[:3]:
        arn = f"arn:aws:lambda:{region}:{acct}:function:{f}"
        conf = {"functionName": f, "functionArn": arn, "runtime": "python3.12", "role":
                f"arn:aws:iam::{acct}:role/service-role/{f}-role", "handler": "app.handler", "codeSize": 4821344,
                "description": "", "timeout": 30, "memorySize": 512, "lastModified": "2026-11-01T10:02:11.000+0000",
                "codeSha256": stable_id("", f, "sha", length=43, alphabet="ABCDEFGHIJKLMNOPabcdefghijklmnop0123456789+/") + "=",
                "version": "$LATEST", "tracingConfig": {"mode": "PassThrough"},
                "revisionId": stable_hex(f, "rev", length=36), "state": "Active", "lastUpdateStatus": "InProgress",
                "lastUpdateStatusReason": "The function is being created.", "lastUpdateStatusReasonCode": "Creating",
                "packageType": "Zip", "architectures": ["arm64"], "ephemeralStorage": {"size": 512},
                "snapStart": {"applyOn": "None", "optimizationStatus": "Off"},
                "loggingConfig": {"logFormat": "Text", "logGroup": f"/aws/lambda/{f}"}}
        add(lam, "UpdateFunctionCode20150331v2", False, [({"functionName": f, "publish": False, "dryRun": False,
            "s3Bucket": inv["buckets"][2], "s3Key": f"{f}/build-{stable_hex(f, length=7)}.zip"}, conf)], version="1.08")
        add(lam, "PublishVersion20150331", False, [({"functionName": f, "codeSha256": conf["codeSha256"]},
                                                    {**conf, "version": "42", "functionArn": arn + ":42"})], version="1.08")
        add(lam, "UpdateAlias20150331", False, [({"functionName": f, "name": "live", "functionVersion": "42"}, {
            "aliasArn": arn + ":live", "name": "live", "functionVersion": "42", "description": "",
            "revisionId": stable_hex(f, "alias", length=36)})], version="1.08")

    # CloudWatch Logs
    logs = "logs.amazonaws.com"
    lgs = inv["log_groups"]
    add(logs, "DescribeLogGroups", True, [{"logGroupNamePrefix": "/aws/lambda/"}, {"limit": 50}])
    add(logs, "DescribeLogStreams", True, [{"logGroupName": g, "orderBy": "LastEventTime", "descending": True,
                                            "limit": 50} for g in lgs[:4]])
    add(logs, "CreateLogStream", False, [{"logGroupName": g, "logStreamName":
        f"2026/11/01/[$LATEST]{stable_hex(g, length=32)}"} for g in lgs[:5]])
    add(logs, "FilterLogEvents", True, [{"logGroupName": g, "startTime": 1793520000000, "endTime": 1793530800000,
                                         "filterPattern": "ERROR", "interleaved": True} for g in lgs[:2]])
    add(logs, "PutRetentionPolicy", False, [{"logGroupName": g, "retentionInDays": 30} for g in lgs[:2]])
    add(logs, "StartQuery", True, [({"logGroupNames": [lgs[0]], "startTime": 1793520000, "endTime": 1793530800,
        "queryString": "fields @timestamp, @message | filter @message like /ERROR/ | sort @timestamp desc | limit 50"},
        {"queryId": stable_hex(acct, region, "q", length=36)})])

    # SSM
    ssm = "ssm.amazonaws.com"
    add(ssm, "GetParameter", True, [{"name": p, "withDecryption": True} for p in inv["params"]])
    add(ssm, "GetParameters", True, [{"names": inv["params"][:2], "withDecryption": True}])
    add(ssm, "GetParametersByPath", True, [{"path": "/app/orders", "recursive": True, "withDecryption": True}])
    add(ssm, "DescribeInstanceInformation", True, [{"maxResults": 50}, {"instanceInformationFilterList": [
        {"key": "PingStatus", "valueSet": ["Online"]}]}])
    add(ssm, "PutParameter", False, [({"name": "/app/orders/feature_flags", "type": "String", "overwrite": True,
                                       "tier": "Standard"}, {"version": 17, "tier": "Standard"})])
    for i in inv["instances"][:3]:
        ip = f"10.0.{int(stable_hex(i, length=2), 16) % 64}.{int(stable_hex(i, 'b', length=2), 16) % 250 + 4}"
        add(ssm, "UpdateInstanceInformation", False, [{"instanceId": i, "agentVersion": "3.3.987.0", "agentStatus": "Active",
            "platformType": "Linux", "platformName": "Amazon Linux", "platformVersion": "2023", "iPAddress": ip,
            "computerName": f"ip-{ip.replace('.', '-')}.{region}.compute.internal", "agentName": "amazon-ssm-agent",
            "availabilityZone": f"{region}a", "availabilityZoneId": "use1-az1", "sSMConnectionChannel": "ssmmessages"}])
        add(ssm, "ListInstanceAssociations", True, [{"instanceId": i, "maxResults": 20}])
        add(ssm, "StartSession", False, [({"target": i}, {"sessionId": f"ops-{stable_hex(i, length=17)}",
            "tokenValue": "Value hidden due to security reasons.",
            "streamUrl": f"wss://ssmmessages.{region}.amazonaws.com/v1/data-channel/{stable_hex(i, length=17)}"
                         "?role=publish_subscribe&cell-number=AAEAAQAAAAA"})])

    # Secrets Manager
    sm = "secretsmanager.amazonaws.com"
    arns = [f"arn:aws:secretsmanager:{region}:{acct}:secret:{s}-{stable_id('', s, length=6, alphabet='abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ')}"
            for s in inv["secrets"]]
    add(sm, "GetSecretValue", True, [{"secretId": a} for a in arns])
    add(sm, "DescribeSecret", True, [{"secretId": a} for a in arns])
    add(sm, "ListSecrets", True, [{}, {"maxResults": 100, "includePlannedDeletion": False}])

    # DynamoDB
    ddb = "dynamodb.amazonaws.com"
    tarns = [f"arn:aws:dynamodb:{region}:{acct}:table/{t}" for t in inv["tables"]]
    add(ddb, "DescribeTable", True, [({"tableName": t}, None, res("AWS::DynamoDB::Table", [a]))
                                     for t, a in zip(inv["tables"], tarns, strict=True)])
    add(ddb, "ListTables", True, [None, {"limit": 100}])
    add(ddb, "DescribeContinuousBackups", True, [({"tableName": t}, None, res("AWS::DynamoDB::Table", [a]))
                                                 for t, a in zip(inv["tables"][:2], tarns, strict=False)])
    add(ddb, "DescribeTimeToLive", True, [({"tableName": inv["tables"][1]}, None, res("AWS::DynamoDB::Table", [tarns[1]]))])

    # CloudFormation
    cfn = "cloudformation.amazonaws.com"
    stacks = inv["stacks"]
    sid = {s: f"arn:aws:cloudformation:{region}:{acct}:stack/{s}/{stable_hex(acct, region, s, length=8)}-"
              f"{stable_hex(s, length=4)}-11ef-{stable_hex(s, 'x', length=4)}-{stable_hex(s, 'y', length=12)}" for s in stacks}
    add(cfn, "DescribeStacks", True, [{"stackName": s} for s in stacks] + [None])
    add(cfn, "ListStacks", True, [{"stackStatusFilter": ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"]}])
    add(cfn, "DescribeStackEvents", True, [{"stackName": sid[s]} for s in stacks[1:3]])
    add(cfn, "GetTemplateSummary", True, [{"templateURL": f"https://{inv['buckets'][3]}.s3.{region}.amazonaws.com/"
                                                          f"{s}/template.yaml"} for s in stacks[1:3]])
    for s in stacks[1:3]:
        cs = f"gh-{stable_hex(s, 'cs', length=12)}"
        csid = f"arn:aws:cloudformation:{region}:{acct}:changeSet/{cs}/{stable_hex(s, 'csid', length=36)}"
        add(cfn, "CreateChangeSet", False, [({"stackName": s, "templateURL": f"https://{inv['buckets'][3]}.s3.{region}."
            f"amazonaws.com/{s}/template.yaml", "parameters": [{"parameterKey": "ImageTag", "parameterValue": "sha-4be1c2d"}],
            "capabilities": ["CAPABILITY_IAM"], "changeSetName": cs, "changeSetType": "UPDATE"},
            {"id": csid, "stackId": sid[s]})])
        add(cfn, "DescribeChangeSet", True, [{"changeSetName": csid}])
        add(cfn, "ExecuteChangeSet", False, [{"changeSetName": csid}])

    # ECR / ECS
    ecr = "ecr.amazonaws.com"
    add(ecr, "GetAuthorizationToken", True, [{"registryIds": [acct]}, None])
    for r in inv["repos"]:
        add(ecr, "BatchCheckLayerAvailability", True, [{"repositoryName": r, "registryId": acct,
            "layerDigests": [f"sha256:{stable_hex(r, k, length=64)}" for k in range(3)]}])
        add(ecr, "PutImage", False, [({"repositoryName": r, "imageTag": "sha-4be1c2d", "registryId": acct,
            "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json"},
            {"image": {"registryId": acct, "repositoryName": r, "imageId": {"imageDigest":
             f"sha256:{stable_hex(r, 'img', length=64)}", "imageTag": "sha-4be1c2d"}}},
            res("AWS::ECR::Repository", [f"arn:aws:ecr:{region}:{acct}:repository/{r}"]))])
        add(ecr, "DescribeImages", True, [{"repositoryName": r, "maxResults": 100}])
    ecs = "ecs.amazonaws.com"
    cluster = inv["cluster"]
    add(ecs, "DescribeServices", True, [{"cluster": cluster, "services": ["orders-api", "stream-processor"]}])
    add(ecs, "ListTasks", True, [{"cluster": cluster, "serviceName": "orders-api"}])
    add(ecs, "DescribeTasks", True, [{"cluster": cluster, "tasks": [stable_hex(acct, region, "task", length=32)]}])
    add(ecs, "UpdateService", False, [({"cluster": cluster, "service": "orders-api", "forceNewDeployment": True},
                                        {"service": {"serviceName": "orders-api", "status": "ACTIVE", "desiredCount": 3}})])

    # CloudWatch, CloudTrail (read only), SQS, ELB, RDS, Auto Scaling
    cw = "monitoring.amazonaws.com"
    add(cw, "DescribeAlarms", True, [{"maxRecords": 100}, {"alarmNamePrefix": "orders-"}])
    add(cw, "GetMetricData", True, [{"metricDataQueries": [{"id": "m1", "metricStat": {"metric": {"namespace":
        "AWS/Lambda", "metricName": "Errors", "dimensions": [{"name": "FunctionName", "value": f}]},
        "period": 300, "stat": "Sum"}}], "startTime": "Nov 1, 2026, 9:00:00 AM", "endTime": "Nov 1, 2026, 10:00:00 AM"}
        for f in fns[:2]])
    ct = "cloudtrail.amazonaws.com"
    add(ct, "DescribeTrails", True, [{"includeShadowTrails": True}, None])
    add(ct, "GetTrailStatus", True, [{"name": f"arn:aws:cloudtrail:us-east-1:{acct}:trail/organization-trail"}])
    add(ct, "LookupEvents", True, [{"maxResults": 50, "lookupAttributes": [{"attributeKey": "ReadOnly",
                                                                            "attributeValue": "false"}]}])
    sqs = "sqs.amazonaws.com"
    qurls = [f"https://sqs.{region}.amazonaws.com/{acct}/{q}" for q in inv["queues"]]
    add(sqs, "GetQueueUrl", True, [{"queueName": q} for q in inv["queues"]])
    add(sqs, "GetQueueAttributes", True, [({"queueUrl": u, "attributeNames": ["All"]}, None,
        res("AWS::SQS::Queue", [f"arn:aws:sqs:{region}:{acct}:{q}"]))
        for u, q in zip(qurls, inv["queues"], strict=True)])
    elb = "elasticloadbalancing.amazonaws.com"
    add(elb, "DescribeLoadBalancers", True, [{}, {"names": [f"{env}-orders-alb"]}], version="1.08")
    add(elb, "DescribeTargetHealth", True, [{"targetGroupArn": f"arn:aws:elasticloadbalancing:{region}:{acct}:"
        f"targetgroup/orders-api/{stable_hex(acct, region, 'tg', length=16)}"}], version="1.08")
    add("rds.amazonaws.com", "DescribeDBInstances", True, [{}, {"dBInstanceIdentifier": f"{env}-orders-db"}])
    add("autoscaling.amazonaws.com", "DescribeAutoScalingGroups", True, [{}, {"maxRecords": 100}])

    # Management-account and security-account services
    org = "organizations.amazonaws.com"
    add(org, "ListAccounts", True, [None, {"maxResults": 20}])
    add(org, "DescribeOrganization", True, [None])
    add(org, "ListPoliciesForTarget", True, [{"targetId": acct, "filter": "SERVICE_CONTROL_POLICY"}])
    add("health.amazonaws.com", "DescribeEventAggregates", True, [{"aggregateField": "eventTypeCategory",
        "filter": {"eventStatusCodes": ["open", "upcoming"]}}])
    add("ce.amazonaws.com", "GetCostAndUsage", True, [{"timePeriod": {"start": "2026-10-01", "end": "2026-11-01"},
        "granularity": "MONTHLY", "metrics": ["UnblendedCost"], "groupBy": [{"type": "DIMENSION", "key": "SERVICE"}]}])
    gd = "guardduty.amazonaws.com"
    det = stable_hex(acct, region, "detector")
    add(gd, "ListDetectors", True, [{}])
    add(gd, "GetDetector", True, [{"detectorId": det}])
    add(gd, "ListFindings", True, [{"detectorId": det, "findingCriteria": {"criterion": {"service.archived":
        {"eq": ["false"]}}}, "sortCriteria": {"attributeName": "updatedAt", "orderBy": "DESC"}, "maxResults": 50}])
    add(gd, "GetFindings", True, [{"detectorId": det, "findingIds": [stable_hex(acct, region, "f", k) for k in range(3)]}])
    add("securityhub.amazonaws.com", "GetFindings", True, [{"filters": {"RecordState": [{"value": "ACTIVE",
        "comparison": "EQUALS"}], "SeverityLabel": [{"value": "HIGH", "comparison": "EQUALS"}]}, "maxResults": 100}])
    return apis
