"""Every lake file carries its rows, time range and eventNames in its footer, whoever wrote it
(ingest, compaction, the rewrite of a changed object), and planning a detection run from the
footers gives exactly what a pass over the rows gives, files without the stats included."""

from __future__ import annotations

import time

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline import views
from pipeline.detect import planner
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore, file_stats
from pipeline.lake.compact import compact
from pipeline.sources import LocalSource
from pipeline.synth import DirSink, generate_archive
from tests.archive import ct_bytes, ct_key, records_for
from tests.test_compact import small_files

TABLES = ("cloudtrail", "guardduty")


def footer_stats(path) -> dict | None:
    return file_stats.parse((pq.read_metadata(path).metadata or {}).get(file_stats.KEY.encode()))


def assert_footers_match_rows(lake) -> int:
    """Each data file's footer stats equal what its rows hold; returns how many files were checked."""
    n = 0
    for table in TABLES:
        for path in sorted((lake / table).rglob("*.parquet")):
            st, rows = footer_stats(path), pq.read_table(path)
            assert st is not None, f"{path} has no soclake.stats"
            times = rows.column("event_time").to_pylist()
            assert (st["rows"], st["min"], st["max"]) == (rows.num_rows, min(times), max(times)), path
            if table == "cloudtrail":
                assert st["names"] == sorted(set(rows.column("eventName").to_pylist())), path
            else:
                assert "names" not in st
            n += 1
    return n


def pass_and_footers(lake, monkeypatch) -> tuple[dict, dict, list[str]]:
    """(stats from one pass over the views, stats from the footers, sources the footer path still passed over)."""
    con = duckdb.connect()
    views.register(con, str(lake), prefix="lake_", ocsf_views=False, tables=TABLES)
    reference = planner.day_stats(con, ["lake_cloudtrail", "lake_guardduty"], names_from="lake_cloudtrail")
    passed, real = [], planner._pass
    monkeypatch.setattr(planner, "_pass", lambda c, source, named: passed.append(source) or real(c, source, named))
    return reference, planner.lake_day_stats(con, str(lake), TABLES, named="cloudtrail"), passed


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    generate_archive(DirSink(root / "src"), seed=5, accounts=2, days=3, events=600, guardduty_findings=6,
                     scenarios=("all",))
    assert ingest(LocalSource(str(root / "src")), LocalStore(root / "lake"), IngestOptions(workers=2)).ok
    return root / "lake"


def test_ingested_files_carry_their_stats(lake):
    assert assert_footers_match_rows(lake) >= 6


def test_planning_from_the_footers_reads_no_rows(lake, monkeypatch):
    reference, footers, passed = pass_and_footers(lake, monkeypatch)
    assert footers == reference and len(reference) >= 3
    assert passed == []


def test_files_without_stats_are_passed_over_alone(lake, tmp_path, monkeypatch):
    """A file of an older version (no footer entry), or with an entry this version cannot read, is
    read the slow way, and only it."""
    import shutil

    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    files = sorted((copy / "cloudtrail").rglob("*.parquet"))
    old, odd = files[0], files[-1]
    for path, meta in ((old, {}), (odd, {file_stats.KEY: b'{"v": 99, "rows": 0}'})):
        table = pq.read_table(path)
        pq.write_table(table.replace_schema_metadata(meta), path)
        assert footer_stats(path) is None
    reference, footers, passed = pass_and_footers(copy, monkeypatch)
    assert footers == reference
    assert len(passed) == 1 and str(old) in passed[0] and str(odd) in passed[0] and str(files[1]) not in passed[0]


def test_the_stats_decide_the_same_rules_and_alerts(lake, tmp_path):
    """Detection over footers plans as it would over the rows: same skipped rules, same alerts."""
    import shutil

    from pipeline.detect.engine import DetectOptions, detect
    from pipeline.detect.rules import load_rules

    bare = tmp_path / "bare"
    shutil.copytree(lake, bare)
    for path in bare.rglob("*.parquet"):
        if path.parts[len(bare.parts)] in TABLES:
            pq.write_table(pq.read_table(path).replace_schema_metadata({}), path)
    runs = [detect(str(root), LocalStore(root), load_rules(), DetectOptions(incremental=False, dry_run=True))
            for root in (lake, bare)]
    assert [sorted(c.rule_id for c in r.rule_costs if c.mode == "skipped") for r in runs][0] == \
        sorted(c.rule_id for c in runs[1].rule_costs if c.mode == "skipped")
    assert sorted(a.id for a in runs[0].new) == sorted(a.id for a in runs[1].new) and runs[0].new


def test_compaction_writes_the_merged_files_stats(archive, tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    store = LocalStore(lake)
    small_files(archive, store)
    assert compact(store, min_files=4).files_after == 3
    assert assert_footers_match_rows(lake) == 3
    reference, footers, passed = pass_and_footers(lake, monkeypatch)
    assert footers == reference and passed == []


def test_a_rewritten_file_has_the_stats_of_the_rows_it_kept(archive, tmp_path):
    """A changed object's rows are cut out of their file: the new file's footer must not keep the
    old file's stats (they come back with the schema pyarrow reads)."""
    lake = tmp_path / "lake"
    # two objects in one partition and one file; the one that changes is the later in time
    archive.put(ct_key(hhmm="1000", uniq="keep"), ct_bytes(records_for(5, tag="keep", hour=10)))
    old = [{**r, "eventName": "DeleteTrail"} for r in records_for(5, tag="old", hour=23)]
    archive.put(ct_key(hhmm="2300", uniq="change"), ct_bytes(old))
    assert ingest(LocalSource(archive.root), LocalStore(lake), IngestOptions(workers=1)).ok
    assert len(list((lake / "cloudtrail").rglob("*.parquet"))) == 1
    time.sleep(0.01)
    archive.put(ct_key(hhmm="2300", uniq="change"), ct_bytes(records_for(3, tag="new", hour=11)))
    report = ingest(LocalSource(archive.root), LocalStore(lake), IngestOptions(workers=1))
    assert report.ok and report.to_ingest == {"changed": 1}
    assert assert_footers_match_rows(lake) >= 2
    names = set().union(*(footer_stats(p)["names"] for p in (lake / "cloudtrail").rglob("*.parquet")))
    assert "DeleteTrail" not in names
