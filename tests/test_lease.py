"""One writer per lake: the lease in _state/lease.json, on a local lake and an S3 lake (moto server)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import orjson
import pytest

from pipeline import aws
from pipeline.errors import LeaseHeld, LeaseLost
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore
from pipeline.lake.lease import LEASE_PATH, read_holder, writer_lease
from pipeline.sources import LocalSource
from tests.archive import ct_bytes, ct_key, records_for


@pytest.fixture
def store(lake_store):
    return lake_store


def in_thread(fn):
    """Run ``fn`` in another thread (a different writer than this thread) and return what it raised or gave."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join(60)
    return out


def test_a_second_writer_is_refused_with_the_holder_named(store):
    with writer_lease(store, "ingest") as lease:
        got = in_thread(lambda: writer_lease(store, "detect").__enter__())
        err = got["error"]
        assert isinstance(err, LeaseHeld)
        msg = str(err)
        assert "\n" not in msg
        assert f"ingest on {socket.gethostname()} (pid {os.getpid()}, started {lease.holder.started})" in msg
        assert "--wait" in msg
        assert read_holder(store).token == lease.holder.token
    assert read_holder(store) is None  # released
    with writer_lease(store, "detect"):  # and free again
        pass


def test_nested_use_in_one_thread_reuses_the_outer_lease(store):
    with writer_lease(store, "run") as outer, writer_lease(store, "ingest") as inner:
        assert inner is outer
    assert read_holder(store) is None


def test_wait_takes_the_lease_once_the_holder_finishes(store):
    held = threading.Event()

    def holder():
        with writer_lease(store, "ingest"):
            held.set()
            time.sleep(1.5)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    t0 = time.monotonic()
    with pytest.raises(LeaseHeld):
        with writer_lease(store, "detect", wait=0.3):
            pass
    with writer_lease(store, "detect", wait=20) as lease:
        waited = time.monotonic() - t0
        assert lease.took_over is None  # released cleanly, not taken over
    t.join()
    assert 0.9 < waited < 10


def test_concurrent_takers_exactly_one_wins(store):
    barrier = threading.Barrier(6)
    results = []

    def taker():
        barrier.wait()
        try:
            with writer_lease(store, "ingest"):
                results.append("won")
                time.sleep(0.5)
        except LeaseHeld:
            results.append("refused")

    threads = [threading.Thread(target=taker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["refused"] * 5 + ["won"]


def _foreign(store, expires_in: float, host="elsewhere.example", pid=4242):
    doc = {"token": "f00d", "host": host, "pid": pid, "command": "ingest", "started": "2026-11-01T10:00:00+00:00",
           "expires": time.time() + expires_in, "node": f"{host}|boot|1", "pid_start": ""}
    store.put(LEASE_PATH, orjson.dumps(doc))


def test_a_lease_of_another_host_blocks_until_it_expires(store):
    _foreign(store, expires_in=30)
    with pytest.raises(LeaseHeld, match=r"ingest on elsewhere\.example \(pid 4242, started 2026-11-01T10:00:00"):
        with writer_lease(store, "ingest"):
            pass
    _foreign(store, expires_in=-1)  # its holder stopped renewing: taken over
    with writer_lease(store, "ingest") as lease:
        assert lease.took_over.host == "elsewhere.example"


def test_a_dead_holder_on_this_machine_is_taken_over_at_once(store, tmp_path):
    """kill -9 of a writer: its lease names a pid that is gone, so the next run does not wait the TTL."""
    script = (
        "import sys, time\n"
        "from pipeline import aws\n"
        "from pipeline.lake.store import open_store\n"
        "from pipeline.lake.lease import writer_lease\n"
        f"aws.configure(aws.AwsSettings(region='us-east-1', endpoint_url={aws._settings.endpoint_url!r}))\n"
        f"with writer_lease(open_store({store.uri!r}), 'ingest'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(LeaseHeld, match=f"pid {proc.pid}"):
        with writer_lease(store, "ingest"):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    t0 = time.monotonic()
    with writer_lease(store, "ingest") as lease:
        assert lease.took_over.pid == proc.pid
    assert time.monotonic() - t0 < 5  # not the 60 s TTL


def test_renewal_keeps_a_short_lease_and_a_takeover_is_noticed(store):
    with writer_lease(store, "ingest", ttl=0.6) as lease:
        time.sleep(1.5)  # 2.5 TTLs: alive only because it is renewed
        assert lease.renewals >= 3
        lease.check()
        assert isinstance(in_thread(lambda: writer_lease(store, "detect").__enter__())["error"], LeaseHeld)
        _foreign(store, expires_in=30)  # someone took it over (this run "stalled")
        time.sleep(0.6)
        with pytest.raises(LeaseLost, match="took it over"):
            lease.check()
    assert read_holder(store).host == "elsewhere.example"  # a lost lease is not deleted on release


def test_a_second_ingest_is_refused_then_waits(tmp_path, archive):
    archive.put(ct_key(uniq="a"), ct_bytes(records_for(5, tag="a")))
    store = LocalStore(tmp_path / "lake")
    with writer_lease(store, "backfill"):
        got = in_thread(lambda: ingest(LocalSource(archive.root), store, IngestOptions(workers=1)))
        assert isinstance(got["error"], LeaseHeld) and "backfill on" in str(got["error"])
    report = ingest(LocalSource(archive.root), store, IngestOptions(workers=1, wait=5))
    assert report.total_events == 5


def test_cli_writers_refuse_with_one_error_line_and_exit_1(tmp_path, archive):
    archive.put(ct_key(uniq="a"), ct_bytes(records_for(5, tag="a")))
    lake = tmp_path / "lake"
    conf = tmp_path / "c.yml"
    conf.write_text(f"sinks:\n  - {{name: file, type: jsonl, path: {tmp_path / 'out.jsonl'}}}\n")
    base = [sys.executable, "-m", "pipeline"]
    commands = {
        "ingest": ["ingest", "--source", str(archive.root), "--lake", str(lake), "--quiet"],
        "detect": ["detect", "--lake", str(lake)],
        "forward": ["forward", "--lake", str(lake), "--config", str(conf)],
        "run": ["run", "--source", str(archive.root), "--lake", str(lake), "--json"],
    }
    with writer_lease(LocalStore(lake), "backfill"):
        for name, argv in commands.items():
            done = subprocess.run(base + argv, capture_output=True, text=True, timeout=120)
            assert done.returncode == 1, (name, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: the lake "), (name, done.stderr)
            assert f"backfill on {socket.gethostname()} (pid {os.getpid()}" in lines[0]
        status = subprocess.run(base + commands["forward"] + ["--status"], capture_output=True, text=True, timeout=120)
        assert status.returncode == 0, status.stderr  # a reader: never blocked
    done = subprocess.run(base + commands["ingest"] + ["--wait", "30"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not (lake / LEASE_PATH).exists()


def test_every_writer_command_documents_wait():
    from pipeline.cli import commands

    by_name = {path: command for path, command in commands()}
    for name in ("ingest", "detect", "forward", "run", "backfill"):
        helps = {p.name: p.help for p in by_name[(name,)].params}
        assert "wait" in helps and "SECONDS" in helps["wait"], name
