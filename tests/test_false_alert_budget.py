"""False-alert budget: the synthetic organisation's benign background, with no attack injected,
through ingest and the whole catalogue. Every rule may raise at most the alerts docs/rules.md
allows it (table "Background alert budget"); a rule with a non-zero budget says why in its
``false_positives``. The 1M-event figures in the same section come from ``make bench-alerts``."""

import datetime as dt
import re
from pathlib import Path

from pipeline.detect.engine import DetectOptions, detect
from pipeline.detect.rules import load_rules
from pipeline.ingest import IngestOptions, ingest
from pipeline.lake import LocalStore
from pipeline.sources import LocalSource
from pipeline.synth import DirSink, generate_archive

DOC = Path(__file__).resolve().parent.parent / "docs" / "rules.md"
EVENTS = 150_000


def budget_table() -> dict[str, int]:
    """rule id -> most alerts allowed, from the doc's "Background alert budget" table (others: 0)."""
    text = DOC.read_text().split("### Background alert budget", 1)[1].split("\n#", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^\| `([a-z0-9_]+)` \| (\d+) \|", text, re.M)}


def background_alerts(tmp_path, events: int = EVENTS, seed: int = 11, findings: int = 20):
    src, lake = tmp_path / "src", tmp_path / "lake"
    generate_archive(DirSink(src), seed=seed, accounts=3, days=2, events=events, guardduty_findings=findings)
    ingest(LocalSource(str(src)), LocalStore(lake), IngestOptions(workers=2))
    rules = load_rules()
    report = detect(str(lake), LocalStore(lake), rules,
                    DetectOptions(since=dt.datetime(2026, 10, 31, tzinfo=dt.UTC), until=dt.datetime(2026, 11, 4, tzinfo=dt.UTC)))
    assert report.errors == []
    return rules, report.by_rule()


def test_the_budget_table_names_real_rules_that_explain_themselves():
    rules = {r.id: r for r in load_rules()}
    budget = budget_table()
    assert budget, "docs/rules.md lost its background alert budget table"
    for rule_id, most in budget.items():
        assert rule_id in rules, f"budget for unknown rule {rule_id}"
        if most:
            assert rules[rule_id].false_positives, rule_id


def test_benign_background_stays_within_each_rules_budget(tmp_path):
    rules, by_rule = background_alerts(tmp_path)
    budget = budget_table()
    print(f"\nalerts on {EVENTS:,} benign events, per rule:")
    for rule_id, n in sorted(by_rule.items()):
        print(f"  {rule_id}: {n} (budget {budget.get(rule_id, 0)})")
    over = {r: (n, budget.get(r, 0)) for r, n in by_rule.items() if n > budget.get(r, 0)}
    assert not over, f"rules over their background budget (alerts, budget): {over}"
