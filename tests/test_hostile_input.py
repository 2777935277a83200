"""Hostile input: one archive of broken, odd and malicious objects beside good ones.

Every hostile object is either ingested correctly or quarantined / rejected / reported with a
specific reason; the good objects beside them are ingested exactly; a rerun adds nothing; the
run's peak RSS stays bounded. Objects are built with the factories, never copied blobs.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from pipeline import layout, views
from pipeline.errors import ObjectError
from pipeline.lake import Ledger, LocalStore
from pipeline.normalize import normalize, normalize_object
from pipeline.normalize.common import gunzip
from pipeline.sources import LocalSource, list_objects
from pipeline.synth.records import NULL, Replace, make_cloudtrail_record, make_guardduty_finding
from tests.archive import DirArchive, ct_bytes, ct_key, gd_bytes, gd_key, records_for

CAP_MB = 16  # the run's --max-object-mb: low, so the gzip bomb stays cheap
NOW = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


@dataclass
class Case:
    """What must happen to one hostile object (or filesystem entry)."""

    key: str
    rows: int = 0  # rows it must contribute to its table
    quarantined: str | None = None  # reason substring
    rejected: tuple[int, str] | None = None  # (records rejected, reason substring of the first)
    unrecognised: str | None = None  # reason substring


def _gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def _ct(uniq: str, hhmm: str = "1000") -> str:
    return ct_key(hhmm=hhmm, uniq=uniq)


def _gd(n: int) -> str:
    return gd_key(uniq=f"0b1c2d3e-0000-4000-8000-{n:012d}")


def _bomb(size: int) -> bytes:
    """A CloudTrail-looking gzip that decompresses to ``size`` bytes (mostly spaces): ~1000:1."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1 << 20)
    out = [c.compress(b'{"Records": [')]
    out += [c.compress(chunk) for _ in range(size >> 20)]
    out.append(c.compress(b"]}") + c.flush())
    return b"".join(out)


def _rec(i: int, **kw) -> dict:
    kw.setdefault("eventTime", "2026-11-01T09:30:00Z")
    return make_cloudtrail_record(eventID=f"hostile-{i}", **kw)


def build_corpus(root: Path) -> list[Case]:
    a = DirArchive(root)
    cases: list[Case] = []

    def put(key: str, data: bytes, **expect) -> None:
        a.put(key, data)
        cases.append(Case(key, **expect))

    # -- good objects beside the hostile ones -------------------------------------------------
    for i in range(4):
        put(ct_key(account="222222222222", hhmm=f"11{i}0", uniq=f"good{i}"), ct_bytes(records_for(150, account="222222222222", tag=f"g{i}")),
            rows=150)
    put(_gd(1), gd_bytes([make_guardduty_finding(id=f"gd-good-{i}") for i in range(12)]), rows=12)

    # -- the container: gzip ------------------------------------------------------------------
    good = ct_bytes([_rec(0)])
    put(_ct("emptyobject"), b"", quarantined="empty object")
    put(_ct("notgzip"), orjson.dumps({"Records": [_rec(1)]}), quarantined="not gzip")
    put(_ct("corruptgzip"), good[:10] + bytes(range(256)) * 4, quarantined="corrupt gzip")
    put(_ct("truncatedgzip"), good[: len(good) // 2], quarantined="corrupt gzip")
    put(_ct("trailinggarbage"), good + b"garbage!", quarantined="corrupt gzip")
    put(_ct("emptygzip"), _gz(b""), quarantined="no JSON in it")
    put(_ct("multimember"), _gz(b'{"Records": [' + orjson.dumps(_rec(2))) + _gz(b"," + orjson.dumps(_rec(3)) + b"]}"), rows=2)
    put(_ct("gzipbomb"), _bomb((CAP_MB + 8) << 20), quarantined=f"decompresses to more than {CAP_MB} MB")
    put(_ct("hugecompressed"), b"\x1f\x8b" + os.urandom((CAP_MB + 2) << 20), quarantined="over the per-object cap")

    # -- the document: JSON -------------------------------------------------------------------
    put(_ct("truncatedjson"), _gz(orjson.dumps({"Records": [_rec(4)]})[:-30]), quarantined="invalid JSON")
    put(_ct("notjson"), _gz(b"this is a log file, honest"), quarantined="invalid JSON")
    put(_ct("emptydict"), _gz(b"{}"), quarantined="not a CloudTrail log file")
    put(_ct("recordsnull"), _gz(b'{"Records": null}'), quarantined="not a CloudTrail log file")
    put(_ct("toplist"), _gz(b"[]"), quarantined="not a CloudTrail log file")
    put(_ct("recordsdict"), _gz(b'{"Records": {"a": 1}}'), quarantined="not a CloudTrail log file")
    put(_ct("bom"), _gz(b"\xef\xbb\xbf" + orjson.dumps({"Records": [_rec(5)]})), rows=1)
    put(_ct("badutf8"), _gz(orjson.dumps({"Records": [_rec(6)]}).replace(b"hostile-6", b"hostile-\xff\xfe")),
        quarantined="Invalid UTF-8")
    put(_ct("rawnul"), _gz(orjson.dumps({"Records": [_rec(7)]}).replace(b"hostile-7", b"hostile\x00")), quarantined="invalid JSON")
    put(_ct("escapednul"), _gz(orjson.dumps({"Records": [_rec(8, userAgent="x\u0000y")]})), rows=1)
    dup = orjson.dumps({"Records": [_rec(9, eventName="First")]}).replace(b'"eventName":"First"', b'"eventName":"First","eventName":"Second"')
    put(_ct("duplicatekeys"), _gz(dup), rows=1)
    put(_ct("unknownfields"), ct_bytes([_rec(10, brandNewField={"x": 1}, userIdentity={"newThing": 2})]), rows=1)
    mistyped = _rec(11, eventName=5, readOnly="yes", resources="nope")
    mistyped["userIdentity"] = "not-an-object"
    put(_ct("mistyped"), ct_bytes([mistyped]), rows=1)
    put(_ct("bigrecord"), ct_bytes([_rec(12, requestParameters=Replace({"blob": "A" * (10 << 20)})), _rec(13)]), rows=2)
    put(_ct("deepnesting"), _gz(b'{"Records": [{"eventTime": "2026-11-01T09:30:00Z", "requestParameters": '
                                + b"[" * 10_000 + b"]" * 10_000 + b"}]}"), quarantined="nested deeper")
    put(_ct("nonobjects"), ct_bytes([_rec(14), 1, "two", [3], None, True, _rec(15)]), rows=2,
        rejected=(5, "record 1 is not a JSON object (a number)"))
    put(_ct("hostilepartition"), ct_bytes([_rec(16, recipientAccountId="../../../tmp", awsRegion="us-east-1/x=1")]), rows=1)

    # -- record times ---------------------------------------------------------------------------
    put(_ct("timenull"), ct_bytes([_rec(17, eventTime=NULL), _rec(18)]), rows=1, rejected=(1, "has no eventTime"))
    put(_ct("timemissing"), ct_bytes([_rec(19, eventTime=None), _rec(20)]), rows=1, rejected=(1, "has no eventTime"))
    put(_ct("time9999"), ct_bytes([_rec(21, eventTime="9999-12-31T23:59:59Z")]), rejected=(1, "more than 1 day after"))
    put(_ct("time0001"), ct_bytes([_rec(22, eventTime="0001-01-01T00:00:00Z")]), rejected=(1, "before 2010-01-01"))
    put(_ct("time2009"), ct_bytes([_rec(23, eventTime="2009-12-31T23:59:59Z"), _rec(24)]), rows=1, rejected=(1, "before 2010"))
    put(_ct("timegarbage"), ct_bytes([_rec(25, eventTime="yesterday")]), rejected=(1, "not an ISO-8601 time"))
    put(_ct("timenumber"), ct_bytes([_rec(26, eventTime=1700000000)]), rejected=(1, "is not a string"))
    put(_ct("timenozone"), ct_bytes([_rec(27, eventTime="2026-11-01T09:30:00")]), rejected=(1, "not an ISO-8601 time"))
    put(_ct("timeoffset"), ct_bytes([_rec(28, eventTime="2026-11-01T23:30:00-02:00")]), rows=1)
    put(_ct("timenanos"), ct_bytes([_rec(29, eventTime="2026-11-01T09:30:00.123456789Z")]), rows=1)
    put(_ct("timetomorrow"), ct_bytes([_rec(30, eventTime="2026-11-02T09:59:00Z"), _rec(31, eventTime="2026-11-02T10:01:00Z")]),
        rows=1, rejected=(1, "delivered (2026-11-01T10:00Z)"))

    # -- GuardDuty ----------------------------------------------------------------------------
    f = make_guardduty_finding
    lines = [orjson.dumps(f(id="gd-a")), b"garbage", b"{}", b"[1, 2]", b'{"id": "x", "type": "y"}',
             b"[" * 5000 + b"]" * 5000, orjson.dumps(f(id="gd-b")), orjson.dumps(f(id="gd-c"))[:40]]
    put(_gd(2), _gz(b"\n".join(lines) + b"\n"), rows=2, rejected=(6, "line 2: invalid JSON"))
    put(_gd(3), gd_bytes([f(id="gd-d", updatedAt="9999-12-31T00:00:00.000Z"), f(id="gd-e")]), rows=1,
        rejected=(1, "updatedAt 9999-12-31"))
    put(_gd(4), gd_bytes([f(id="gd-f", updatedAt="2026-11-01T12:00:00.000+02:00", createdAt="whenever",
                           severity="high", service={"count": "many"})]), rows=1)
    put(_gd(5), _gz(b""), rows=0)
    put(_gd(6), good[:20], quarantined="corrupt gzip")

    # -- things that are not objects of the layout ------------------------------------------------
    day = root / _ct("x").rsplit("/", 1)[0]
    os.mkfifo(day / _ct("fifo").rsplit("/", 1)[1])
    cases.append(Case(_ct("fifo"), unrecognised="a FIFO"))
    os.symlink("no-such-target", day / _ct("dangling").rsplit("/", 1)[1])
    cases.append(Case(_ct("dangling"), unrecognised="dangling symlink"))
    loop = _ct("loop").rsplit("/", 1)[1]
    os.symlink(loop, day / loop)
    cases.append(Case(_ct("loop"), unrecognised="symlink loop"))
    (day / _ct("isadir").rsplit("/", 1)[1]).mkdir()
    cases.append(Case(_ct("isadir"), unrecognised="directory named like a log object"))
    cwd = os.getcwd()
    try:  # AF_UNIX paths are short: bind relative to the day folder
        os.chdir(day)
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(_ct("socket").rsplit("/", 1)[1])
        sock.close()
    finally:
        os.chdir(cwd)
    cases.append(Case(_ct("socket"), unrecognised="a socket"))
    put("AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/01/notes.txt", b"hello", unrecognised="naming pattern")
    a.put("AWSLogs/111111111111/Config/us-east-1/2026/11/01/config.json.gz", _gz(b"{}"))
    cases.append(Case("AWSLogs/111111111111/Config/", unrecognised="unknown source 'Config'"))
    put("AWSLogs/stray.json.gz", good, unrecognised="outside the AWSLogs/")
    put(ct_key(account="333333333333").replace("/333333333333/", "/111111111111/", 1), good,
        unrecognised="differs from its folder")
    put("AWSLogs/111111111111/CloudTrail/us-east-1/2026/13/45/" + _ct("baddate").rsplit("/", 1)[1], good,
        unrecognised="not a date")
    return cases


def _run(root: Path, lake: Path, *extra: str) -> tuple[dict, int, float]:
    """One ingest in a subprocess: (report, peak RSS in bytes of it and its workers, seconds)."""
    out = lake.parent / "report.json"
    cmd = [sys.executable, "-m", "pipeline", "ingest", "--source", str(root), "--lake", str(lake), "--workers", "2",
           "--max-object-mb", str(CAP_MB), "--json", *extra]
    t0 = time.perf_counter()
    with open(out, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode in (0, 2), err
    return orjson.loads(out.read_bytes()), usage.ru_maxrss * 1024, time.perf_counter() - t0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    root, lake = base / "logs", base / "lake"
    cases = build_corpus(root)
    report, rss, seconds = _run(root, lake)
    print(f"\nhostile corpus: {len(cases)} cases, first run {seconds:.1f} s, peak RSS {rss / 2**20:.0f} MB")
    return root, lake, cases, report, rss


def _by_name(items, field: str):
    return {os.path.basename(x[field].rstrip("/")): x for x in items}


def test_there_are_at_least_forty_kinds_of_hostile_input(corpus):
    _, _, cases, _, _ = corpus
    assert sum(1 for c in cases if c.quarantined or c.rejected or c.unrecognised or "good" not in c.key) >= 40


def test_each_hostile_object_is_ingested_or_quarantined_or_reported_with_its_reason(corpus):
    root, lake, cases, report, _ = corpus
    quarantined = _by_name(report["quarantined"], "object")
    unrecognised = _by_name(report["unrecognised"], "key")
    rejected: dict[str, list[dict]] = {}
    for r in report["rejected"]:
        rejected.setdefault(os.path.basename(r["object"]), []).append(r)
    ledger = Ledger.load(LocalStore(lake))
    entries = {os.path.basename(u): e for u, e in ledger.objects.items()}
    for c in cases:
        name = c.key.rstrip("/").rsplit("/", 1)[1]
        if c.unrecognised:
            assert c.unrecognised in unrecognised[name]["reason"], (name, unrecognised.get(name))
            assert name not in entries
            continue
        if c.quarantined:
            assert c.quarantined in quarantined[name]["reason"], (name, quarantined.get(name))
            assert entries[name].status == "quarantined" and c.quarantined in entries[name].reason
            continue
        assert name not in quarantined, (name, quarantined.get(name))
        e = entries[name]
        assert (e.status, e.rows) == ("ingested", c.rows), (name, e)
        if c.rejected:
            count, why = c.rejected
            assert len(rejected[name]) == count and why in rejected[name][0]["reason"], (name, rejected.get(name))
            assert e.rejected == count and why in e.rejects[0]["reason"] and e.rejects[0]["index"] == rejected[name][0]["index"]
        else:
            assert name not in rejected and e.rejected == 0, (name, rejected.get(name))
    assert report["rejected_records"] == sum(c.rejected[0] for c in cases if c.rejected)
    assert not report["failed"] and not report["ok"]


def test_good_rows_are_all_there_exactly_once_in_sane_partitions(corpus):
    _, lake, cases, report, _ = corpus
    want_ct = sum(c.rows for c in cases if "/CloudTrail/" in c.key and not c.quarantined and not c.unrecognised)
    want_gd = sum(c.rows for c in cases if "/GuardDuty/" in c.key and not c.quarantined and not c.unrecognised)
    assert report["events"] == {"cloudtrail": want_ct, "guardduty": want_gd}
    con = views.connect(str(lake))
    for table, want in (("cloudtrail", want_ct), ("guardduty", want_gd)):
        total, distinct, lo, hi = con.execute(
            f"SELECT count(*), count(DISTINCT (source_object, source_index)), min(event_time), max(event_time) FROM {table}"
        ).fetchone()
        assert total == distinct == want
        assert dt.datetime(2026, 10, 1, tzinfo=dt.UTC) <= lo <= hi <= dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
    for p in lake.rglob("*.parquet"):
        parts = p.relative_to(lake).parts
        assert re.fullmatch(r"event_date=2026-1[01]-\d\d", parts[1]), parts
        assert re.fullmatch(r"account_id=\d{12}", parts[2]) and layout.REGION_RE.match(parts[3].split("=", 1)[1]), parts
    # The hostile values themselves are kept, in their own columns.
    row = con.execute("SELECT recipientAccountId, awsRegion, account_id, region FROM cloudtrail "
                      "WHERE eventID = 'hostile-16'").fetchone()
    assert row == ("../../../tmp", "us-east-1/x=1", "111111111111", "us-east-1")
    # A non-Z offset is converted to UTC; the raw text stays.
    assert con.execute("SELECT eventTime, event_time, event_date FROM cloudtrail WHERE eventID = 'hostile-28'").fetchone() == (
        "2026-11-01T23:30:00-02:00", dt.datetime(2026, 11, 2, 1, 30, tzinfo=dt.UTC), dt.date(2026, 11, 2))
    assert con.execute("SELECT eventName FROM cloudtrail WHERE eventID = 'hostile-9'").fetchone() == ("Second",)
    # Rejected records leave a gap in source_index, so the survivors still point at their record.
    assert con.execute("SELECT list(source_index ORDER BY source_index) FROM cloudtrail WHERE source_object LIKE "
                       "'%_nonobjects.json.gz'").fetchone() == ([0, 6],)
    gd = con.execute("SELECT created_at, severity, unmapped::VARCHAR FROM guardduty WHERE id = 'gd-f'").fetchone()
    assert gd[0] is None and gd[1] is None and orjson.loads(gd[2]) == {"severity": "high"}


def test_peak_memory_of_the_run_stays_under_one_gigabyte(corpus):
    *_, rss = corpus
    assert rss < 1 << 30, f"peak RSS {rss / 2**20:.0f} MB"


def test_a_rerun_ingests_nothing_new_and_duplicates_nothing(corpus):
    root, lake, cases, first, _ = corpus
    again, _, _ = _run(root, lake)
    assert again["to_ingest"] == {} and again["ingested_objects"] == 0 and again["files_written"] == 0
    assert again["skipped_already_ingested"] == sum(1 for c in cases if not c.unrecognised)
    con = views.connect(str(lake))
    assert con.execute("SELECT count(*) FROM cloudtrail").fetchone()[0] == first["events"]["cloudtrail"]


# -- the pieces, in-process -------------------------------------------------------------------
CT = layout.classify(ct_key(), 1, "e")


def test_gunzip_holds_at_most_the_cap_before_giving_up():
    bomb = _bomb(256 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ObjectError, match="decompresses to more than 8 MB"):
            gunzip(bomb, 8 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20, f"{peak / 2**20:.0f} MB traced for an 8 MB cap"


def test_the_strict_form_still_quarantines_a_bad_record_with_its_reason():
    data = ct_bytes([_rec(1), _rec(2, eventTime="9999-01-01T00:00:00Z"), _rec(3, eventTime=NULL)])
    out = normalize_object(data, CT, "u", NOW)
    assert out.table.num_rows == 1 and [r.index for r in out.rejected] == [1, 2]
    with pytest.raises(ObjectError, match=r"record 1 \(eventID hostile-2\).*\(and 1 more record"):
        normalize(data, CT, "u", NOW)


def test_delivery_bound_comes_from_the_key_timestamp_else_the_key_date():
    late = [_rec(1, eventTime="2026-11-02T10:30:00Z")]
    assert normalize_object(ct_bytes(late), layout.classify(ct_key(hhmm="1000")), "u", NOW).rejected
    assert not normalize_object(ct_bytes(late), layout.classify(ct_key(hhmm="1100")), "u", NOW).rejected
    gd = layout.classify(gd_key(day="2026-11-01"))
    ok = make_guardduty_finding(updatedAt="2026-11-02T23:00:00.000Z")
    bad = make_guardduty_finding(updatedAt="2026-11-03T00:00:01.000Z")
    assert [r.index for r in normalize_object(gd_bytes([ok, bad]), gd, "u", NOW).rejected] == [1]


def test_an_unlistable_folder_is_reported_not_fatal(tmp_path, monkeypatch):
    a = DirArchive(tmp_path)
    a.put(ct_key(uniq="ok"), ct_bytes(records_for(1)))
    a.put(ct_key(region="eu-west-1", uniq="hidden"), ct_bytes(records_for(1)))
    locked = str(tmp_path / "AWSLogs/111111111111/CloudTrail/eu-west-1")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).rstrip("/").startswith(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)  # tests run as root here, so chmod would not stop a read
    listing = list_objects(LocalSource(tmp_path))
    assert [o.key for o in listing.objects] == [ct_key(uniq="ok")]
    assert [(u.key, u.reason) for u in listing.unrecognised] == [
        ("AWSLogs/111111111111/CloudTrail/eu-west-1/", "cannot list this folder: Permission denied")]


def test_reading_a_fifo_named_like_an_object_does_not_hang(tmp_path):
    key = ct_key(uniq="fifo")
    (tmp_path / key).parent.mkdir(parents=True)
    os.mkfifo(tmp_path / key)
    t0 = time.monotonic()
    with pytest.raises(Exception, match="not a regular file \\(a FIFO\\)"):
        LocalSource(tmp_path).read(key)
    assert time.monotonic() - t0 < 2


# -- workers die with their parent ------------------------------------------------------------
def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_when_the_ingest_process_is_killed(tmp_path):
    a = DirArchive(tmp_path / "logs")
    for i in range(30):
        a.put(ct_key(hhmm=f"10{i:02d}", uniq=f"w{i}"), ct_bytes(records_for(300, tag=f"w{i}")))
    cmd = [sys.executable, "-m", "pipeline", "ingest", "--source", str(a.root), "--lake", str(tmp_path / "lake"),
           "--workers", "2", "--commit-mb", "0", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        workers: set[int] = set()
        while time.time() < deadline and len(workers) < 2 and proc.poll() is None:
            workers = _children(proc.pid)
            time.sleep(0.02)
        assert len(workers) >= 2 and proc.poll() is None, "the ingest finished before its workers were seen"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(map(_alive, workers)):
        time.sleep(0.05)
    assert not any(map(_alive, workers)), f"workers {sorted(p for p in workers if _alive(p))} outlived their parent"


def test_a_worker_without_pdeathsig_notices_its_parent_is_gone():
    # The fallback: a child blocked waiting for work sees getppid() change and exits by itself.
    script = (
        "import os, queue, sys\n"
        "from pipeline.ingest.workers import _next_task\n"
        "parent = os.getpid()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    _next_task(queue.Queue(), parent)\n"
        "    os._exit(0)\n"
        "print(pid, flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    child = int(out.stdout.strip())
    deadline = time.time() + 5
    while time.time() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def test_next_task_returns_work_while_the_parent_lives():
    from pipeline.ingest.workers import _next_task

    q: queue.Queue = queue.Queue()
    q.put(("stop",))
    assert _next_task(q, os.getppid()) == ("stop",)
