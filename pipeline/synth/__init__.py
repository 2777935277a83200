"""Deterministic synthetic AWS organisation logs: record factories, a whole log archive in
AWS's own layout, and injected attack scenarios whose event ids the summary reports."""

from pipeline.synth.archive import KEY_PATTERNS, ArchiveSummary, DirSink, S3Sink, ScenarioInfo, Sink, generate_archive
from pipeline.synth.records import (
                                    NULL,
                                    Replace,
                                    assumed_role,
                                    aws_service,
                                    deep_merge,
                                    iam_user,
                                    make_cloudtrail_record,
                                    make_console_login,
                                    make_guardduty_finding,
                                    root,
                                    sso_user,
)
from pipeline.synth.scenarios import SCENARIOS

__all__ = [
    "KEY_PATTERNS", "ArchiveSummary", "DirSink", "S3Sink", "ScenarioInfo", "Sink", "generate_archive",
    "NULL", "Replace", "assumed_role", "aws_service", "deep_merge", "iam_user", "make_cloudtrail_record",
    "make_console_login", "make_guardduty_finding", "root", "sso_user", "SCENARIOS",
]
