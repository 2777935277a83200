"""The ledger's snapshots: commits folded into one Parquet file, read back exactly; older JSON snapshots still read."""

import gzip

import orjson
import pytest

from pipeline.errors import LakeError
from pipeline.lake import Ledger, LocalStore
from pipeline.lake.ledger import INGESTED, QUARANTINED, STATE_PREFIX, ObjectEntry


def _entries(n: int, base: int = 0) -> list[ObjectEntry]:
    out = []
    for i in range(base, base + n):
        key = f"AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/01/111111111111_CloudTrail_us-east-1_20261101T1000Z_o{i}.json.gz"
        if i % 3 == 2:
            out.append(ObjectEntry(f"s3://b/{key}", f"etag{i}", 10 + i, "cloudtrail", QUARANTINED, reason=f"corrupt gzip {i}"))
            continue
        e = ObjectEntry(f"/archive/{key}", f"etag{i}", 10 + i, "cloudtrail", INGESTED, rows=i,
                        files=[f"cloudtrail/event_date=2026-11-01/account_id=111111111111/region=us-east-1/part-{i}.parquet"],
                        stat=f"{10 + i}-{i}", sha256=f"{i:064x}" if i % 2 else None)
        if i % 4 == 0:
            e.rejected, e.rejects, e.reason = 2, [{"index": 1, "reason": "no eventTime"}], "2 record(s) rejected"
        out.append(e)
    return out


def _state(store) -> list[str]:
    return sorted(n.rsplit("/", 1)[1].split(".", 1)[1] for n in store.list(STATE_PREFIX))


def test_commits_fold_into_a_parquet_snapshot_that_loads_back_the_same_ledger(tmp_path):
    store = LocalStore(tmp_path / "lake")
    led = Ledger(store)
    for k in range(16):
        batch = _entries(5, base=5 * k)
        led.commit(batch, [p for e in batch for p in e.files])
    led.commit(_entries(1, base=3), files_removed=[_entries(1, base=3)[0].files[0]])  # a later version of object 3
    assert led.compact()
    assert _state(store) == ["snapshot.parquet"]
    again = Ledger.load(store)
    assert again.objects == led.objects and again.files == led.files
    assert len(again.objects) == 80 and again.entry(_entries(1, base=3)[0].uri).run == led.run_id
    assert again.entry(_entries(1, base=4)[0].uri).rejects == [{"index": 1, "reason": "no eventTime"}]
    # later commits apply on top of the snapshot
    later = Ledger(store)
    later.commit(_entries(1, base=100))
    assert len(Ledger.load(store).objects) == 81


def test_a_json_snapshot_of_an_older_version_is_read_and_replaced_by_the_next_compaction(tmp_path):
    store = LocalStore(tmp_path / "lake")
    old = _entries(6)
    doc = {"objects": [orjson.loads(orjson.dumps(e)) for e in old], "files": sorted(p for e in old for p in e.files)}
    store.put(f"{STATE_PREFIX}20261101T000000000000Z-0001-000001.snapshot.json.gz", gzip.compress(orjson.dumps(doc)))
    led = Ledger.load(store)
    assert {e.uri for e in led.objects.values()} == {e.uri for e in old}
    for k in range(16):
        led.commit(_entries(1, base=50 + k))
    assert led.compact()
    assert _state(store) == ["snapshot.parquet"]
    assert len(Ledger.load(store).objects) == 22


def test_an_unreadable_snapshot_is_a_lake_error_naming_it(tmp_path):
    store = LocalStore(tmp_path / "lake")
    name = f"{STATE_PREFIX}20261101T000000000000Z-0001-000001.snapshot.parquet"
    store.put(name, b"PAR1 not really")
    with pytest.raises(LakeError, match="snapshot.parquet is unreadable"):
        Ledger.load(store)
