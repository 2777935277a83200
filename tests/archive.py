"""Tiny builders for archives in the AWSLogs layout, for tests that need exact control of objects."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from pipeline.synth.records import iam_user, make_cloudtrail_record


def ct_key(account="111111111111", region="us-east-1", day="2026-11-01", hhmm="1000", uniq="abc", org=None, prefix=""):
    y, m, d = day.split("-")
    org_part = f"{org}/" if org else ""
    return (f"{prefix}AWSLogs/{org_part}{account}/CloudTrail/{region}/{y}/{m}/{d}/"
            f"{account}_CloudTrail_{region}_{y}{m}{d}T{hhmm}Z_{uniq}.json.gz")


def gd_key(account="111111111111", region="us-east-1", day="2026-11-01", uniq="0b1c2d3e-0000-4000-8000-000000000001", prefix=""):
    y, m, d = day.split("-")
    return f"{prefix}AWSLogs/{account}/GuardDuty/{region}/{y}/{m}/{d}/{uniq}.jsonl.gz"


def ct_bytes(records: list[dict]) -> bytes:
    return gzip.compress(orjson.dumps({"Records": records}), mtime=0)


def gd_bytes(findings: list[dict]) -> bytes:
    return gzip.compress(b"\n".join(orjson.dumps(f) for f in findings) + b"\n", mtime=0)


def records_for(n: int, account="111111111111", region="us-east-1", day="2026-11-01", hour=10, tag="r") -> list[dict]:
    return [
        make_cloudtrail_record(
            eventTime=f"{day}T{hour:02d}:{i % 60:02d}:{i % 59:02d}Z", awsRegion=region,
            userIdentity=iam_user("alice", account), recipientAccountId=account,
            eventID=f"{tag}-{account}-{region}-{day}-{hour}-{i}",
        )
        for i in range(n)
    ]


class DirArchive:
    """Writes objects under a folder exactly as an S3 sync of the bucket would."""

    def __init__(self, root: Path):
        self.root = root

    def put(self, key: str, data: bytes) -> None:
        p = self.root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


