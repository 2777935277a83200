"""``soclake rules list|validate|test|coverage``: the rule catalogue from the command line."""

from __future__ import annotations

import argparse

from pipeline.errors import ConfigError

EXIT_OK, EXIT_ERROR = 0, 1


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.cli import _rules_arg

    rules = sub.add_parser("rules", help="list, validate and test detection rules",
                           description="Rules are YAML files under detections/<source>/ (see docs/rules.md).")
    rsub = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    for name, helptext, func in [
        ("list", "table of rules: id, severity, source, ATT&CK, tests", cmd_rules_list),
        ("validate", "check every rule file (keys, values, SQL against the real columns, tests present)", cmd_rules_validate),
        ("test", "run rules' own tests through the real normaliser and SQL", cmd_rules_test),
        ("coverage", "ATT&CK coverage: tactic x technique with rule ids, or an ATT&CK Navigator layer", cmd_rules_coverage),
    ]:
        rp = rsub.add_parser(name, help=helptext, description=helptext)
        _rules_arg(rp)
        if name == "test":
            rp.add_argument("ids", nargs="*", metavar="ID", help="only these rules (default: all)")
        if name == "coverage":
            rp.add_argument("--format", choices=("text", "navigator"), default="text",
                            help="text (default) or an ATT&CK Navigator layer (JSON, layer format 4.5)")
            rp.add_argument("--output", help="write to this file instead of stdout")
        rp.set_defaults(func=func)


def load_rules_for(args):
    """The built-in catalogue plus the folders the user named (``--rules``, SOCLAKE_RULES)."""
    from pipeline.detect.rules import load_rules, rule_dirs

    return load_rules(rule_dirs(args.rules))


def cmd_rules_list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    rules = load_rules_for(args)
    table = Table(title=f"{len(rules)} rules")
    for col in ("id", "severity", "source", "ATT&CK", "tests", "practice"):
        table.add_column(col)
    order = {s: i for i, s in enumerate(("critical", "high", "medium", "low", "info"))}
    for r in sorted(rules, key=lambda r: (r.source, order[r.severity], r.id)):
        attack = " ".join(r.attack.tactics + r.attack.techniques)
        table.add_row(r.id, r.severity, r.source, attack, str(len(r.tests)), r.practice)
    Console(width=200).print(table)
    return EXIT_OK


def cmd_rules_validate(args) -> int:
    rules = load_rules_for(args)
    print(f"{len(rules)} rules valid ({sum(len(r.tests) for r in rules)} tests)")
    return EXIT_OK


def cmd_rules_test(args) -> int:
    from pipeline.detect.testing import run_rule_tests

    rules = load_rules_for(args)
    unknown = set(args.ids) - {r.id for r in rules}
    if unknown:
        raise ConfigError(f"no rule with id {', '.join(sorted(unknown))} (soclake rules list shows them)")
    results = run_rule_tests(rules, args.ids or None)
    for res in results:
        mark = "PASS" if res.passed else "FAIL"
        print(f"{mark}  {res.rule.id}: {res.test.name}")
        for p in res.problems:
            print(f"        {p}")
    passed = sum(r.passed for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return EXIT_OK if passed == len(results) else EXIT_ERROR




def cmd_rules_coverage(args) -> int:
    import json
    from pathlib import Path

    from pipeline.detect.coverage import coverage_lines, navigator_layer

    rules = load_rules_for(args)
    if args.format == "navigator":
        text = json.dumps(navigator_layer(rules), indent=2) + "\n"
    else:
        text = "\n".join(coverage_lines(rules)) + "\n"
    if args.output:
        Path(args.output).write_text(text)
        print(f"Wrote {args.output}")
    else:
        print(text, end="")
    return EXIT_OK
