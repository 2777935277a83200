"""The stack's Glue tables cannot drift from the lake: they equal what ``soclake athena-ddl`` prints
(table names, columns and types, partition keys, partition projection), and ``soclake deploy-glue
--check`` fails on a template whose generated block is stale."""

from __future__ import annotations

import re
import subprocess
import sys

from pipeline.analyst.athena import athena_ddl
from pipeline.analyst.glue_cfn import update
from tests.test_deploy_aws import ROOT, TEMPLATE, load_template


def _ddl_tables() -> dict[str, dict]:
    """athena-ddl's CREATE EXTERNAL TABLE statements, parsed: name → columns, partitions, properties."""
    out = {}
    for stmt in athena_ddl("s3://lake-bucket/lake"):
        m = re.match(r"CREATE EXTERNAL TABLE IF NOT EXISTS soclake\.(\w+) \(\n(.*?)\n\)\n", stmt, re.S)
        if not m:
            continue
        cols = [re.fullmatch(r"  `(\w+)` (.+?),?", line).groups() for line in m.group(2).splitlines()]
        parts = re.search(r"PARTITIONED BY \((.*)\)", stmt)
        parts = [tuple(p.strip().replace("`", "").split(" ")) for p in parts.group(1).split(",")] if parts else []
        props = dict(re.findall(r"'([^']+)' = '([^']*)'", stmt))
        out[m.group(1)] = {"columns": [(n, t.replace("`", "")) for n, t in cols], "partitions": parts, "props": props}
    return out


def _template_tables() -> dict[str, dict]:
    tpl = load_template()
    out = {}
    for res in tpl["Resources"].values():
        if res["Type"] != "AWS::Glue::Table":
            continue
        ti = res["Properties"]["TableInput"]
        out[ti["Name"]] = {"columns": [(c["Name"], c["Type"]) for c in ti["StorageDescriptor"]["Columns"]],
                           "partitions": [(p["Name"], p["Type"]) for p in ti.get("PartitionKeys", [])],
                           "props": ti["Parameters"], "location": ti["StorageDescriptor"]["Location"]}
    return out


def test_template_tables_equal_athena_ddl():
    ddl, tpl = _ddl_tables(), _template_tables()
    assert set(tpl) == set(ddl) >= {"cloudtrail", "guardduty", "alerts", "incidents"}
    for name, want in ddl.items():
        got = tpl[name]
        assert got["columns"] == want["columns"], name
        assert got["partitions"] == want["partitions"], name
        assert got["location"] == {"Fn::Sub": "s3://${LakeBucket}/lake/" + name + "/"}
        assert set(got["props"]) == set(want["props"]) | ({"projection.account_id.values"} if want["partitions"][1:]
                                                          else set()), name
        for key, value in want["props"].items():
            mine = got["props"][key]
            if key == "storage.location.template":  # Fn::Sub's ${!x} is a literal ${x}
                assert mine["Fn::Sub"].replace("${!", "${").replace("${LakeBucket}", "lake-bucket") == value
            elif key == "projection.event_date.range":
                assert mine == {"Fn::Sub": "${ProjectionStartDate},NOW"} and value == "2020-01-01,NOW"
            elif key == "projection.account_id.type":  # injected unless the stack lists the accounts
                assert mine == {"Fn::If": ["HasProjectionAccounts", "enum", value]} and value == "injected"
            else:
                assert mine == value, (name, key)
    params = load_template()["Parameters"]
    assert params["ProjectionStartDate"]["Default"] == "2020-01-01"  # athena-ddl --since's default


def _deploy_glue(*argv):
    return subprocess.run([sys.executable, "-m", "pipeline", "deploy-glue", *map(str, argv)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_the_generated_block_is_current_and_a_stale_one_fails(tmp_path):
    assert update(str(TEMPLATE), check=True)
    stale = tmp_path / "soclake.yml"
    stale.write_text(TEMPLATE.read_text().replace("          - {Name: eventName, Type: string}\n", "", 1))
    res = _deploy_glue(stale, "--check")
    assert res.returncode == 1 and res.stderr.startswith("Error: ") and "deploy-glue" in res.stderr, res.stderr
    assert "eventName" not in stale.read_text().split("GlueTableGuardduty")[0].split("GlueTableCloudtrail")[1]
    res = _deploy_glue(stale)
    assert res.returncode == 0, res.stderr
    assert stale.read_text() == TEMPLATE.read_text()
    assert _deploy_glue(stale, "--check").returncode == 0
