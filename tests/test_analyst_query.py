"""Querying the lake from any tool: `soclake query`, the DuckDB catalog file, the Athena DDL.

One small real lake (synthetic organisation with injected attacks → ingest → detect) serves all
tests; every answer is checked against soclake's own views over the same files.
"""

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import expressions as exp

from pipeline import views
from pipeline.analyst import athena, catalog, query
from pipeline.cli import athena as athena_cli
from pipeline.cli import catalog as catalog_cli
from pipeline.cli import query as query_cli
from pipeline.detect.engine import DetectOptions, detect
from pipeline.detect.rules import load_rules
from pipeline.errors import ConfigError, LakeError
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore
from pipeline.sources import LocalSource
from pipeline.synth import DirSink, generate_archive

VIEWS = ("cloudtrail", "guardduty", "guardduty_latest", "cloudtrail_digests", "alerts", "alert_versions", "incidents",
         "ocsf_api_activity", "ocsf_authentication", "ocsf_account_change", "ocsf_detection_finding")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyst")
    generate_archive(DirSink(root / "archive"), seed=11, accounts=2, days=2, events=6000,
                     guardduty_findings=12, scenarios=("all",))
    lake = root / "lake"
    ingest(LocalSource(root / "archive"), LocalStore(lake), IngestOptions(workers=1))
    report = detect(str(lake), LocalStore(lake), [r for r in load_rules() if r.enabled], DetectOptions())
    assert report.ok and report.new, "the fixture lake needs alerts and incidents"
    return lake


@pytest.fixture(scope="module")
def counts(lake):
    con = views.connect(str(lake))
    found = {v: con.execute(f"SELECT count(*) FROM {v}").fetchone()[0] for v in VIEWS}
    assert all(found[v] > 0 for v in VIEWS), found
    return found


@pytest.fixture
def con(lake):
    return query.connect(str(lake))


def run(con, sql, **kw) -> str:
    out = io.StringIO()
    query.run_query(con, sql, out=out, **kw)
    return out.getvalue()


# ---------------------------------------------------------------- soclake query


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_answers(con, counts, view):
    [row] = [json.loads(line) for line in run(con, f"SELECT count(*) AS n FROM {view}", fmt="jsonl").splitlines()]
    assert row["n"] == counts[view]


def test_explain_shows_partition_pruning_on_event_date(con, lake):
    files = list((lake / "cloudtrail").rglob("*.parquet"))
    days = sorted({p.parent.parent.parent.name.split("=")[1] for p in files})
    assert len(days) >= 2
    plan = run(con, f"EXPLAIN SELECT count(*) FROM cloudtrail WHERE event_date = DATE '{days[0]}'")
    assert "File Filters" in plan
    scanned, total = map(int, re.search(r"Scanning Files: (\d+)/(\d+)", plan).groups())
    on_day = sum(1 for p in files if f"event_date={days[0]}" in str(p))
    assert (scanned, total) == (on_day, len(files)) and scanned < total


def test_table_is_duckdbs_box_with_names_types_and_limit(con):
    text = run(con, "SELECT eventName, count(*) AS n FROM cloudtrail GROUP BY ALL ORDER BY n DESC", limit=3)
    assert "eventName" in text and "varchar" in text
    assert len([line for line in text.splitlines() if line.startswith("│")]) == 2 + 3  # names, types, 3 rows
    assert f"({query.TABLE_ROWS} shown)" in run(con, "SELECT eventID FROM cloudtrail")  # the footer tells the rest


def test_csv_has_one_row_per_result_row_and_nested_values_as_json(con, counts):
    text = run(con, "SELECT eventID, userIdentity, resources, requestParameters FROM cloudtrail", fmt="csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == counts["cloudtrail"]
    identity = json.loads(rows[0]["userIdentity"])
    assert "arn" in identity and "sessionContext" in identity


def test_jsonl_loads_line_by_line_with_nested_objects(con, counts):
    lines = run(con, "SELECT id, rule_id, tactics, evidence, first_seen FROM alerts", fmt="jsonl").splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == counts["alerts"]
    assert isinstance(rows[0]["tactics"], list) and isinstance(rows[0]["evidence"], list)


def test_parquet_needs_output_and_reads_back_with_pyarrow(con, counts, tmp_path):
    with pytest.raises(ConfigError, match="--output"):
        run(con, "SELECT * FROM cloudtrail", fmt="parquet")
    out = tmp_path / "ct.parquet"
    n = query.run_query(con, "SELECT * FROM cloudtrail", fmt="parquet", output=str(out))
    table = pq.read_table(out)
    assert n == table.num_rows == counts["cloudtrail"]
    assert pa.types.is_struct(table.schema.field("userIdentity").type)
    assert table.schema.field("account_id").type == pa.string()  # leading zeros survive


def test_limit_and_output_file_for_text_formats(con, tmp_path):
    out = tmp_path / "top.csv"
    assert query.run_query(con, "SELECT eventName FROM cloudtrail", fmt="csv", output=str(out), limit=7) == 7
    assert len(out.read_text().splitlines()) == 1 + 7


@pytest.mark.parametrize("sql, closest", [
    ("SELECT eventNmae, count(*) FROM cloudtrail GROUP BY ALL", "eventName"),
    ("SELECT userIdentity.usrName FROM cloudtrail", "userIdentity.userName"),
    ("SELECT c.userIdentity.sessionContext.attributes.mfaAuthenticatd FROM cloudtrail c",
     "userIdentity.sessionContext.attributes.mfaAuthenticated"),
    ("SELECT severty FROM alerts", "severity"),
])
def test_misspelt_column_is_one_line_naming_the_closest_column(con, sql, closest):
    with pytest.raises(query.QueryError) as e:
        run(con, sql)
    message = str(e.value)
    assert "\n" not in message
    assert re.search(rf"Closest columns: [^.]*\b{re.escape(closest)}\b", message), message
    assert "Tables: cloudtrail, guardduty, guardduty_latest, alerts" in message


def test_other_sql_mistakes_say_duckdbs_reason_and_list_the_tables(con):
    for sql, reason in [("SELECT * FROM cloudtrial", "cloudtrial does not exist"), ("SELEC 1", "syntax error")]:
        with pytest.raises(query.QueryError) as e:
            run(con, sql)
        assert reason in str(e.value) and "Tables: cloudtrail" in str(e.value) and "\n" not in str(e.value)


def test_struct_paths_are_flattened_from_the_views_types(con):
    paths = query.column_paths(con, ["cloudtrail"])
    assert {"userIdentity.arn", "userIdentity.sessionContext.sessionIssuer.arn", "resources[].ARN", "event_date"} <= set(paths)


def test_commands_document_every_option():
    for module in (query_cli, catalog_cli, athena_cli):
        for command in module.COMMANDS:
            assert command.help, command.name
            for param in command.params:
                assert param.param_type_name == "argument" or param.help, f"soclake {command.name} {param.name}"


def test_query_command_end_to_end(lake, counts, capsys):
    from pipeline.cli import parse_args

    args = parse_args(["query", "SELECT count(*) AS n FROM guardduty_latest", "--lake", str(lake), "--format", "csv"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines() == ["n", str(counts["guardduty_latest"])]
    with pytest.raises(LakeError, match="no lake at"):
        query.connect(str(lake / "nope"))


# ---------------------------------------------------------------- catalog file

ONLY_DUCKDB = """
import json, sys
sys.path.insert(0, {path!r})
try:
    import pipeline
    sys.exit("soclake is importable here")
except ImportError:
    pass
import duckdb
con = duckdb.connect({db!r}, read_only=True)
con.execute("SET autoinstall_known_extensions = false")
for stmt in {setup!r}:
    con.execute(stmt)
print(json.dumps({{v: con.execute(f"SELECT count(*) FROM {{v}}").fetchone()[0] for v in {views!r}}}))
"""


def _fresh_python(tmp_path, db, setup=()):
    """A new interpreter that can import duckdb and nothing of soclake (-I -S: no site-packages, no .pth)."""
    import duckdb as ddb

    site = Path(ddb.__file__).parent.parent
    only = tmp_path / "only-duckdb"
    only.mkdir(exist_ok=True)
    for entry in [site / "duckdb", *site.glob("_duckdb*.so"), *site.glob("_duckdb*.pyd"), *site.glob("duckdb-*.dist-info")]:
        if not (only / entry.name).exists():
            (only / entry.name).symlink_to(entry)
    code = ONLY_DUCKDB.format(path=str(only), db=str(db), setup=list(setup), views=list(VIEWS))
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout
    return json.loads(done.stdout)


def test_catalog_opens_without_soclake_and_every_view_matches(lake, counts, tmp_path):
    db = tmp_path / "lake.duckdb"
    status = catalog.write_catalog(str(lake), str(db))
    assert status == {v: "ok" for v in status} and set(status) == set(VIEWS)
    assert _fresh_python(tmp_path, db) == counts


def test_catalog_views_have_soclakes_columns_and_types(lake, tmp_path):
    db = tmp_path / "lake.duckdb"
    catalog.write_catalog(str(lake), str(db))
    ours, theirs = views.connect(str(lake)), duckdb.connect(str(db), read_only=True)
    for v in VIEWS:
        assert theirs.sql(f"DESCRIBE {v}").fetchall() == ours.sql(f"DESCRIBE {v}").fetchall(), v
    assert theirs.execute("SELECT soclake_lake()").fetchone()[0] == str(lake.resolve())


def test_catalog_prunes_partitions(lake, tmp_path):
    db = tmp_path / "lake.duckdb"
    catalog.write_catalog(str(lake), str(db))
    con = duckdb.connect(str(db), read_only=True)
    day = con.execute("SELECT min(event_date) FROM cloudtrail").fetchone()[0]
    plan = "\n".join(r[1] for r in con.execute(f"EXPLAIN SELECT count(*) FROM cloudtrail WHERE event_date = DATE '{day}'").fetchall())
    scanned, total = map(int, re.search(r"Scanning Files: (\d+)/(\d+)", plan).groups())
    assert scanned < total


def test_s3_catalog_is_written_offline_and_reads_the_same_layout(lake, counts, tmp_path):
    """No httpfs here: prove the s3:// catalog's views by pointing its root at a local copy of the layout."""
    db = tmp_path / "s3.duckdb"
    catalog.write_catalog("s3://soc-lake/prod/", str(db))
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT soclake_lake()").fetchone()[0] == "s3://soc-lake/prod"
    sql = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'cloudtrail'").fetchone()[0]
    assert "soclake_lake()" in sql and "hive_partitioning = true" in sql and "account_id := 'VARCHAR'" in sql
    con.close()
    repoint = [f"CREATE OR REPLACE TEMP MACRO soclake_lake() AS '{lake}'"]
    assert _fresh_python(tmp_path, db, repoint) == counts


def test_catalog_of_a_lake_without_files_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    status = catalog.write_catalog(str(tmp_path / "empty"), str(tmp_path / "e.duckdb"))
    assert all(s.startswith("no files yet") for s in status.values())
    with pytest.raises(LakeError, match="no lake at"):
        catalog.write_catalog(str(tmp_path / "missing"), str(tmp_path / "m.duckdb"))


# ---------------------------------------------------------------- Athena DDL


def _ddl(**kw):
    statements = athena.athena_ddl("s3://soc-lake/prod/", **kw)
    return {re.search(r"(?:TABLE|VIEW|DATABASE) (?:IF NOT EXISTS )?(\S+)", s).group(1): s for s in statements}


def _parse(stmt):
    return sqlglot.parse_one(stmt, read="athena")


def _arrow_shape(t: pa.DataType):
    if pa.types.is_struct(t):
        return ("struct", [(f.name, _arrow_shape(f.type)) for f in t])
    if pa.types.is_list(t):
        return ("array", _arrow_shape(t.value_type))
    return "scalar"


def _sql_shape(dtype: exp.DataType):
    if dtype.this == exp.DataType.Type.STRUCT:
        return ("struct", [(c.this.name, _sql_shape(c.args["kind"])) for c in dtype.expressions])
    if dtype.this == exp.DataType.Type.ARRAY:
        return ("array", _sql_shape(dtype.expressions[0]))
    return "scalar"


def test_every_statement_parses_as_athena_sql():
    statements = athena.athena_ddl("s3://soc-lake/prod", accounts=["000011112222"])
    assert len(statements) == 12  # database, 5 tables, 2 latest-version views, 4 OCSF views
    for stmt in statements:
        parsed = _parse(stmt)
        assert isinstance(parsed, exp.Create), stmt[:80]


@pytest.mark.parametrize("table", ["cloudtrail", "guardduty", "cloudtrail_digests", "alerts", "incidents"])
def test_table_columns_match_the_arrow_schema(table):
    file_schema, partitions = athena.table_schemas()[table]
    parsed = _parse(_ddl()[f"soclake.{table}"])
    assert parsed.args["kind"] == "TABLE"
    cols = parsed.this.expressions
    assert [c.this.name for c in cols] == file_schema.names
    assert [(c.this.name, _sql_shape(c.args["kind"])) for c in cols] == [(f.name, _arrow_shape(f.type)) for f in file_schema]
    assert len({n.lower() for n in file_schema.names} | {p for p, _ in partitions}) == len(file_schema) + len(partitions), \
        "Athena lowercases names: two columns would collide"
    props = parsed.args["properties"].expressions
    [location] = [p for p in props if isinstance(p, exp.LocationProperty)]
    assert location.this.name == f"s3://soc-lake/prod/{table}/"
    part = [p for p in props if isinstance(p, exp.PartitionedByProperty)]
    assert [c.this.name for c in (part[0].this.expressions if part else [])] == [n for n, _ in partitions]


def test_types_are_athenas():
    assert athena.athena_type(pa.json_(pa.string())) == "string"
    assert athena.athena_type(pa.timestamp("us", tz="UTC")) == "timestamp"
    assert athena.athena_type(pa.list_(pa.struct([("ARN", pa.string())]))) == "array<struct<`ARN`:string>>"
    ddl = _ddl()["soclake.cloudtrail"]
    assert "`requestParameters` string" in ddl and "`event_time` timestamp" in ddl and "`readOnly` boolean" in ddl


def test_partition_projection_properties():
    ddl = _ddl()
    ct = ddl["soclake.cloudtrail"]
    for prop in ["'projection.enabled' = 'true'", "'projection.event_date.type' = 'date'",
                 "'projection.event_date.format' = 'yyyy-MM-dd'", "'projection.account_id.type' = 'injected'",
                 "'projection.region.type' = 'enum'",
                 "'storage.location.template' = 's3://soc-lake/prod/cloudtrail/event_date=${event_date}/account_id=${account_id}/region=${region}/'"]:
        assert prop in ct
    assert "PARTITIONED BY (`event_date` date)" in ddl["soclake.alerts"] and "account_id.type" not in ddl["soclake.alerts"]
    assert "PARTITIONED BY" not in ddl["soclake.incidents"] and "LOCATION 's3://soc-lake/prod/incidents/'" in ddl["soclake.incidents"]
    enum = _ddl(accounts=["000011112222", "333344445555"], regions=["eu-west-1"])["soclake.guardduty"]
    assert "'projection.account_id.values' = '000011112222,333344445555'" in enum and "'projection.region.values' = 'eu-west-1'" in enum


def test_views_keep_the_newest_version_with_every_column():
    ddl = _ddl()
    for view, table in [("guardduty_latest", "guardduty"), ("alerts_current", "alerts")]:
        parsed = _parse(ddl[f"soclake.{view}"])
        assert parsed.args["kind"] == "VIEW"
        file_schema, partitions = athena.table_schemas()[table]
        assert [c.name for c in parsed.expression.expressions] == [n.lower() for n in file_schema.names] + [p for p, _ in partitions]
        assert "row_number() OVER (PARTITION BY" in ddl[f"soclake.{view}"]


def test_bad_options_are_config_errors():
    for kw in [{"lake": "./lake"}, {"database": "Bad-Name"}, {"accounts": ["123"]}, {"regions": ["mars-1"]}, {"since": "yesterday"}]:
        with pytest.raises(ConfigError):
            athena.athena_ddl(**{"lake": "s3://b/p", **kw})
