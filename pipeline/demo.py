"""`make demo`: the real pipeline end to end on a synthetic organisation, served from a local S3.

Writes the archive in the exact AWS layout to a moto S3 server on 127.0.0.1 (plus two broken
objects, to show quarantine), ingests it from ``s3://`` through boto3 into ``demo/lake``, and
queries the lake. Needs moto (installed by ``make demo``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DEMO_DIR = Path("demo")
BUCKET = "central-cloudtrail-logs"
PREFIX = "org-trail"


def _start_s3() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("could not start the local S3 (moto) server")


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


def main() -> int:
    os.environ.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo", AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_PROFILE", None)
    from pipeline import aws, views
    from pipeline.cli.progress import IngestProgress, format_summary
    from pipeline.ingest import IngestOptions, ingest
    from pipeline.lake import LocalStore
    from pipeline.ops import runs
    from pipeline.sources import S3Source
    from pipeline.synth import S3Sink, generate_archive

    proc, endpoint = _start_s3()
    try:
        settings = aws.AwsSettings(region="us-east-1", endpoint_url=endpoint)
        aws.configure(settings)
        s3 = aws.s3_client(settings)
        s3.create_bucket(Bucket=BUCKET)
        _section(f"1. a synthetic organisation's logs → s3://{BUCKET}/{PREFIX}/ (local S3 at {endpoint})")
        summary = generate_archive(S3Sink(s3, BUCKET), seed=7, accounts=3, regions=("us-east-1", "eu-west-1"),
                                   days=2, events=60_000, guardduty_findings=40, org_id="o-a1b2c3d4e5",
                                   prefix=PREFIX, scenarios=("all",))
        print(f"wrote {summary.objects:,} objects: {summary.events:,} CloudTrail events, "
              f"{summary.findings:,} GuardDuty findings, {summary.bytes / 1e6:.1f} MB gzip")
        for sc in summary.scenarios:
            print(f"  injected attack: {sc.name:<22} account {sc.account}  actor {sc.actor}")
        broken = f"{PREFIX}/AWSLogs/o-a1b2c3d4e5/{summary.accounts[0]}/CloudTrail/us-east-1/2026/11/01/"
        s3.put_object(Bucket=BUCKET, Key=broken + f"{summary.accounts[0]}_CloudTrail_us-east-1_20261101T2355Z_BROKEN1.json.gz",
                      Body=b"\x1f\x8b\x08\x00truncated upload")
        s3.put_object(Bucket=BUCKET, Key=broken + "notes.txt", Body=b"not a log")
        print("  plus a corrupt object and a stray file, to show how bad input is handled")

        lake = DEMO_DIR / "lake"
        shutil.rmtree(lake, ignore_errors=True)
        _section(f"2. soclake ingest --source s3://{BUCKET}/{PREFIX} --lake {lake}")
        source = S3Source(s3, f"s3://{BUCKET}/{PREFIX}")
        with runs.recording(str(lake), "ingest"), IngestProgress() as progress:  # soclake status shows the run
            report = ingest(source, LocalStore(lake), IngestOptions(), progress)
            runs.note_ingest(report)
        print(format_summary(report, max_listed=5))

        _section("3. run it again: nothing new, nothing twice")
        again = ingest(source, LocalStore(lake), IngestOptions(workers=1))
        print(f"new objects: {again.ingested_objects}, skipped (already in the ledger): {again.skipped:,}")

        _verify_section(s3, source, lake, summary)

        _section(f"4. soclake detect --lake {lake}: the rule catalogue over the lake")
        from pipeline.cli.batch import print_detect
        from pipeline.detect.engine import DetectOptions, detect
        from pipeline.detect.rules import load_rules

        rules = [r for r in load_rules() if r.enabled]
        with runs.recording(str(lake), "detect"):
            report = detect(str(lake), LocalStore(lake), rules, DetectOptions())
            runs.note_detect(report)
        print_detect(report)
        again = detect(str(lake), LocalStore(lake), rules, DetectOptions(since=report.since))
        print(f"and again over the same window: {len(again.new)} new, {len(again.updated)} updated, "
              f"{again.unchanged} unchanged (alert ids are deterministic)")

        _section("5. soclake forward: alerts to a JSON Lines file (OCSF) and an SQS FIFO queue on the local endpoint")
        from pipeline.cli.batch import print_forward
        from pipeline.forward.run import forward

        queue = aws.client("sqs", settings).create_queue(
            QueueName="soclake-alerts.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        config = DEMO_DIR / "forward.yml"
        config.write_text(
            "sinks:\n"
            f"  - {{name: ocsf-file, type: jsonl, path: {DEMO_DIR / 'alerts.ocsf.jsonl'}, format: ocsf}}\n"
            f"  - {{name: queue, type: sqs, queue_url: '{queue}', min_severity: high}}\n")
        (DEMO_DIR / "alerts.ocsf.jsonl").unlink(missing_ok=True)
        with runs.recording(str(lake), "forward"):
            sent = forward(str(lake), LocalStore(lake), str(config))
            runs.note_forward(sent)
        print_forward(sent)
        again = forward(str(lake), LocalStore(lake), str(config))
        print(f"  and again: {sum(r.delivered for r in again)} delivered (nothing is sent twice)")

        from pipeline.correlate.timeline import format_timeline, incident_timeline

        if report.incidents:
            _section(f"6. soclake incident {report.incidents[0].id[:12]}: the worst incident's timeline")
            con0 = views.connect(str(lake))
            print(format_timeline(incident_timeline(con0, report.incidents[0].id)))

        _section("7. query the lake with DuckDB")
        con = views.connect(str(lake))
        for title, sql in [
            ("events per account and day",
             "SELECT account_id, event_date, count(*) AS events FROM cloudtrail GROUP BY ALL ORDER BY ALL"),
            ("top API calls",
             "SELECT eventSource, eventName, count(*) AS n FROM cloudtrail GROUP BY ALL ORDER BY n DESC LIMIT 8"),
            ("denied calls by principal",
             "SELECT actor, count(*) AS denied FROM cloudtrail WHERE errorCode IN ('AccessDenied', 'Client.UnauthorizedOperation') "
             "GROUP BY ALL ORDER BY denied DESC LIMIT 5"),
            ("root activity", "SELECT event_time, eventName, sourceIPAddress FROM cloudtrail "
                              "WHERE userIdentity.type = 'Root' ORDER BY event_time LIMIT 5"),
            ("GuardDuty findings (latest version of each) by severity",
             "SELECT severity_label, count(*) AS findings FROM guardduty_latest WHERE NOT archived GROUP BY ALL ORDER BY ALL"),
            ("the alerts a SOC would open first",
             "SELECT severity, rule_id, title, event_count AS events FROM alerts WHERE rule_id <> 'guardduty_finding' "
             "ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END, first_seen LIMIT 15"),
        ]:
            print(f"\n-- {title}")
            print(con.sql(sql))
        from pipeline.analyst.report import write_report

        rep = write_report(str(lake), str(DEMO_DIR / "report.html"))
        _section("8. soclake report")
        print(f"Report: {rep['path']} ({rep['alerts']} alerts, {rep['incidents']} incidents; one self-contained HTML file)")

        from pipeline.ops.status import format_status, lake_status

        _section(f"9. soclake status --lake {lake}: what a scheduler or an alarm watches")
        print(format_status(lake_status(str(lake), LocalStore(lake), config_path=str(config))))
        print(f"Lake: {lake}/ (tables documented in docs/schema.md). Try: .venv/bin/soclake --help")
    finally:
        proc.terminate()
        proc.wait(10)
    return 0


def _verify_section(s3, source, lake: Path, summary) -> None:
    """Someone edits a delivered log file; soclake verify (CloudTrail digests) catches it, and the planted object."""
    import datetime as dt
    import gzip

    import orjson

    from pipeline.integrity import alerts
    from pipeline.integrity.keys import PublicKeys, parse_key_file
    from pipeline.integrity.verify import VerifyOptions, verify
    from pipeline.lake import LocalStore
    from pipeline.sources import Filters
    from pipeline.synth.signing import public_keys_document

    key = summary.keys["cloudtrail"][len(summary.keys["cloudtrail"]) // 2]
    doc = orjson.loads(gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
    doc["Records"] = doc["Records"][:-1]  # an intruder removes their last call from the evidence
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(orjson.dumps(doc)))
    _section("3b. someone removes one record from a delivered log file; soclake verify checks the digests")
    keys = PublicKeys(parse_key_file(orjson.dumps(public_keys_document(7, summary.regions))))
    report = verify(source, LocalStore(lake), keys, VerifyOptions(filters=Filters(until=dt.date(2026, 11, 2))))
    for line in report.lines():
        print(line if len(line) < 220 else line[:217] + "...")
    new, _ = alerts.write_alerts(str(lake), LocalStore(lake), report)
    print(f"{len(new)} integrity alerts written to the lake (the planted corrupt object is caught too: no digest lists it)")


if __name__ == "__main__":
    raise SystemExit(main())
