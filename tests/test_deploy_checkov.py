"""checkov over deploy/: no failed check on the CloudFormation template or the Dockerfile, and every
skipped check carries its reason in the template (``Metadata: checkov: skip: [{id, comment}]``).

checkov lives in ``.venv-tools`` (``make tools``; ``make test`` builds it): its install pins an older
boto3 than the project's, so it never goes into ``.venv``. ``--skip-download`` keeps it offline (no
guideline or policy download from its vendor's platform).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.test_deploy_aws import DOCKERFILE, TEMPLATE

ROOT = Path(__file__).resolve().parents[1]
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    """One checkov run over the template, the Dockerfile and a copy of the template whose lake bucket
    lost its skip (the control: that check must then fail). Results by file name."""
    if not CHECKOV.exists():
        pytest.fail("checkov is not installed: run `make tools` (make test does)")
    control = tmp_path_factory.mktemp("checkov") / "unexplained.yml"
    text = TEMPLATE.read_text()
    start = text.index("  LakeBucket:\n")
    meta = text.index("    Metadata:\n", start)
    props = text.index("    Properties:\n", meta)
    control.write_text(text[:meta] + text[props:])
    cmd = [str(CHECKOV), "--framework", "cloudformation", "dockerfile", "--skip-download", "-o", "json",
           "-f", str(TEMPLATE), "-f", str(DOCKERFILE), "-f", str(control)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode in (0, 1), res.stderr  # 1: failed checks (the control has one)
    reports = json.loads(res.stdout)
    out: dict[str, dict] = {}
    for report in reports if isinstance(reports, list) else [reports]:
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        for kind in ("passed_checks", "failed_checks", "skipped_checks"):
            for check in report["results"].get(kind, []):
                name = Path(check["file_path"]).name
                out.setdefault(name, {"passed_checks": [], "failed_checks": [], "skipped_checks": []})
                out[name][kind].append(check)
    return out


def test_template_and_dockerfile_have_no_failed_check(results):
    for name in (TEMPLATE.name, DOCKERFILE.name):
        failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results[name]["failed_checks"]]
        assert not failed, f"{name}: fix these or skip them with a reason in the template:\n" + "\n".join(failed)
        assert results[name]["passed_checks"], f"checkov checked nothing in {name}"


def test_every_skip_carries_its_reason(results):
    skipped = results[TEMPLATE.name]["skipped_checks"]
    assert skipped, "the template's skips are not seen by checkov"
    for c in skipped:
        reason = c["check_result"].get("suppress_comment") or ""
        assert len(reason.split()) >= 4, f"{c['check_id']} on {c['resource']} is skipped without a reason"
    declared = {(name, s["id"]) for name, r in yaml.load(TEMPLATE.read_text(), Loader=_AnyTag).get("Resources").items()
                for s in ((r.get("Metadata") or {}).get("checkov") or {}).get("skip", [])}
    seen = {(c["resource"].split(".", 1)[1], c["check_id"]) for c in skipped}
    assert declared == seen, f"skips that skip nothing (or unseen): {declared ^ seen}"


def test_an_unexplained_failure_fails(results):
    failed = {(c["check_id"], c["resource"]) for c in results["unexplained.yml"]["failed_checks"]}
    assert failed == {("CKV_AWS_18", "AWS::S3::Bucket.LakeBucket")}, failed


class _AnyTag(yaml.SafeLoader):
    pass


_AnyTag.add_multi_constructor("!", lambda loader, suffix, node: None)
