"""The on-disk cache of rule SQL analyses: a second run reads it instead of parsing; a changed
rule, version or analysis is analysed again; a broken cache file is ignored and rebuilt."""

import orjson
import pytest

from pipeline.detect import shape_cache, sqlshape
from pipeline.detect.rules import load_rules

CATALOGUE = [r for r in load_rules() if r.enabled]
_MEMOS = (sqlshape._analyse, sqlshape._simple_select, sqlshape._parse_shared)


def _clear():
    for memo in _MEMOS:
        memo.cache_clear()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, and sqlshape with nothing analysed yet in this process."""
    monkeypatch.setenv("SOCLAKE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sqlshape, "SEEDED", {})
    _clear()
    yield tmp_path / "cache"
    _clear()


def _forget(monkeypatch):
    """As a new process: nothing analysed or parsed in memory."""
    monkeypatch.setattr(sqlshape, "SEEDED", {})
    _clear()


def _no_parsing(monkeypatch):
    def refuse(sql):
        raise AssertionError("analysed although the cache holds it")
    for name in ("parse", "_analyse", "_simple_select"):
        monkeypatch.setattr(sqlshape, name, refuse)


def test_catalogue_analyses_round_trip_through_the_file(cache, monkeypatch):
    sqls = [r.query for r in CATALOGUE]
    fresh = {s: (sqlshape.analyse(s), sqlshape.simple_select(s)) for s in sqls}
    shape_cache.prime(sqls)
    assert shape_cache.path().exists()
    _forget(monkeypatch)
    _no_parsing(monkeypatch)
    shape_cache.prime(sqls)  # a second process: everything from the file
    for s in sqls:
        assert sqlshape.analyse(s) == fresh[s][0]
        assert sqlshape.simple_select(s) == fresh[s][1]
    assert len(sqlshape.SEEDED) == len(set(sqls))


def test_a_changed_rule_is_analysed_again(cache, monkeypatch):
    old = "SELECT eventID, event_time FROM cloudtrail WHERE eventName = 'A'"
    new = "SELECT eventID, event_time FROM cloudtrail WHERE eventName = 'B'"
    shape_cache.prime([old])
    _forget(monkeypatch)
    shape_cache.prime([new])
    assert sqlshape.analyse(new).event_names("cloudtrail") == {"B"}
    stored = orjson.loads(shape_cache.path().read_bytes())["rules"]
    assert len(stored) == 2  # both texts kept: runs with other rule sets share the file


def test_another_version_uses_a_new_file_and_removes_the_old(cache, monkeypatch):
    sql = "SELECT eventID, event_time FROM cloudtrail WHERE eventName = 'A'"
    shape_cache.prime([sql])
    first = shape_cache.path()
    _forget(monkeypatch)
    monkeypatch.setattr(shape_cache, "key", lambda: "another-version")
    parsed = []
    real = sqlshape.parse
    monkeypatch.setattr(sqlshape, "parse", lambda s: parsed.append(s) or real(s))
    shape_cache.prime([sql])
    assert parsed  # not taken from the old version's file
    assert shape_cache.path() != first and shape_cache.path().exists() and not first.exists()


@pytest.mark.parametrize("garbage", [b"{not json", b"[]", b'{"key": "x", "rules": {}}',
                                     b'{"key": "KEY", "rules": {"H": {"shape": {"tables": 3}}}}'])
def test_a_broken_cache_file_is_ignored_and_rebuilt(cache, monkeypatch, garbage):
    sql = "SELECT eventID, event_time FROM cloudtrail WHERE eventName = 'A' AND errorCode IS NULL"
    want = sqlshape.analyse(sql)
    _forget(monkeypatch)
    digest = shape_cache._digest(sql)
    cache.mkdir(parents=True)
    shape_cache.path().write_bytes(garbage.replace(b"KEY", shape_cache.key().encode()).replace(b'"H"', f'"{digest}"'.encode()))
    shape_cache.prime([sql])
    assert sqlshape.analyse(sql) == want
    _forget(monkeypatch)
    _no_parsing(monkeypatch)
    shape_cache.prime([sql])  # rebuilt: now it answers
    assert sqlshape.analyse(sql) == want


def test_an_unwritable_cache_folder_costs_only_time(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SOCLAKE_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(sqlshape, "SEEDED", {})
    sql = "SELECT eventID, event_time FROM cloudtrail WHERE eventName = 'C'"
    shape_cache.prime([sql])
    assert sqlshape.analyse(sql).event_names("cloudtrail") == {"C"}


def test_fused_queries_come_from_the_file(cache, monkeypatch):
    sels = [sqlshape.simple_select(r.query) for r in CATALOGUE[:40]]
    sels = [s for s in sels if s is not None]
    text = shape_cache.fused_sql(sels)
    assert text == sqlshape.fused_sql(sels)
    monkeypatch.setattr(sqlshape, "fused_sql", lambda s: pytest.fail("built again"))
    assert shape_cache.fused_sql(sels) == text


def test_loading_binds_only_new_or_changed_rules(cache, monkeypatch):
    """check_sql takes the output columns of SQL that bound before from the file; a changed query is bound
    again, and one that no longer binds is reported, never answered from the cache."""
    from pipeline.detect import sql

    bound = []
    real = sql.output_columns
    monkeypatch.setattr(sql, "output_columns", lambda con, q: bound.append(q) or real(con, q))
    assert sql.check_sql(CATALOGUE) == []
    assert len(bound) == len({r.query for r in CATALOGUE})
    bound.clear()
    assert sql.check_sql(CATALOGUE) == []  # a second load: nothing bound
    assert bound == []
    rule = CATALOGUE[0]
    broken = rule.model_copy(update={"query": rule.query.replace("FROM cloudtrail", "FROM cloudtrail_typo", 1)})
    errors = sql.check_sql([broken])
    assert bound == [broken.query] and len(errors) == 1 and "query does not run" in errors[0]
    assert sql.check_sql([broken]) == errors  # an error is not remembered as columns


def test_rules_validate_leaves_the_catalogue_analysed_in_the_cache(cache, monkeypatch, capsys):
    """What the container image runs at build time: afterwards a run analyses and binds nothing."""
    from pipeline.cli import main
    from pipeline.detect import sql

    assert main(["rules", "validate"]) == 0
    _forget(monkeypatch)
    _no_parsing(monkeypatch)
    shape_cache.prime([r.query for r in CATALOGUE])  # a scheduled run in the image: all from the file
    monkeypatch.setattr(sql, "output_columns", lambda con, q: (_ for _ in ()).throw(AssertionError(q)))
    assert sql.check_sql(CATALOGUE) == []
