import datetime as dt

import pytest

from pipeline import layout
from tests.archive import ct_key, gd_key


@pytest.mark.parametrize(
    "key, kind, account, org",
    [
        (ct_key(), layout.CLOUDTRAIL, "111111111111", None),
        (ct_key(org="o-abc1234567"), layout.CLOUDTRAIL, "111111111111", "o-abc1234567"),
        (ct_key(prefix="trails/prod/"), layout.CLOUDTRAIL, "111111111111", None),
        (gd_key(account="222222222222"), layout.GUARDDUTY, "222222222222", None),
        ("AWSLogs/111111111111/CloudTrail-Digest/us-east-1/2026/11/01/"
         "111111111111_CloudTrail-Digest_us-east-1_org-trail_us-east-1_20261101T100000Z.json.gz", layout.DIGEST, "111111111111", None),
        ("AWSLogs/111111111111/CloudTrail-Insight/us-east-1/2026/11/01/"
         "111111111111_CloudTrail-Insight_us-east-1_20261101T1000Z_abc.json.gz", layout.INSIGHT, "111111111111", None),
    ],
)
def test_layout_keys_are_recognised(key, kind, account, org):
    obj = layout.classify(key, 10, "etag")
    assert isinstance(obj, layout.LogObject)
    assert (obj.kind, obj.account, obj.region, obj.date, obj.org_id) == (kind, account, "us-east-1", dt.date(2026, 11, 1), org)


@pytest.mark.parametrize(
    "key, reason",
    [
        ("AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/01/", "folder"),
        ("random/file.txt", "outside"),
        ("AWSLogs/111111111111/Config/us-east-1/2026/11/01/x.json.gz", "unknown source"),
        ("AWSLogs/111111111111/CloudTrail/us-east-1/2026/13/01/" + ct_key().rsplit("/", 1)[1], "not a date"),
        ("AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/01/notes.txt", "naming pattern"),
        ("AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/01/"
         "222222222222_CloudTrail_us-east-1_20261101T1000Z_abc.json.gz", "differs"),
        ("AWSLogs/111111111111/CloudTrail/moon-base-1x/2026/11/01/x.json.gz", "not an AWS region"),
    ],
)
def test_keys_outside_the_layout_are_reported_with_a_reason(key, reason):
    got = layout.classify(key)
    assert isinstance(got, layout.Unrecognised)
    assert reason in got.reason


def test_date_prefixes_per_day_then_per_month_for_long_ranges():
    assert layout.date_prefixes(dt.date(2026, 10, 31), dt.date(2026, 11, 2)) == ["2026/10/31/", "2026/11/01/", "2026/11/02/"]
    months = layout.date_prefixes(dt.date(2025, 12, 15), dt.date(2026, 3, 1))
    assert months == ["2025/12/", "2026/01/", "2026/02/", "2026/03/"]
    assert layout.date_prefixes(None, None) is None
    assert layout.date_prefixes(dt.date(2026, 1, 2), dt.date(2026, 1, 1)) == []
