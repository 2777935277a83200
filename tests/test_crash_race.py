"""Crash-and-race trials: `kill -9` of real ingest/detect/forward processes at random moments, and two
ingests started at once, on a local lake and an S3 lake (moto server). After every rerun the lake
holds each source event exactly once; between a crash and the rerun readers never see a row twice.

`make test` runs a short version; `make soak` a long one (SOCLAKE_SOAK_TRIALS trials of each kind).
"""

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import orjson
import pytest

from pipeline import views
from pipeline.lake.lease import LEASE_PATH
from pipeline.lake.staging import STAGING
from pipeline.lake.store import open_store

TRIALS = int(os.environ.get("SOCLAKE_SOAK_TRIALS", "1"))
SEED = int(os.environ.get("SOCLAKE_SOAK_SEED", str(int(time.time()))))
PY = [sys.executable, "-m", "pipeline"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A small synthetic archive (~30 objects) and what it holds: CloudTrail eventIDs, GuardDuty findings."""
    root = tmp_path_factory.mktemp("crash") / "src"
    subprocess.run(PY + ["synth", "--output", str(root), "--events", "1500", "--events-per-object", "100",
                         "--findings", "6", "--accounts", "2", "--days", "1", "--seed", "11"],
                   check=True, capture_output=True, timeout=120)
    ids, findings = [], []
    for path in root.rglob("*.gz"):
        if "/CloudTrail/" in path.as_posix():
            ids += [r["eventID"] for r in orjson.loads(gzip.decompress(path.read_bytes()))["Records"]]
        elif "/GuardDuty/" in path.as_posix():
            findings += [orjson.loads(line)["id"] for line in gzip.decompress(path.read_bytes()).splitlines()]
    assert len(ids) == len(set(ids)) == 1500
    base = root.parent / "base"  # one clean run: how long a run takes here (to aim the kills), and a lake to detect on
    t0 = time.monotonic()
    rerun(root, str(base), [])
    return root, len(ids), (len(findings), len(set(findings))), base, time.monotonic() - t0  # a finding may be re-exported


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "lake"), []
    endpoint = request.getfixturevalue("moto_endpoint")
    request.getfixturevalue("aws_settings")  # this process reads the S3 lake through the same endpoint
    bucket = request.getfixturevalue("bucket")
    return f"s3://{bucket}/lake", ["--endpoint-url", endpoint]


def ingest_cmd(src, lake_uri, extra, *more):
    return PY + ["ingest", "--source", str(src), "--lake", lake_uri, "--workers", "2", "--commit-mb", "0",
                 "--quiet", *extra, *more]


def start(cmd):
    # its own process group: kill -9 takes the workers with it, as when a machine or container dies
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill9(proc) -> bool:
    """SIGKILL the process group; True when it was still running (the kill landed mid-run)."""
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    return alive


def counts(lake_uri):
    con = views.connect(lake_uri)
    ct = con.execute("SELECT count(*), count(DISTINCT eventID) FROM cloudtrail").fetchone()
    gd = con.execute("SELECT count(*), count(DISTINCT id), count(DISTINCT (id, updatedAt)) FROM guardduty").fetchone()
    return ct, gd


def assert_exact(lake_uri, src_events, src_findings):
    ct, gd = counts(lake_uri)
    assert ct == (src_events, src_events), f"cloudtrail rows/distinct {ct}, source has {src_events}"
    assert gd == (*src_findings, src_findings[0]), f"guardduty rows/ids/versions {gd}, source has {src_findings}"
    store = open_store(lake_uri)
    assert store.list(STAGING) == [] and not store.exists(LEASE_PATH)


def assert_no_duplicates_visible(lake_uri, src_events):
    (total, distinct), (gd_total, _, gd_versions) = counts(lake_uri)
    assert total == distinct <= src_events and gd_total == gd_versions


def rerun(src, lake_uri, extra):
    done = subprocess.run(ingest_cmd(src, lake_uri, extra), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_kill_9_of_ingest_then_rerun_loses_and_doubles_nothing(source, lake):
    src, n_events, n_findings, _, full = source
    lake_uri, extra = lake
    rng = random.Random(SEED)
    mid_run = 0
    for trial in range(TRIALS):
        uri = f"{lake_uri}-k{trial}"
        kills = 1 + (trial % 2)  # every other trial is killed twice before the clean rerun
        for _ in range(kills):
            proc = start(ingest_cmd(src, uri, extra))
            time.sleep(rng.uniform(0.2, 1.0) * full)
            mid_run += kill9(proc)
            assert_no_duplicates_visible(uri, n_events)
        rerun(src, uri, extra)
        assert_exact(uri, n_events, n_findings)
    print(f"\n[crash-race] {'s3' if lake_uri.startswith('s3:') else 'local'} ingest kill -9: {TRIALS} trials, {mid_run} kills mid-run "
          f"(full run {full:.1f} s), seed {SEED}: 0 lost, 0 duplicated")


def test_concurrent_ingests_then_rerun_loses_and_doubles_nothing(source, lake):
    src, n_events, n_findings, _, _ = source
    lake_uri, extra = lake
    outcomes = {"refused": 0, "waited": 0, "serial": 0}
    for trial in range(TRIALS):
        uri = f"{lake_uri}-p{trial}"
        wait = ["--wait", "300"] if trial % 2 else []
        procs = [start(ingest_cmd(src, uri, extra, *wait)) for _ in range(2)]
        results = [(p.wait(300), p.communicate()[1]) for p in procs]
        codes = sorted(code for code, _ in results)
        if wait:
            assert codes == [0, 0], results
            outcomes["waited"] += 1
        else:
            assert codes in ([0, 0], [0, 1]), results
            for code, err in results:
                if code == 1:
                    assert "is being written by ingest on" in err and len(err.strip().splitlines()) == 1, err
            outcomes["refused" if codes == [0, 1] else "serial"] += 1
        assert_no_duplicates_visible(uri, n_events)
        rerun(src, uri, extra)
        assert_exact(uri, n_events, n_findings)
    print(f"\n[crash-race] {'s3' if lake_uri.startswith('s3:') else 'local'} concurrent ingest pairs: {TRIALS} trials {outcomes}: "
          "0 lost, 0 duplicated")


def _alert_ids(lake_uri):
    con = views.connect(lake_uri)
    total, distinct = con.execute("SELECT count(*), count(DISTINCT id) FROM alerts").fetchone()
    assert total == distinct
    return {r[0] for r in con.execute("SELECT id FROM alerts").fetchall()}


def test_kill_9_of_detect_and_forward_then_rerun(source, tmp_path):
    src, n_events, n_findings, base, _ = source
    rng = random.Random(SEED + 1)
    ref = tmp_path / "ref"
    shutil.copytree(base, ref)
    t0 = time.monotonic()
    subprocess.run(PY + ["detect", "--lake", str(ref)], check=True, capture_output=True, timeout=300)
    full = time.monotonic() - t0
    expected = _alert_ids(str(ref))
    assert expected
    mid_run = 0
    for trial in range(TRIALS):
        lake = tmp_path / f"d{trial}"
        shutil.copytree(base, lake)
        proc = start(PY + ["detect", "--lake", str(lake)])
        time.sleep(rng.uniform(0.3, 1.0) * full)
        mid_run += kill9(proc)
        subprocess.run(PY + ["detect", "--lake", str(lake)], check=True, capture_output=True, timeout=300)
        assert _alert_ids(str(lake)) == expected
        # forward, killed at a random moment, then rerun: every alert delivered, at least once
        out = tmp_path / f"out{trial}.jsonl"
        conf = tmp_path / f"c{trial}.yml"
        conf.write_text(f"sinks:\n  - {{name: file, type: jsonl, path: {out}}}\n")
        fwd = PY + ["forward", "--lake", str(lake), "--config", str(conf)]
        proc = start(fwd)
        time.sleep(rng.uniform(0.2, 2.0))
        kill9(proc)
        subprocess.run(fwd, check=True, capture_output=True, timeout=300)
        delivered = [json.loads(x)["id"] for x in out.read_text().splitlines()]
        assert set(delivered) == expected
        status = json.loads(subprocess.run(fwd + ["--status", "--json"], check=True, capture_output=True,
                                           text=True, timeout=300).stdout)
        assert status[0]["pending"] == 0
    print(f"\n[crash-race] detect kill -9: {TRIALS} trials, {mid_run} kills mid-run (full run {full:.1f} s), "
          f"{len(expected)} alerts each time: 0 lost, 0 doubled; forward kill -9: {TRIALS} trials, all delivered")
