"""``soclake rules list|validate|test|coverage|profile|import-sigma|export-sigma``: the rule catalogue
from the command line."""

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
    _profile_parser(rsub)
    _sigma_parsers(rsub)


def _sigma_parsers(rsub) -> None:
    from pipeline.cli import _rules_arg

    helptext = "convert Sigma rules (AWS CloudTrail, and their correlations) into soclake rule files"
    rp = rsub.add_parser("import-sigma", help=helptext, description=helptext + ": single-event rules go to "
                         "DIR/cloudtrail/, correlations to DIR/correlation/; each written rule is validated and its "
                         "generated tests run; rules that cannot be converted are listed with the reason. See docs/sigma.md.")
    rp.add_argument("paths", nargs="+", metavar="PATH", help="Sigma rule files or folders (searched for *.yml, *.yaml)")
    rp.add_argument("--output", required=True, metavar="DIR", help="folder to write the rules to, e.g. detections/sigma")
    rp.add_argument("--no-test", action="store_true", help="do not run the generated tests after writing")
    rp.set_defaults(func=cmd_rules_import_sigma)
    helptext = "write single-event soclake rules back as Sigma rules"
    rp = rsub.add_parser("export-sigma", help=helptext, description=helptext + " (a conjunction/disjunction of field "
                         "conditions over cloudtrail); says which rules cannot be expressed and why. See docs/sigma.md.")
    _rules_arg(rp)
    rp.add_argument("ids", nargs="+", metavar="ID", help="rule ids to export ('all' for every rule)")
    rp.add_argument("--output", metavar="DIR", help="write <id>.yml files here (default: stdout, as a YAML stream)")
    rp.set_defaults(func=cmd_rules_export_sigma)


def cmd_rules_import_sigma(args) -> int:
    from pipeline.sigma.importer import import_sigma

    report = import_sigma(args.paths, args.output, run_tests=not args.no_test)
    for c in report.converted:
        print(f"converted  {c.path}  ({c.sigma})")
        for p in c.test_problems:
            print(f"    TEST FAILS {p}")
    for s in report.skipped:
        print(f"skipped    {s.where}: {s.sigma}: {s.reason}")
    failing = sum(bool(c.test_problems) for c in report.converted)
    print(f"{len(report.converted)} converted, {len(report.skipped)} skipped"
          + (f", {failing} with failing generated tests" if failing else ""))
    return EXIT_OK if report.ok and report.converted else EXIT_ERROR


def cmd_rules_export_sigma(args) -> int:
    from pathlib import Path

    from pipeline.sigma.exporter import dump, export_sigma

    rules = load_rules_for(args)
    ids = [r.id for r in rules] if args.ids == ["all"] else args.ids
    unknown = set(ids) - {r.id for r in rules}
    if unknown:
        raise ConfigError(f"no rule with id {', '.join(sorted(unknown))} (soclake rules list shows them)")
    done, reasons = export_sigma(rules, ids)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        for rid, doc in done.items():
            (out / f"{rid}.yml").write_text(dump(doc))
            print(f"wrote {out / f'{rid}.yml'}")
    else:
        print("---\n".join(dump(doc) for doc in done.values()), end="")
    import sys

    for rid, why in reasons.items():
        print(f"cannot express {rid} as Sigma: {why}", file=sys.stderr)
    print(f"{len(done)} exported, {len(reasons)} cannot be expressed", file=sys.stderr)
    return EXIT_OK if done else EXIT_ERROR


def _profile_parser(rsub) -> None:
    from pipeline.cli import _add_aws, _detect_args, _lake_arg
    from pipeline.options import positive_int

    helptext = "run the catalogue over a lake without writing anything and list the rules by cost"
    rp = rsub.add_parser("profile", help=helptext, description=helptext + ": each rule's own query time, the rows "
                         "it returned and how it reads the lake (shared scan, per window, or the lake itself).")
    _lake_arg(rp)
    _add_aws(rp)
    _detect_args(rp)
    rp.add_argument("--top", type=positive_int, default=20, metavar="N", help="show the N most expensive rules (default 20)")
    rp.set_defaults(func=cmd_rules_profile, quiet=True)


def cmd_rules_profile(args) -> int:
    from pipeline.cli import _configure_aws, detect_options
    from pipeline.detect.engine import detect
    from pipeline.lake.store import open_store
    from pipeline.options import require_lake

    require_lake(args.lake)
    _configure_aws(args)
    rules, suppressions = tuned_rules_for(args)
    opts = detect_options(args, incremental=False, dry_run=True, suppressions=suppressions)
    report = detect(args.lake, open_store(args.lake), rules, opts)
    for w in report.warnings:
        import sys

        print(f"Warning: {w}", file=sys.stderr)
    costs = sorted(report.rule_costs, key=lambda c: -c.seconds)
    if args.json:
        import json

        print(json.dumps({"elapsed_s": round(report.elapsed, 3), "scan_seconds": round(report.scan_seconds, 3),
                          "rows_scanned": report.rows_scanned, "candidate_rows": report.candidates,
                          "windows": report.windows, "rules": [c.to_dict() for c in costs]}, indent=2))
        return EXIT_OK if report.ok else EXIT_ERROR
    print(f"{len(rules)} rules over {report.rows_scanned:,} rows in {report.windows} window(s): "
          f"{report.elapsed:.2f} s (shared scan {report.scan_seconds:.2f} s, {report.candidates:,} candidate rows)")
    print(f"{'seconds':>8}  {'rows':>8}  {'reads':<9} rule")
    for c in costs[: args.top]:
        print(f"{c.seconds:8.3f}  {c.rows:8,}  {c.mode:<9} {c.rule_id}")
    for rule, err in report.errors:
        print(f"  RULE FAILED {rule}: {err}")
    return EXIT_OK if report.ok else EXIT_ERROR


def load_rules_for(args):
    """The built-in catalogue plus the folders the user named (``--rules``, SOCLAKE_RULES)."""
    from pipeline.detect.rules import load_rules, rule_dirs
    from pipeline.options import check_folders

    check_folders("--rules", "SOCLAKE_RULES", args.rules, "rule")
    return load_rules(rule_dirs(args.rules))


def tuned_rules_for(args):
    """The enabled rules with the tuning files' parameter values, and their suppressions
    (``--suppressions``, ``--rule-config``; docs/rules.md)."""
    from pipeline.detect.rule_config import load_tuning, tune

    rules = load_rules_for(args)
    return tune(rules, load_tuning(getattr(args, "suppressions", None), getattr(args, "rule_config", None)))


def cmd_rules_list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    rules = load_rules_for(args)
    table = Table(title=f"{len(rules)} rules")
    for col in ("id", "severity", "source", "ATT&CK", "tests", "practice", "parameters (defaults)"):
        table.add_column(col)
    order = {s: i for i, s in enumerate(("critical", "high", "medium", "low", "info"))}
    for r in sorted(rules, key=lambda r: (r.source, order[r.severity], r.id)):
        attack = " ".join(r.attack.tactics + r.attack.techniques)
        params = " ".join(f"{n}={p.default}" for n, p in r.parameters.items())
        table.add_row(r.id, r.severity, r.source, attack, str(len(r.tests)), r.practice, params)
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
