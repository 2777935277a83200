"""soclake report: a self-contained HTML page, checked as text and rendered by headless Chromium.

The lake is real (synthetic organisation with every attack scenario → ingest → detect), plus
one actor whose names are HTML: alert titles carry attacker-controlled strings, and the page
must show them as text. Chromium is required: without it these tests fail with the install
command (a report nobody ever rendered is not tested).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipeline import views
from pipeline.analyst import report, tables
from pipeline.cli import report as report_cli
from pipeline.correlate import lifecycle
from pipeline.detect.engine import DetectOptions, detect
from pipeline.detect.rules import load_rules
from pipeline.errors import LakeError
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore
from pipeline.sources import LocalSource
from pipeline.synth import DirSink, generate_archive
from pipeline.synth.records import iam_user, make_cloudtrail_record, make_console_login
from tests import browser, cdp
from tests.archive import DirArchive, ct_bytes, ct_key

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
EVIL_USER = "<img src=x onerror=alert(1)>"
EVIL_TARGET = "<script>alert(2)</script>"
CHARTS = ("chart-alerts-over-time", "chart-incidents-over-time", "chart-events-over-time", "chart-severity",
          "chart-rules", "chart-accounts", "chart-actors", "chart-source-ips")


def _hostile_records() -> list[dict]:
    """A user named like an HTML tag signs in without MFA and makes another 'user' admin."""
    evil = iam_user(EVIL_USER, "111111111111", mfa=None)
    return [
        make_console_login(EVIL_USER, "111111111111", mfa=False, ip="203.0.113.66", event_time="2026-11-01T12:00:00Z"),
        make_cloudtrail_record(eventTime="2026-11-01T12:05:00Z", eventSource="iam.amazonaws.com", eventName="AttachUserPolicy",
                               readOnly=False, userIdentity=evil, sourceIPAddress="203.0.113.66",
                               requestParameters={"userName": EVIL_TARGET,
                                                  "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
    ]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    generate_archive(DirSink(root / "logs"), seed=11, accounts=2, days=2, events=12_000, guardduty_findings=15,
                     scenarios=("all",))
    DirArchive(root / "logs").put(ct_key(day="2026-11-01", hhmm="1205", uniq="hostile"), ct_bytes(_hostile_records()))
    lake = root / "lake"
    ingest(LocalSource(root / "logs"), LocalStore(lake), IngestOptions(workers=1))
    report_ = detect(str(lake), LocalStore(lake), [r for r in load_rules() if r.enabled], DetectOptions())
    assert report_.ok and report_.incidents, "the fixture lake needs alerts and incidents"
    # An analyst has been at work: one loose alert assigned, one incident closed.
    con = views.connect(str(lake))
    loose = con.execute("SELECT id FROM alerts WHERE id NOT IN (SELECT unnest(alert_ids) FROM incidents) "
                        "AND rule_id = 'cloudtrail_logging_gap' ORDER BY id LIMIT 1").fetchone()[0]
    lifecycle.change(LocalStore(lake), con, "alert", loose, "assign", who="tester", owner="dana")
    closed = con.execute("SELECT id FROM incidents WHERE title LIKE '%Root access key%'").fetchone()[0]
    lifecycle.change(LocalStore(lake), con, "incident", closed, "close", who="erin", disposition="true_positive")
    con.close()
    return lake


@pytest.fixture(scope="module")
def page(lake) -> tuple[Path, dict, str]:
    out = lake.parent / "report.html"
    summary = report.write_report(str(lake), str(out))
    return out, summary, out.read_text(encoding="utf-8")


class _Tags(HTMLParser):
    """Every start tag with its attributes, as the browser's tokenizer sees them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def classes(self, tag: str) -> list[str]:
        return [c for t, a in self.tags if t == tag for c in (a.get("class") or "").split()]


CONSOLE = re.compile(r"^https://((?:[a-z]{2}(?:-gov)?-[a-z]+-\d)\.console\.aws\.amazon\.com/"
                     r"|console\.aws\.amazon\.com/|s3\.console\.aws\.amazon\.com/)[^\s\"'<>]*$")


def test_the_page_is_self_contained(page):
    _, _, text = page
    tags = _Tags(text).tags
    assert not [t for t, _ in tags if t in ("link", "iframe", "object", "embed", "img", "base", "form")]
    scripts = [a for t, a in tags if t == "script"]
    assert scripts == [{}], "one inline script (sorting and filtering), no src"
    for tag, attrs in tags:
        for name in ("src", "xlink:href", "action", "srcset", "poster", "data"):
            assert attrs.get(name) is None, f"<{tag} {name}=…> would load something"
        href = attrs.get("href")
        if href is not None and not href.startswith("#"):  # the only other links: AWS console pages, opened by a click
            assert tag == "a" and CONSOLE.match(href), href
            assert attrs.get("rel") == "noopener noreferrer" and attrs.get("target") == "_blank"
    assert not re.search(r"@import|url\(", text), "CSS must not load anything"
    markup = re.findall(r"<[^>]*>", text)  # text is escaped, so every '<' left in the file is markup
    assert not [m for m in markup if re.search(r"https?:|//", m) and not m.startswith('<a class="console" href="https://')], \
        "no URL in any tag but the console links, not even an SVG namespace"
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text).group(1)
    assert "default-src 'none'" in csp and f"script-src {tables.csp_hash()};" in csp and "unsafe-inline" not in \
        csp.split("script-src")[1].split(";")[0]  # the script runs by its hash; no other script would


def test_the_page_has_every_chart_and_a_timeline_per_incident(lake, page):
    _, summary, text = page
    con = views.connect(str(lake))
    alerts = con.execute("SELECT count(*) FROM alerts").fetchone()[0]
    incidents = con.execute("SELECT id, alert_count FROM incidents ORDER BY CASE severity WHEN 'critical' THEN 0 "
                            "WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END, first_seen, id").fetchall()
    assert summary["alerts"] == alerts and summary["incidents"] == len(incidents) == summary["incidents_shown"]
    parsed = _Tags(text)
    svg_classes = parsed.classes("svg")
    for chart in CHARTS:
        assert svg_classes.count(chart) == 1, chart
    assert "empty" not in svg_classes  # every chart has data in this lake
    assert svg_classes.count("incident-timeline") == len(incidents)
    sections = [a["id"] for t, a in parsed.tags if t == "section" and "incident" in (a.get("class") or "").split()]
    assert sections == [f"incident-{i}" for i, _ in incidents]  # most severe first
    for inc_id, count in incidents:
        body = text.split(f'id="incident-{inc_id}"', 1)[1].split("</section>", 1)[0]
        assert body.count('class="alert-mark') == count and body.count('<tr><td class="num" data-sort=') == count


def test_the_numbers_behind_the_charts_match_the_lake(lake):
    con = views.connect(str(lake))
    data = report.collect(con)
    by_sev = dict(con.execute("SELECT severity, count(*) FROM alerts GROUP BY 1").fetchall())
    assert {s: parts[s] for s, parts in data["by_severity"] if parts[s]} == by_sev
    assert sum(sum(v) for v in data["time"]["alerts"].values()) == data["counts"]["alerts"]  # each alert in one bucket
    assert sum(sum(v) for v in data["time"]["incidents"].values()) == data["counts"]["incidents"]
    assert sum(data["time"]["events"]["events"]) == data["counts"]["events"] == \
        con.execute("SELECT count(*) FROM cloudtrail").fetchone()[0]
    rules = [(k, sum(p.values())) for k, p in data["by_rule"]]
    top = con.execute("SELECT rule_id, count(*) n FROM alerts GROUP BY 1 ORDER BY n DESC, rule_id LIMIT 15").fetchall()
    assert rules == top
    ips = dict((k, sum(p.values())) for k, p in data["by_source_ip"])
    assert ips["203.0.113.66"] == 2  # the hostile user's two alerts


def test_since_limits_the_report(lake, tmp_path):
    con = views.connect(str(lake))
    expected = con.execute("SELECT count(*) FROM alerts WHERE last_seen >= TIMESTAMPTZ '2026-11-02 00:00:00+00'").fetchone()[0]
    summary = report.write_report(str(lake), str(tmp_path / "r.html"), since="2026-11-02")
    assert summary["alerts"] == expected < con.execute("SELECT count(*) FROM alerts").fetchone()[0]
    assert "since 2026-11-02T00:00:00Z" in (tmp_path / "r.html").read_text()


def test_attacker_controlled_strings_are_shown_as_text(page):
    _, _, text = page
    assert EVIL_USER not in text and EVIL_TARGET not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    dom = browser.dump_dom(page[0])
    assert dom.console == []
    assert "<img" not in dom.stdout and dom.stdout.count("<script") == 1  # no element was created from the titles
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in dom.stdout


def test_chromium_renders_the_page_without_console_messages(page):
    html_path = page[0]
    dom = browser.dump_dom(html_path)
    assert dom.console == [], dom.console
    for chart in CHARTS:
        assert f'class="chart {chart}"' in dom.stdout, f"{chart} missing from the rendered DOM"
    assert dom.stdout.count('class="chart incident-timeline"') == page[1]["incidents"]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.html").write_text(page[2], encoding="utf-8")  # the page the screenshot shows, to open by hand
    png = ARTIFACTS / "report.png"
    shot = browser.screenshot(html_path, png, 1280, 2400)
    assert shot.console == []
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[16:24] == (1280).to_bytes(4, "big") + (2400).to_bytes(4, "big")
    assert len(data) > 10_000, "a near-empty screenshot: the page did not render"


def test_the_console_check_catches_errors(tmp_path):
    """The console scan must not be vacuous: scripts that log and throw, and a blocked load, are seen."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head>"
                   "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'\">"
                   "</head><body><img src=\"https://example.invalid/x.png\">"
                   "<script>console.error('boom'); missingFunction();</script></body></html>")
    console = browser.dump_dom(bad).console
    assert any("boom" in m for m in console)
    assert any("Uncaught ReferenceError" in m for m in console)
    assert any("Content Security Policy" in m and "example.invalid" in m for m in console)


def test_cli_command_and_errors(lake, tmp_path, capsys):
    from pipeline.cli import parse_args

    out = tmp_path / "sub" / "r.html"
    args = parse_args(["report", "--lake", str(lake), "--output", str(out), "--max-incidents", "1", "--json"])
    assert args.func(args) == 0
    assert '"incidents_shown": 1' in capsys.readouterr().out
    assert out.read_text().count('class="chart incident-timeline"') == 1
    assert "less severe incidents not shown" in out.read_text()
    for param in report_cli.report_command.params:
        assert param.help, f"{param.opts} has no help"
    with pytest.raises(LakeError, match="no lake at"):
        report.write_report(str(tmp_path / "missing"), str(tmp_path / "x.html"))


def test_an_empty_lake_gives_a_page_that_says_so(tmp_path):
    (tmp_path / "lake").mkdir()
    summary = report.write_report(str(tmp_path / "lake"), str(tmp_path / "r.html"))
    text = (tmp_path / "r.html").read_text()
    assert summary["alerts"] == 0 and summary["incidents"] == 0
    assert "No incidents." in text and "the lake holds no events or alerts yet" in text
    assert browser.dump_dom(tmp_path / "r.html").console == []


# --- what an analyst does with the page: real clicks and typing in Chromium ----------------------

def _rows(p: cdp.Page, table: str, col: int) -> list[str]:
    return p.js(f"Array.from(document.querySelectorAll('#{table} tbody tr')).filter(r => !r.hidden)"
                f".map(r => r.cells[{col}].getAttribute('data-sort') ?? r.cells[{col}].textContent.trim().toLowerCase())")


def test_clicking_a_header_sorts_and_typing_filters(page):
    html_path = page[0]
    with cdp.Page(1280, 1100) as p:
        p.open(html_path)
        total = len(_rows(p, "loose-alerts", 2))
        assert total >= 10
        p.click("#loose-alerts thead th:nth-child(3)")  # rule
        rules = _rows(p, "loose-alerts", 2)
        assert rules == sorted(rules) and rules != _rows_as_rendered(page[2], "loose-alerts", 2)
        assert p.js("document.querySelector('#loose-alerts thead th:nth-child(3)').getAttribute('aria-sort')") == "ascending"
        p.click("#loose-alerts thead th:nth-child(3)")
        assert _rows(p, "loose-alerts", 2) == sorted(rules, reverse=True)
        p.click("#loose-alerts thead th:nth-child(1)")  # severity: numbers (rank), most severe first
        ranks = [int(r) for r in _rows(p, "loose-alerts", 0)]
        assert ranks == sorted(ranks)
        p.click("#incident-index thead th:nth-child(5)")  # alerts per incident, as numbers: 12 after 3
        counts = [int(n) for n in _rows(p, "incident-index", 4)]
        assert counts == sorted(counts) and counts[-1] >= 10

        p.type("#loose-alerts-filter", "eu-west-1 guardduty")
        shown = p.js("Array.from(document.querySelectorAll('#loose-alerts tbody tr')).filter(r => !r.hidden)"
                     ".map(r => r.textContent.toLowerCase())")
        assert shown and len(shown) < total and all("eu-west-1" in r and "guardduty" in r for r in shown)
        assert p.js("document.getElementById('loose-alerts-count').textContent") == f"{len(shown)} of {total} rows"
        # what the reader sees: screenshots to look at
        ARTIFACTS.mkdir(exist_ok=True)
        p.screenshot(ARTIFACTS / "report-alerts-filtered.png", "#alerts")
        p.type("#incident-index-filter", "root")
        assert len(_rows(p, "incident-index", 1)) == 1
        p.screenshot(ARTIFACTS / "report-incidents.png", "#incidents")
        p.screenshot(ARTIFACTS / "report-coverage.png", "#coverage")
        p.screenshot(ARTIFACTS / "report-breakdowns.png", "#breakdowns")
        assert p.console == [], p.console  # the script ran without a message, error or CSP violation
    for name in ("report-alerts-filtered", "report-incidents", "report-coverage", "report-breakdowns"):
        assert (ARTIFACTS / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _rows_as_rendered(text: str, table: str, col: int) -> list[str]:
    body = text.split(f'<table id="{table}"', 1)[1].split("</tbody>", 1)[0]
    rows = body.split("<tbody>", 1)[1].split("<tr>")[1:]
    return [re.findall(r"<td[^>]*>(.*?)</td>", r)[col] for r in rows]


_AXES = """Array.from(document.querySelectorAll('svg.chart')).filter(s => s.querySelector('text.ytick')).map(s => ({
    cls: s.getAttribute('class'),
    ticks: Array.from(s.querySelectorAll('text.ytick')).map(t => [t.textContent, +t.getAttribute('y') - 4]),
    segs: Array.from(s.querySelectorAll('rect.seg')).map(r => [+r.getAttribute('height'),
          +r.querySelector('title').textContent.split(': ').pop().split(' ')[0].replace(/,/g, '')])}))"""


def _check_axes(axes: list[dict]) -> None:
    """Each y-axis label sits at the height of its value: the pixels per unit between the labels
    equal the pixels per unit of every bar segment (a "2" label at the height of 2.5 fails), and
    the steps are 1, 2 or 5 × 10^k."""
    for c in axes:
        labels = [label.replace(",", "") for label, _ in c["ticks"]]
        assert all(re.fullmatch(r"\d+", label) for label in labels), (c["cls"], labels)
        values, ys = [int(v) for v in labels], [y for _, y in c["ticks"]]
        step = values[1]
        assert values == [i * step for i in range(len(values))] and len(values) <= 5, (c["cls"], values)
        assert re.fullmatch(r"[125]0*", str(step)), (c["cls"], values)
        per_unit = (ys[0] - ys[-1]) / values[-1]
        for y, v in zip(ys, values):
            assert abs((ys[0] - y) - v * per_unit) < 0.15, (c["cls"], v)
        assert values[-1] >= max(n for _, n in c["segs"])
        for h, n in c["segs"]:
            assert abs(h - n * per_unit) < 0.15, (c["cls"], h, n, per_unit)


def test_axis_ticks_are_round_and_where_their_labels_say(page, tmp_path):
    from pipeline.analyst import charts

    tops = (1, 2, 3, 5, 7, 9, 10, 11, 13, 17, 23, 45, 99, 101, 250, 999, 2501, 12345)
    sample = tmp_path / "axes.html"  # one column of each height: 9 is the old "2.5 labelled 2" case
    sample.write_text("<!DOCTYPE html><html><body>" + "".join(
        charts.stacked_columns(["a", None], {"high": [n, n // 3]}, css_class=f"top-{n}") for n in tops) + "</body></html>")
    with cdp.Page(1280, 1000) as p:
        p.open(page[0])
        in_report = p.js(_AXES)
        p.open(sample)
        samples = p.js(_AXES)
    assert {c["cls"].split()[1] for c in in_report} == {"chart-alerts-over-time", "chart-incidents-over-time",
                                                         "chart-events-over-time"}
    assert len(samples) == len(tops)
    _check_axes(in_report + samples)


def test_one_principal_is_one_actor(lake):
    con = views.connect(str(lake))
    data = report.collect(con)
    actors = dict((k, sum(v.values())) for k, v in data["by_actor"])
    arn = "arn:aws:iam::303373800728:user/ci-legacy"
    spelled = con.execute("SELECT count(*) FROM alerts WHERE actor IN (?, 'ci-legacy')", [arn]).fetchone()[0]
    assert con.execute("SELECT count(*) FROM alerts WHERE actor = 'ci-legacy'").fetchone()[0] >= 1  # GuardDuty's name
    assert "ci-legacy" not in actors and actors[arn] == spelled
    assert [k for k, _ in data["by_actor"]][0] == arn
    instances = [k for k in actors if k.startswith("i-")]
    assert instances  # instance actors are no principals: kept as they are


def test_every_alert_is_listed_with_attack_names_runbook_status_and_owner(lake, page):
    _, summary, text = page
    con = views.connect(str(lake))
    loose = con.execute("SELECT id, title FROM alerts WHERE id NOT IN (SELECT unnest(alert_ids) FROM incidents)").fetchall()
    assert loose and summary["alerts_in_no_incident"] == len(loose) == summary["alerts_in_no_incident_shown"]
    table = text.split('<table id="loose-alerts"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr><td") == len(loose)
    in_incidents = sum(t.count("<tr><td") for t in re.findall(r'<table id="incident-[0-9a-f]{12}-alerts".*?</table>', text, re.S))
    assert in_incidents + len(loose) == summary["alerts"]  # every alert once
    # the assigned alert shows its owner and status; the closed incident its status
    row = next(r for r in table.split("<tr>") if ">dana<" in r).replace("<wbr>", "")  # rule ids break at "_"
    assert "acknowledged" in row and "cloudtrail_logging_gap" in row
    assert "Impair Defenses: Disable or Modify Cloud Logs" in row and "T1562.008" in row  # names from schemas/attack.yml
    assert '<details class="runbook"><summary>runbook</summary>' in row
    runbook = con.execute("SELECT runbook FROM alerts WHERE rule_id = 'cloudtrail_logging_gap' LIMIT 1").fetchone()[0]
    assert report.esc(runbook.strip()) in row
    index = text.split('<table id="incident-index"', 1)[1].split("</table>", 1)[0]
    root = next(r for r in index.split("<tr>") if "Root access key" in r)
    assert "closed (true_positive)" in root and "Valid Accounts: Cloud Accounts" in root


def test_console_links_for_the_principals_and_resources_named(page):
    text = page[2]
    links = dict((m[1], m[0]) for m in re.findall(r'<a class="console" href="([^"]+)"[^>]*>([^<]*)</a>', text))
    hrefs = set(links.values())
    assert "https://console.aws.amazon.com/iam/home#/users/details/ci-legacy" in hrefs
    assert "https://console.aws.amazon.com/iam/home#/roles/details/AWSReservedSSO_AWSPowerUserAccess_db6aa73742ca29b7" in hrefs
    assert "https://s3.console.aws.amazon.com/s3/buckets/prod-app-assets-303373800728" in hrefs
    assert any(re.fullmatch(r"https://us-east-1\.console\.aws\.amazon\.com/ec2/home\?region=us-east-1"
                            r"#SecurityGroup:groupId=sg-[0-9a-f]+", h) for h in hrefs)
    assert any(re.fullmatch(r"https://eu-west-1\.console\.aws\.amazon\.com/ec2/home\?region=eu-west-1"
                            r"#InstanceDetails:instanceId=i-[0-9a-f]+", h) for h in hrefs)
    assert any(re.fullmatch(r"https://(us-east|eu-west)-1\.console\.aws\.amazon\.com/guardduty/home\?region=[a-z0-9-]+"
                            r"#/findings\?macros=current&amp;fId=[0-9a-f]{32}", h) for h in hrefs)
    # the hostile user name is percent-encoded in its link, so it stays inside the console's path
    assert "https://console.aws.amazon.com/iam/home#/users/details/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E" in hrefs
    # long ARNs are shortened from the left: the account and the name stay, the full ARN is the tooltip
    assert "…::303373800728:user/ci-legacy" in text or "arn:aws:iam::303373800728:user/ci-legacy" in links


def test_the_attack_coverage_view_is_the_catalogue(page):
    from pipeline.detect.coverage import coverage

    text = page[2]
    view = text.split('<section id="coverage"', 1)[1].split("</section>", 1)[0]
    cov = coverage(load_rules())
    assert re.findall(r'<h4><span class="tid">(TA\d+)</span>', view) == list(cov)
    for tactic, techs in cov.items():
        card = view.split(f'<span class="tid">{tactic}</span>', 1)[1].split("</ul>", 1)[0]
        assert re.findall(r'<li class="(?:fired|quiet)" title="([^:"]+):', card) == list(techs)
    assert '<li class="fired" title="T1562.008:' in view  # the logging alerts of this lake


def test_the_script_runs_only_by_its_hash(page, tmp_path):
    """Not vacuous: the same page with one character of its script changed is refused by the CSP,
    the refusal is seen on the console, and the headers no longer sort."""
    tampered = tmp_path / "tampered.html"
    tampered.write_text(page[2].replace('"use strict";', '"use strict"; ', 1), encoding="utf-8")
    with cdp.Page(1280, 900) as p:
        p.open(tampered)
        p.click("#loose-alerts thead th:nth-child(3)")
        assert p.js("document.querySelector('#loose-alerts thead th:nth-child(3)').getAttribute('aria-sort')") is None
        assert any("Content Security Policy" in m for m in p.console), p.console


@pytest.fixture
def ip_dbs(tmp_path):
    from tests.test_enrich import make_ip_dbs

    return make_ip_dbs(tmp_path)


def _enriched_page(archive, tmp_path, **kw) -> str:
    from tests.test_enrich import _detect_lake

    lake, _ = _detect_lake(archive, tmp_path, **kw)
    out = tmp_path / "enriched.html"
    report.write_report(str(lake), str(out))
    return out.read_text(encoding="utf-8")


def _alert_rows(text: str) -> list[str]:
    """Every row of every alert table (in no incident, and under each incident's timeline)."""
    tables = re.findall(r'<table id="[^"]+" class="sortable alerts">.*?</table>', text, re.S)
    return [r for t in tables for r in re.findall(r"<tr>.*?</tr>", t.split("<tbody>", 1)[1], re.S)]


def test_alert_rows_show_the_account_name_and_what_is_known_of_the_source(archive, tmp_path, ip_dbs):
    """Enrichment in the report: the account's name next to its id (rows, incidents, the account chart)
    and the source address's class, AS and country in each alert row."""
    text = _enriched_page(archive, tmp_path, ip_dbs=ip_dbs)
    rows = _alert_rows(text)
    assert len(rows) == 2 and all('111111111111 <span class="acct">(prod-payments)</span>' in r for r in rows)
    meta = re.findall(r'<p class="meta">Incident .*?</p>', text, re.S)
    assert meta and all('accounts 111111111111 <span class="acct">(prod-payments)</span>' in m for m in meta)
    assert all("from 81.2.69.160 · public · AS64500 Example Hosting · GB" in r for r in rows)
    assert "prod-payments (111111111111)" in text.split('class="chart chart-accounts"', 1)[1].split("</svg>", 1)[0]


def test_without_enrichment_the_report_shows_what_it_has_and_no_none(archive, tmp_path):
    """NULL-safe: no account cache, no IP database: the id alone, the address and its class (known
    without a database), never 'None' or an empty 'AS'."""
    text = _enriched_page(archive, tmp_path, cache=False)
    rows = _alert_rows(text)
    assert len(rows) == 2 and all('<span class="sub src">from 81.2.69.160 · public</span>' in r for r in rows)
    assert 'class="acct"' not in text and "None" not in text and "AS ·" not in text and "ASNone" not in text
