"""End to end: `soclake run` against the synthetic organisation served by a moto S3 server,
with injected attacks. Each attack must produce its expected alerts; the benign background
must produce none beyond GuardDuty's own findings (the documented budget)."""

import json
import subprocess
import sys

import pytest

from pipeline import views
from pipeline.synth import S3Sink, generate_archive

#: What each injected scenario must raise (rule ids), matched through the alert's evidence.
EXPECTED = {
    "leaked_access_key": {"discovery_access_denied_burst", "iam_admin_policy_attached", "iam_access_key_created_for_other_user",
                          "cloudtrail_logging_stopped", "guardduty_detector_disabled", "iam_user_persistence_sequence",
                          "guardduty_finding_with_key_activity", "discovery_denied_value_count"},
    "console_bruteforce": {"console_login_without_mfa", "console_bruteforce_then_success"},
    "root_activity": {"root_console_login", "root_api_call", "root_access_key_created"},
    "open_security_group": {"ec2_security_group_ssh_open_to_world", "sg_opened_then_guardduty_finding"},
    "public_bucket": {"s3_bucket_public_access_block_removed", "s3_bucket_policy_public"},
}
#: Rules allowed to alert on benign background activity: GuardDuty's own findings are real findings.
BACKGROUND_BUDGET = {"guardduty_finding"}


@pytest.fixture(scope="module")
def org(moto_endpoint, tmp_path_factory):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="e2e-org-logs")
    summary = generate_archive(S3Sink(s3, "e2e-org-logs"), seed=5, accounts=3, days=2, events=30_000,
                               guardduty_findings=20, org_id="o-e2etest123", prefix="trail", scenarios=("all",))
    lake = tmp_path_factory.mktemp("e2e") / "lake"
    cmd = [sys.executable, "-m", "pipeline", "run", "--source", "s3://e2e-org-logs/trail", "--lake", str(lake),
           "--endpoint-url", moto_endpoint, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return summary, lake, json.loads(done.stdout)


def _alerts(lake):
    con = views.connect(str(lake))
    rows = con.execute("SELECT rule_id, evidence FROM alerts").fetchall()
    out = []
    for rule_id, evidence in rows:
        ids = {e.get("event_id") or e.get("finding_id") for e in json.loads(evidence)}
        out.append((rule_id, ids))
    return out


def test_run_ingests_everything_from_s3(org):
    summary, _, report = org
    assert report["ingest"]["events"]["cloudtrail"] == summary.events
    assert report["ingest"]["quarantined"] == [] and report["detect"]["errors"] == []


def test_each_injected_attack_raises_its_alerts(org):
    summary, lake, _ = org
    from pipeline.detect.rules import load_rules

    catalogue = {r.id for r in load_rules()}
    alerts = _alerts(lake)
    for sc in summary.scenarios:
        injected = set(sc.event_ids) | set(sc.finding_ids)
        fired = {rule for rule, ids in alerts if ids & injected}
        expected = EXPECTED[sc.name] & catalogue
        assert expected, f"no rule of the catalogue covers {sc.name}"
        assert expected <= fired, f"{sc.name}: missing {sorted(expected - fired)}; fired {sorted(fired)}"


def test_benign_background_stays_within_budget(org):
    summary, lake, _ = org
    injected = set().union(*(set(sc.event_ids) | set(sc.finding_ids) for sc in summary.scenarios))
    noisy = sorted({rule for rule, ids in _alerts(lake) if not ids & injected and rule not in BACKGROUND_BUDGET})
    assert noisy == [], f"rules alerting on benign background activity: {noisy}"


def test_rerunning_the_job_changes_nothing(org, moto_endpoint):
    _, lake, first = org
    cmd = [sys.executable, "-m", "pipeline", "run", "--source", "s3://e2e-org-logs/trail", "--lake", str(lake),
           "--endpoint-url", moto_endpoint, "--json"]
    again = json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout)
    assert again["ingest"]["ingested_objects"] == 0
    assert again["detect"]["alerts_new"] == 0 and again["detect"]["alerts_updated"] == 0


def _incidents(lake):
    con = views.connect(str(lake))
    rows = con.execute("SELECT id, alert_ids, timeline FROM incidents").fetchall()
    alert_ev = {aid: ids for aid, ids in con.execute(
        "SELECT id, list(coalesce(e->>'event_id', e->>'finding_id')) FROM alerts, unnest(CAST(evidence AS JSON[])) AS t(e) GROUP BY id"
    ).fetchall()}
    return [(iid, alert_ids, json.loads(tl), {i for a in alert_ids for i in alert_ev.get(a, [])}) for iid, alert_ids, tl in rows]


def test_one_incident_per_attack_with_its_alerts_in_order(org):
    summary, lake, _ = org
    incidents = _incidents(lake)
    for sc in summary.scenarios:
        injected = set(sc.event_ids) | set(sc.finding_ids)
        mine = [inc for inc in incidents if inc[3] & injected]
        assert len(mine) == 1, f"{sc.name}: {len(mine)} incidents"
        timeline = mine[0][2]
        assert [a["first_seen"] for a in timeline] == sorted(a["first_seen"] for a in timeline)
        fired = {a["rule_id"] for a in timeline}
        from pipeline.detect.rules import load_rules

        expected = EXPECTED[sc.name] & {r.id for r in load_rules()}
        assert expected <= fired, f"{sc.name}: incident lacks {sorted(expected - fired)}"


def test_no_incident_from_benign_background(org):
    summary, lake, _ = org
    injected = set().union(*(set(sc.event_ids) | set(sc.finding_ids) for sc in summary.scenarios))
    benign = [inc[2][0]["title"] for inc in _incidents(lake) if not inc[3] & injected]
    assert benign == []
