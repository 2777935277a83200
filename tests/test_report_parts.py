"""The report's parts without a lake: axis steps, ARN labels, console links, one actor per principal."""

from __future__ import annotations

import re

import pytest

from pipeline.analyst.charts import nice_ticks
from pipeline.analyst.console import link, shorten
from pipeline.analyst.principals import arn_from_guardduty, canonical_actors
from pipeline.analyst.tables import SCRIPT, csp_hash


@pytest.mark.parametrize("top", [*range(1, 120), 999, 1000, 1001, 2500, 2501, 12345, 10**6 + 1])
def test_ticks_are_whole_round_steps_covering_the_top(top):
    ticks = nice_ticks(top)
    step = ticks[1]
    assert ticks == [i * step for i in range(len(ticks))] and all(isinstance(t, int) for t in ticks)
    assert re.fullmatch(r"[125]0*", str(step))
    assert ticks[-1] >= top > ticks[-2] and len(ticks) <= 5


ROLE = "arn:aws:sts::303373800728:assumed-role/AWSReservedSSO_AWSPowerUserAccess_db6aa73742ca29b7/frank@example.com"


@pytest.mark.parametrize("arn,chars,expected", [
    ("arn:aws:iam::303373800728:user/ci-legacy", 40, "arn:aws:iam::303373800728:user/ci-legacy"),
    ("arn:aws:iam::303373800728:user/ci-legacy", 34, "…:iam::303373800728:user/ci-legacy"),
    (ROLE, 40, "303373800728:…/frank@example.com"),
    ("arn:aws:s3:::prod-app-assets-303373800728-logs-archive", 30, "…ets-303373800728-logs-archive"),
])
def test_arns_are_shortened_from_the_left_keeping_account_and_name(arn, chars, expected):
    short = shorten(arn, chars)
    assert short == expected and len(short) <= chars


def test_other_labels_lose_their_middle():
    assert shorten("discovery_access_denied_burst_extra_long", 20) == "discove…t_extra_long"
    assert shorten("short", 20) == "short"


def test_console_links_are_built_from_the_value_alone():
    assert link("arn:aws:iam::111111111111:user/division/alice").url == \
        "https://console.aws.amazon.com/iam/home#/users/details/alice"
    assert link(ROLE).url == "https://console.aws.amazon.com/iam/home#/roles/details/" \
        "AWSReservedSSO_AWSPowerUserAccess_db6aa73742ca29b7"
    assert link(ROLE).account == "303373800728"
    assert link("arn:aws:s3:::my-bucket/some/key").url == "https://s3.console.aws.amazon.com/s3/buckets/my-bucket"
    assert link("i-0abc1234def567890", "eu-west-1").url == \
        "https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#InstanceDetails:instanceId=i-0abc1234def567890"
    assert link("arn:aws:ec2:us-east-2:111111111111:security-group/sg-0123456789abcdef0").url == \
        "https://us-east-2.console.aws.amazon.com/ec2/home?region=us-east-2#SecurityGroup:groupId=sg-0123456789abcdef0"
    assert link("arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab").url == \
        "https://us-east-1.console.aws.amazon.com/kms/home?region=us-east-1#/kms/keys/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert link("0b0fb635a32f2c45a4d3b88cb2b19dc4", "us-east-1", finding=True).url == \
        "https://us-east-1.console.aws.amazon.com/guardduty/home?region=us-east-1#/findings?macros=current&fId=" \
        "0b0fb635a32f2c45a4d3b88cb2b19dc4"
    assert link("arn:aws-us-gov:iam::111111111111:role/admin").url.startswith("https://console.amazonaws-us-gov.com/")
    for nothing in ("arn:aws:iam::111111111111:root", "AKIAEXAMPLE", "198.51.100.7", "i-0abc1234def567890", None, ""):
        assert link(nothing) is None  # an instance without a region has no console page to name


def test_hostile_names_stay_inside_the_console_path():
    url = link('arn:aws:iam::1:user/x"><script>alert(1)</script>/../../evil?a#b').url
    assert url.startswith("https://console.aws.amazon.com/iam/home#/users/details/")
    assert not re.search(r'[<>"\s]', url) and "javascript:" not in url
    assert link("arn:aws:iam::1:user/javascript:alert(1)").url.startswith("https://console.aws.amazon.com/")


def test_guardduty_principals_spelled_as_cloudtrail_arns():
    assert arn_from_guardduty("IAMUser", "ci-legacy", "AIDA2EPT6LPKLSQZMYA6Z", "303373800728") == \
        "arn:aws:iam::303373800728:user/ci-legacy"
    assert arn_from_guardduty("Root", "Root", "303373800728", "303373800728") == "arn:aws:iam::303373800728:root"
    assert arn_from_guardduty("AssumedRole", "orders-api-role", "AROAEXAMPLE:orders-api", "1", "aws-cn") == \
        "arn:aws-cn:sts::1:assumed-role/orders-api-role/orders-api"
    assert arn_from_guardduty("AssumedRole", "r", "AROAEXAMPLE", "1") is None  # no session name: no exact ARN
    assert arn_from_guardduty(None, "x", None, "1") is None


def test_canonical_actors_prefer_the_cloudtrail_spelling_of_the_same_key():
    alerts = [
        {"id": "ct", "actor": "arn:aws:iam::1:user/path/alice", "entities": ["principal:arn:aws:iam::1:user/path/alice",
                                                                            "access_key:AKIA1"], "finding_ids": []},
        {"id": "gd", "actor": "alice", "account_id": "1", "entities": ["access_key:AKIA1"], "finding_ids": ["f1"]},
        {"id": "gd2", "actor": "bob", "account_id": "1", "entities": ["access_key:AKIA2"], "finding_ids": ["f2"]},
        {"id": "inst", "actor": "i-0abc", "account_id": "1", "entities": [], "finding_ids": ["f3"]},
    ]
    findings = {"f1": ("IAMUser", "alice", "AIDA1", "AKIA1", "1", "aws"),  # the path is only in CloudTrail's ARN
                "f2": ("IAMUser", "bob", "AIDA2", "AKIA2", "1", "aws"),
                "f3": (None, None, None, None, "1", "aws")}
    assert canonical_actors(alerts, findings) == {
        "ct": "arn:aws:iam::1:user/path/alice", "gd": "arn:aws:iam::1:user/path/alice",
        "gd2": "arn:aws:iam::1:user/bob", "inst": "i-0abc"}


def test_the_csp_hash_is_the_scripts():
    import base64
    import hashlib

    assert csp_hash() == "'sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode() + "'"
    assert "innerHTML" not in SCRIPT and "eval" not in SCRIPT  # rows are moved and hidden, never rebuilt from text
