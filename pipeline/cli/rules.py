"""``soclake rules list|validate|test|coverage|profile|import-sigma|export-sigma``: the rule catalogue
from the command line."""

from __future__ import annotations

import click

from pipeline.cli.options import (
    POSITIVE_INT,
    aws_options,
    configure_aws,
    detect_flags,
    detect_options,
    format_option,
    lake_option,
    rules_option,
    to_args,
)
from pipeline.errors import ConfigError

EXIT_OK, EXIT_ERROR = 0, 1


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


def cmd_rules_profile(args) -> int:
    from pipeline.detect.engine import detect
    from pipeline.lake.store import open_store
    from pipeline.options import require_lake

    require_lake(args.lake)
    configure_aws(args)
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


def load_rules_for(args, warn: bool = True):
    """The built-in catalogue plus the folders the user named (``--rules``, SOCLAKE_RULES).

    A rule file that fails validation is reported on stderr and skipped, so the others still run;
    with ``--strict`` (CI) any problem refuses all, as ``rules validate`` always does.
    """
    import sys

    from pipeline.detect.rules import load_rules, load_rules_checked, rule_dirs
    from pipeline.options import check_folders

    check_folders("--rules", "SOCLAKE_RULES", args.rules, "rule")
    if getattr(args, "strict", True):
        return load_rules(rule_dirs(args.rules))
    rules, problems = load_rules_checked(rule_dirs(args.rules))
    for p in problems if warn else []:
        print(f"Warning: rule skipped: {p}", file=sys.stderr)
    args.rule_problems = problems
    return rules


def tuned_rules_for(args):
    """The enabled rules with the tuning files' parameter values, and their suppressions
    (``--suppressions``, ``--rule-config``; docs/rules.md)."""
    from pipeline.detect.rule_config import load_tuning, tune

    rules = load_rules_for(args)
    return tune(rules, load_tuning(getattr(args, "suppressions", None), getattr(args, "rule_config", None)))


def cmd_rules_list(args) -> int:
    from pipeline.tables import emit

    rules = load_rules_for(args)
    order = {s: i for i, s in enumerate(("critical", "high", "medium", "low", "info"))}
    rows = [{"id": r.id, "severity": r.severity, "source": r.source, "attack": r.attack.tactics + r.attack.techniques,
             "tests": len(r.tests), "practice": r.practice, "enabled": r.enabled,
             "parameters": {n: p.default for n, p in r.parameters.items()}}
            for r in sorted(rules, key=lambda r: (r.source, order[r.severity], r.id))]
    columns = [("id", "ID"), ("severity", "SEVERITY"), ("source", "SOURCE"), ("attack", "ATT&CK", " ".join),
               ("tests", "TESTS"), ("practice", "PRACTICE"),
               ("parameters", "PARAMETERS (DEFAULTS)", lambda p: " ".join(f"{k}={v}" for k, v in p.items()))]
    emit(rows, args.format, columns, empty="no rules", footer=lambda n: f"{n} rules")
    return EXIT_OK


def cmd_rules_validate(args) -> int:
    from pipeline.detect import shape_cache

    rules = load_rules_for(args)
    shape_cache.prime([r.query for r in rules])  # and analysed: detect finds them in the cache (the image bakes it)
    print(f"{len(rules)} rules valid ({sum(len(r.tests) for r in rules)} tests)")
    return EXIT_OK


def _by_file(problems: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in problems:
        out.setdefault(p.split(":", 1)[0], []).append(p)
    return out


def cmd_rules_test(args) -> int:
    from pipeline.detect.testing import run_rule_tests, write_junit

    rules = load_rules_for(args, warn=False)
    unknown = set(args.ids) - {r.id for r in rules}
    broken = _by_file(getattr(args, "rule_problems", []))
    if unknown and not broken:
        raise ConfigError(f"no rule with id {', '.join(sorted(unknown))} (soclake rules list shows them)")
    results = run_rule_tests(rules, args.ids or None)
    for path, problems in broken.items():  # a rule file that does not load fails; the others are still tested
        print(f"FAIL  {path}: does not load")
        for p in problems:
            print(f"        {p}")
    for res in results:
        mark = "PASS" if res.passed else "FAIL"
        print(f"{mark}  {res.rule.id}: {res.test.name}")
        for p in res.problems:
            print(f"        {p}")
        for d in res.details:
            print(f"          {d}")
    passed = sum(r.passed for r in results)
    failed = len(results) - passed + len(broken)
    if getattr(args, "junit", None):
        write_junit(args.junit, results, broken)
    print(f"{passed} passed, {failed} failed")
    return EXIT_OK if not failed else EXIT_ERROR


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


# ---------------------------------------------------------------- the commands


@click.group("rules", short_help="list, validate and test detection rules",
             help="Rules are YAML files under detections/<source>/ (see docs/rules.md).")
def rules_group():
    """Only holds the rules commands."""


@rules_group.command("list", help="table of rules: id, severity, source, ATT&CK, tests")
@rules_option
@format_option
@to_args
def rules_list_command(args):
    return cmd_rules_list(args)


@rules_group.command("validate", help="check every rule file (keys, values, SQL against the real columns, tests "
                     "present); any problem fails it")
@rules_option(strict=False)
@to_args
def rules_validate_command(args):
    return cmd_rules_validate(args)


@rules_group.command("test", help="run rules' own tests through the real normaliser and SQL; IDs: only these rules "
                     "(default: all)")
@rules_option
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--junit", metavar="FILE", help="also write the results as JUnit XML to FILE (for CI test reports)")
@to_args
def rules_test_command(args):
    return cmd_rules_test(args)


@rules_group.command("coverage", help="ATT&CK coverage: tactic x technique with rule ids, or an ATT&CK Navigator layer")
@rules_option
@click.option("--format", "format", type=click.Choice(("text", "navigator")), default="text",
              help="text (default) or an ATT&CK Navigator layer (JSON, layer format 4.5)")
@click.option("--output", help="write to this file instead of stdout")
@to_args
def rules_coverage_command(args):
    return cmd_rules_coverage(args)


_PROFILE = "run the catalogue over a lake without writing anything and list the rules by cost"


@rules_group.command("profile", short_help=_PROFILE, help=_PROFILE + ": each rule's own query time, the rows "
                     "it returned and how it reads the lake (shared scan, per window, or the lake itself).")
@lake_option
@aws_options
@detect_flags
@click.option("--top", type=POSITIVE_INT, default=20, metavar="N", help="show the N most expensive rules (default 20)")
@to_args
def rules_profile_command(args):
    args.quiet = True
    return cmd_rules_profile(args)


_IMPORT = "convert Sigma rules (AWS CloudTrail, and their correlations) into soclake rule files"


@rules_group.command("import-sigma", short_help=_IMPORT, help=_IMPORT + ": single-event rules go to "
                     "DIR/cloudtrail/, correlations to DIR/correlation/; each written rule is validated and its "
                     "generated tests run; rules that cannot be converted are listed with the reason. PATHS: Sigma "
                     "rule files or folders (searched for *.yml, *.yaml). See docs/sigma.md.")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--output", required=True, metavar="DIR", help="folder to write the rules to, e.g. detections/sigma")
@click.option("--no-test", is_flag=True, help="do not run the generated tests after writing")
@to_args
def rules_import_sigma_command(args):
    return cmd_rules_import_sigma(args)


_EXPORT = "write single-event soclake rules back as Sigma rules"


@rules_group.command("export-sigma", short_help=_EXPORT, help=_EXPORT + " (a conjunction/disjunction of field "
                     "conditions over cloudtrail); says which rules cannot be expressed and why. IDs: rule ids to "
                     "export ('all' for every rule). See docs/sigma.md.")
@rules_option
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--output", metavar="DIR", help="write <id>.yml files here (default: stdout, as a YAML stream)")
@to_args
def rules_export_sigma_command(args):
    return cmd_rules_export_sigma(args)


COMMANDS = [rules_group]
