"""Alerts the whole catalogue raises on the synthetic organisation's benign background (no attack
injected): ``make bench-alerts`` (1M events; ``--events N`` for another size). The per-rule
figures are recorded in docs/rules.md beside the budget tests/test_false_alert_budget.py enforces."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    from tests.test_false_alert_budget import background_alerts

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rules, by_rule = background_alerts(Path(tmp), events=args.events, seed=args.seed,
                                           findings=max(20, args.events // 7500))
    print(f"{args.events:,} benign events, {len(rules)} rules, {time.perf_counter() - t0:.0f} s")
    for rule_id, n in sorted(by_rule.items()):
        print(f"  {rule_id}: {n}")
    print(f"  total: {sum(by_rule.values())}")


if __name__ == "__main__":
    main()
