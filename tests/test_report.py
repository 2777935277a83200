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
from pipeline.analyst import report
from pipeline.detect.engine import DetectOptions, detect
from pipeline.detect.rules import load_rules
from pipeline.errors import LakeError
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore
from pipeline.sources import LocalSource
from pipeline.synth import DirSink, generate_archive
from pipeline.synth.records import iam_user, make_cloudtrail_record, make_console_login
from tests import browser
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


def test_the_page_is_self_contained(page):
    _, _, text = page
    tags = _Tags(text).tags
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed", "img", "base")]
    for tag, attrs in tags:
        for name in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), f"<{tag} {name}={value!r}> points outside the page"
    assert not re.search(r"@import|url\(", text), "CSS must not load anything"
    markup = re.findall(r"<[^>]*>", text)  # text is escaped, so every '<' left in the file is markup
    assert not [m for m in markup if re.search(r"https?:|//", m)], "no URL in any tag, not even an SVG namespace"
    assert "default-src 'none'" in text  # and a CSP that would block any load or script that slipped in


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
        assert body.count('class="alert-mark') == count and body.count("<tr><td class=\"num\">") == count


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
    assert "since 2026-11-02 00:00:00 UTC" in (tmp_path / "r.html").read_text()


def test_attacker_controlled_strings_are_shown_as_text(page):
    _, _, text = page
    assert EVIL_USER not in text and EVIL_TARGET not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    dom = browser.dump_dom(page[0])
    assert dom.console == []
    assert "<img" not in dom.stdout and "<script" not in dom.stdout  # no element was created from the titles
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
    for param in report.report_command.params:
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
