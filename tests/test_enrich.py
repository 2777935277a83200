"""Enrichment: the account cache (AWS Organizations through a moto server, or a CSV), source address
lookups in MaxMind-format files written here, and the enriched columns of alerts built by detect."""

from __future__ import annotations

import json
import os

import boto3
import pytest

from pipeline.cli import main
from pipeline.enrich import accounts
from pipeline.enrich.apply import Enricher, EnrichOptions
from pipeline.enrich.ipinfo import IpLookup, address_class
from pipeline.lake import LocalStore
from tests.conftest import start_moto_server

PUBLIC_NET, PUBLIC_IP = "81.2.69.0/24", "81.2.69.160"
AMAZON_NET, AMAZON_IP = "3.5.140.0/22", "3.5.140.9"
RANGES_IP = "52.94.76.10"


def write_mmdb(path, networks: dict[str, dict], kind: str) -> str:
    """A small MaxMind-format file (IPv6 tree holding IPv4 too, as MaxMind ships them)."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=kind, languages=["en"], description="test")
    for net, record in networks.items():
        w.insert_network(IPSet([net]), record)
    w.to_db_file(str(path))
    return str(path)


@pytest.fixture
def ip_dbs(tmp_path):
    return make_ip_dbs(tmp_path)


def make_ip_dbs(tmp_path) -> tuple[str, str]:
    """An ASN and a country file knowing PUBLIC_NET (Example Hosting, GB) and an Amazon range."""
    asn = write_mmdb(tmp_path / "asn.mmdb", {
        PUBLIC_NET: {"autonomous_system_number": 64500, "autonomous_system_organization": "Example Hosting"},
        AMAZON_NET: {"autonomous_system_number": 16509, "autonomous_system_organization": "AMAZON-02"},
    }, "GeoLite2-ASN")
    country = write_mmdb(tmp_path / "country.mmdb", {
        PUBLIC_NET: {"country": {"iso_code": "GB", "names": {"en": "United Kingdom"}}},
        "2001:4860::/32": {"country": {"iso_code": "US", "names": {"en": "United States"}}},
    }, "GeoLite2-Country")
    return asn, country


@pytest.fixture
def aws_ranges(tmp_path):
    path = tmp_path / "ip-ranges.json"
    path.write_text(json.dumps({"prefixes": [{"ip_prefix": "52.94.76.0/22", "service": "AMAZON"}],
                                "ipv6_prefixes": [{"ipv6_prefix": "2600:1f00::/24", "service": "AMAZON"}]}))
    return str(path)


# -- addresses ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, cls", [
    ("ec2.amazonaws.com", "aws"), ("AWS Internal", "aws"), ("10.1.2.3", "private"), ("192.168.0.7", "private"),
    ("100.64.0.1", "private"), ("127.0.0.1", "loopback"), ("169.254.169.254", "link_local"), ("fe80::1", "link_local"),
    ("224.0.0.5", "reserved"), ("::ffff:10.0.0.1", "private"), (PUBLIC_IP, "public"), ("not-an-ip.example", "hostname"),
])
def test_address_class_needs_no_database(value, cls):
    assert address_class(value)[0] == cls


def test_lookup_reads_asn_and_country_files_and_labels_amazon(ip_dbs, aws_ranges):
    lookup = IpLookup(ip_dbs, aws_ranges)
    pub = lookup.lookup(PUBLIC_IP)
    assert (pub.ip_class, pub.asn, pub.as_org, pub.country) == ("public", 64500, "Example Hosting", "GB")
    assert lookup.lookup(AMAZON_IP).ip_class == "aws"  # Amazon's own AS
    assert lookup.lookup(RANGES_IP).ip_class == "aws"  # in ip-ranges.json, unknown to the ASN file
    assert lookup.lookup("2600:1f00::5").ip_class == "aws"
    assert lookup.lookup("2001:4860::8888").country == "US"
    unknown = lookup.lookup("8.8.8.8")
    assert (unknown.ip_class, unknown.asn, unknown.country) == ("public", None, None)
    assert lookup.lookup("10.0.0.1").asn is None  # private addresses are never looked up
    lookup.close()


def test_ipinfo_lite_layout_reads(tmp_path):
    db = write_mmdb(tmp_path / "ipinfo.mmdb", {PUBLIC_NET: {"asn": "AS64501", "as_name": "Lite Net",
                                                            "country_code": "FR"}}, "ipinfo lite")
    info = IpLookup([db]).lookup(PUBLIC_IP)
    assert (info.asn, info.as_org, info.country) == (64501, "Lite Net", "FR")


def test_enrich_ip_command(ip_dbs, capsys):
    assert main(["enrich", "ip", PUBLIC_IP, "ec2.amazonaws.com", "--ip-db", ip_dbs[0], "--ip-db", ip_dbs[1], "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"address": PUBLIC_IP, "src_ip_class": "public", "src_asn": 64500,
                       "src_as_org": "Example Hosting", "src_country": "GB"}
    assert rows[1]["src_ip_class"] == "aws"


# -- accounts ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def organization():
    """A moto server of its own (Organizations state is global to a server) with 26 accounts in nested OUs."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc, url = start_moto_server(env)
    try:
        c = boto3.client("organizations", endpoint_url=url, region_name="us-east-1",
                         aws_access_key_id="testing", aws_secret_access_key="testing")
        c.create_organization(FeatureSet="ALL")
        root = c.list_roots()["Roots"][0]["Id"]
        prod = c.create_organizational_unit(ParentId=root, Name="Prod")["OrganizationalUnit"]["Id"]
        pay = c.create_organizational_unit(ParentId=prod, Name="Payments")["OrganizationalUnit"]["Id"]
        ids = []
        for i in range(25):
            req = c.create_account(Email=f"team{i}@example.com", AccountName=f"team-{i}")["CreateAccountStatus"]["Id"]
            ids.append(c.describe_create_account_status(CreateAccountRequestId=req)["CreateAccountStatus"]["AccountId"])
        c.move_account(AccountId=ids[0], SourceParentId=root, DestinationParentId=pay)
        c.move_account(AccountId=ids[1], SourceParentId=root, DestinationParentId=prod)
        c.tag_resource(ResourceId=ids[0], Tags=[{"Key": "env", "Value": "prod"}, {"Key": "owner", "Value": "payments"}])
        yield url, ids
    finally:
        proc.terminate()
        proc.wait(10)


def test_refresh_from_organizations_pages_and_walks_ous(organization, tmp_path, capsys, monkeypatch):
    url, ids = organization
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    lake = tmp_path / "lake"
    assert main(["enrich", "accounts", "--from-organizations", "--lake", str(lake), "--endpoint-url", url,
                 "--region", "us-east-1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accounts"] == 26  # 25 created + the management account
    assert report["pages"] >= 2  # ListAccounts returns at most 20 per page
    assert report["ous"] == 2
    cache = accounts.by_id(accounts.read_cache(LocalStore(lake)))
    assert len(cache) == 26
    assert cache[ids[0]] == {"account_name": "team-0", "ou_path": "Root/Prod/Payments",
                             "tags": {"env": "prod", "owner": "payments"}}
    assert cache[ids[1]]["ou_path"] == "Root/Prod"
    assert cache[ids[2]]["ou_path"] == "Root"
    assert main(["enrich", "accounts", "--show", "--lake", str(lake)]) == 0
    out = capsys.readouterr().out
    assert "team-0" in out and "Root/Prod/Payments" in out and "env=prod" in out and "26 account(s) from organizations" in out


def write_csv(tmp_path) -> str:
    path = tmp_path / "accounts.csv"
    path.write_text("account_id,name,ou,cost_center,tags\n"
                    "111111111111,prod-payments,Root/Prod/Payments,cc-42,env=prod;tier=1\n"
                    "22222222222,sandbox,Root/Sandbox,,\n")  # a leading zero lost by a spreadsheet
    return str(path)


def test_refresh_from_csv_replaces_the_cache(tmp_path, capsys):
    lake = tmp_path / "lake"
    assert main(["enrich", "accounts", "--csv", write_csv(tmp_path), "--lake", str(lake)]) == 0
    assert "Cached 2 account(s) from csv" in capsys.readouterr().out
    cache = accounts.by_id(accounts.read_cache(LocalStore(lake)))
    assert cache["111111111111"] == {"account_name": "prod-payments", "ou_path": "Root/Prod/Payments",
                                     "tags": {"cost_center": "cc-42", "env": "prod", "tier": "1"}}
    assert cache["022222222222"]["account_name"] == "sandbox"
    (tmp_path / "one.csv").write_text("account_id,name\n333333333333,only\n")
    assert main(["enrich", "accounts", "--csv", str(tmp_path / "one.csv"), "--lake", str(lake)]) == 0
    assert list(accounts.by_id(accounts.read_cache(LocalStore(lake)))) == ["333333333333"]


def test_bad_csv_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("account_id,name\n111111111111,a\nabc,b\n")
    assert main(["enrich", "accounts", "--csv", str(bad), "--lake", str(tmp_path / "lake")]) == 1
    assert f"{bad}:3: account_id 'abc' is not 12 digits" in capsys.readouterr().err
    bad.write_text("id,name\n1,a\n")
    assert main(["enrich", "accounts", "--csv", str(bad), "--lake", str(tmp_path / "lake")]) == 1
    assert "needs an account_id column" in capsys.readouterr().err


# -- rows and alerts ---------------------------------------------------------------------------------

def test_enricher_fills_rows_and_keeps_the_rules_own_values(tmp_path, ip_dbs):
    store = LocalStore(tmp_path / "lake")
    accounts.write_cache(store, accounts.from_csv(write_csv(tmp_path))[0], "csv")
    e = Enricher.load(store, EnrichOptions(ip_db=ip_dbs))
    assert e.warning is None
    row = e.row({"account_id": "111111111111", "sourceIPAddress": PUBLIC_IP, "src_country": "ZZ"})
    assert row == {"account_id": "111111111111", "sourceIPAddress": PUBLIC_IP, "account_name": "prod-payments",
                   "account_ou": "Root/Prod/Payments", "src_ip_class": "public", "src_asn": 64500,
                   "src_as_org": "Example Hosting", "src_country": "ZZ"}
    assert e.row({"remote_ip": "10.0.0.1"})["src_ip_class"] == "private"


def test_missing_or_broken_sources_are_one_warning_and_nulls(tmp_path):
    store = LocalStore(tmp_path / "lake")
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database")
    e = Enricher.load(store, EnrichOptions(ip_db=(str(junk),)))
    assert e.warning.startswith("enrichment: ") and "account cache" not in e.warning  # opt-in: not a warning
    assert "junk.mmdb: cannot read it as a MaxMind DB file" in e.warning and "\n" not in e.warning
    row = e.row({"account_id": "111111111111", "sourceIPAddress": "8.8.8.8"})
    assert (row["account_name"], row["src_asn"], row["src_ip_class"]) == (None, None, "public")


# -- detect ------------------------------------------------------------------------------------------

GB_RULE = """\
id: test_login_from_abroad
title: Sign-in from outside the US
severity: medium
description: A console sign-in from a public address the IP database does not place in the US, with the account's OU.
attack: {tactics: [TA0001], techniques: [T1078]}
practice: Know where your users sign in from
false_positives: [Travel.]
runbook: Ask the user.
dedup: {keys: [account_id], window: 1h}
alert_title: "Sign-in to {account_name} from {src_as_org} ({country})"
query: |
  SELECT c.eventID, c.event_time, c.account_id, c.region, c.actor, c.sourceIPAddress,
         ip_country(c.sourceIPAddress) AS country, a.ou_path AS ou
  FROM cloudtrail c LEFT JOIN accounts a ON a.account_id = c.account_id
  WHERE c.eventName = 'ConsoleLogin' AND ip_class(c.sourceIPAddress) = 'public'
    AND ip_country(c.sourceIPAddress) IS DISTINCT FROM 'US'
tests:
  - name: a public address alerts
    alerts: 1
    events: [{eventName: ConsoleLogin, sourceIPAddress: 81.2.69.160}]
  - name: a private address does not
    alerts: 0
    events: [{eventName: ConsoleLogin, sourceIPAddress: 10.0.0.1}]
"""


def _detect_lake(archive, tmp_path, ip_dbs=(), cache=True):
    from pipeline.detect.engine import DetectOptions, detect
    from pipeline.detect.rules import load_rules
    from tests.archive import ct_key
    from tests.test_detect_engine import ROOT_LOGIN_RULE, lake_with, logins

    rules = tmp_path / "rules" / "cloudtrail"
    rules.mkdir(parents=True)
    (rules / "test_root_login.yml").write_text(ROOT_LOGIN_RULE)
    (rules / "test_login_from_abroad.yml").write_text(GB_RULE)
    lake = lake_with(archive, tmp_path, {ct_key(uniq="a"): logins(["2026-11-01T10:05:00Z", "2026-11-01T10:20:00Z"],
                                                                   ip=PUBLIC_IP)})
    if cache:
        accounts.write_cache(LocalStore(lake), accounts.from_csv(write_csv(tmp_path))[0], "csv")
    chosen = [r for r in load_rules([rules.parent]) if r.id.startswith("test_")]
    report = detect(str(lake), LocalStore(lake), chosen, DetectOptions(enrich=EnrichOptions(ip_db=tuple(ip_dbs))))
    return lake, report


def _alert_rows(lake):
    from pipeline import views

    cur = views.connect(str(lake)).execute("SELECT * FROM alerts ORDER BY rule_id")
    return [dict(zip([d[0] for d in cur.description], r)) for r in cur.fetchall()]


def test_detect_enriches_alerts_titles_and_evidence(archive, tmp_path, ip_dbs, capsys):
    lake, report = _detect_lake(archive, tmp_path, ip_dbs)
    assert not [w for w in report.warnings if w.startswith("enrichment:")]
    abroad, root = _alert_rows(lake)
    assert root["title"] == "Root sign-in to 111111111111 (prod-payments) from 81.2.69.160 (2x)"
    assert (root["account_name"], root["account_ou"], root["src_ip_class"], root["src_asn"], root["src_as_org"],
            root["src_country"]) == ("prod-payments", "Root/Prod/Payments", "public", 64500, "Example Hosting", "GB")
    evidence = json.loads(root["evidence"])
    assert all(e["fields"]["src_country"] == "GB" and e["fields"]["account_name"] == "prod-payments" for e in evidence)
    # a rule joined the accounts view and called ip_country() inside its SQL
    assert abroad["title"] == "Sign-in to prod-payments from Example Hosting (GB)"
    assert json.loads(abroad["evidence"])[0]["fields"]["ou"] == "Root/Prod/Payments"

    assert main(["alert", root["id"][:10], "--lake", str(lake)]) == 0
    out = capsys.readouterr().out
    assert "account 111111111111 (prod-payments, Root/Prod/Payments)" in out
    assert "first: public, AS64500 Example Hosting, GB" in out
    assert main(["alerts", "--lake", str(lake), "--json"]) == 0
    listed = {r["rule_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["test_root_login"]["account_name"] == "prod-payments"
    assert listed["test_root_login"]["src_as_org"] == "Example Hosting"
    assert main(["incidents", "--lake", str(lake)]) == 0
    out = capsys.readouterr().out
    assert "ACCOUNTS" in out and "prod-payments" in out  # the incidents table names the accounts
    assert main(["incident", out.splitlines()[1].split()[0], "--lake", str(lake)]) == 0  # row 1: under the header
    assert "  accounts: 111111111111 (prod-payments)" in capsys.readouterr().out
    assert main(["status", "--lake", str(lake), "--json"]) == 0
    sources = json.loads(capsys.readouterr().out)["sources"]
    assert {s["account_name"] for s in sources} == {"prod-payments"}


def test_detect_without_enrichment_data_still_alerts_with_nulls(archive, tmp_path, capsys):
    lake, report = _detect_lake(archive, tmp_path, cache=False)
    warnings = [w for w in report.warnings if w.startswith("enrichment:")]
    assert warnings == []  # enrichment is opt-in: nothing configured is not a warning on every run
    abroad, root = _alert_rows(lake)
    assert abroad["title"] == "Sign-in to ? from ? (?)"  # ip_country() is NULL without a database
    assert root["title"] == "Root sign-in to 111111111111 from 81.2.69.160 (2x)"
    assert (root["account_name"], root["src_asn"], root["src_country"], root["src_ip_class"]) == (None, None, None, "public")
    assert report.ok


def test_detect_cli_prints_one_warning_for_an_unreadable_ip_db(archive, tmp_path, capsys):
    from tests.archive import ct_key
    from tests.test_detect_engine import lake_with, logins

    lake = lake_with(archive, tmp_path, {ct_key(uniq="a"): logins(["2026-11-01T10:05:00Z"], ip=PUBLIC_IP)})
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"\x00" * 64)
    assert main(["detect", "--lake", str(lake), "--ip-db", str(junk)]) == 0
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "enrichment" in x]
    assert len(lines) == 1 and "junk.mmdb: cannot read it as a MaxMind DB file" in lines[0]


def test_rule_tests_run_enrichment_functions_without_a_database(tmp_path):
    from pipeline.detect.rules import load_rules
    from pipeline.detect.testing import run_rule_tests

    d = tmp_path / "rules" / "cloudtrail"
    d.mkdir(parents=True)
    (d / "test_login_from_abroad.yml").write_text(GB_RULE)
    results = run_rule_tests(load_rules([d.parent]))
    assert [(r.test.name, r.problems) for r in results] == [("a public address alerts", []),
                                                            ("a private address does not", [])]


def test_ip_db_from_the_config_file(tmp_path, ip_dbs, capsys):
    cfg = tmp_path / "soclake.yml"
    cfg.write_text(f"enrich:\n  ip_db: [{ip_dbs[0]}, {ip_dbs[1]}]\n")
    assert main(["enrich", "ip", PUBLIC_IP, "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["src_country"] == "GB"


def test_account_cache_on_a_local_and_an_s3_lake_reads_as_a_view(lake_store, tmp_path):
    from pipeline import views

    accounts.write_cache(lake_store, accounts.from_csv(write_csv(tmp_path))[0], "csv")
    rows = views.connect(lake_store.uri).execute(
        "SELECT account_id, account_name, tags['env'] FROM accounts ORDER BY account_id").fetchall()
    assert rows == [("022222222222", "sandbox", None), ("111111111111", "prod-payments", "prod")]
