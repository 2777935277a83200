"""``soclake rules import-sigma``: Sigma rules (AWS CloudTrail, and their correlations) → soclake rule files.

Detections become DuckDB SQL through :class:`~pipeline.sigma.backend.SoclakeBackend`; metadata
maps onto the rule format (docs/sigma.md has the table); keys Sigma does not have and soclake
requires (practice, runbook, ATT&CK ids when the rule has none) get defaults that the file says
are defaults. Each rule gets a test stub solved from its own detection (:mod:`pipeline.sigma.stubs`),
and every written file is loaded and checked like ``soclake rules validate`` and its tests run
through the real engine before the import reports it converted. A rule that cannot be converted
is reported with the reason and skipped; the others still convert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.rule import SigmaRule

from pipeline.errors import ConfigError
from pipeline.sigma.convert import Unsupported, dump, single_rule
from pipeline.sigma.correlation import correlation_rule


@dataclass
class Converted:
    rule_id: str
    path: Path
    sigma: str  # the Sigma rule's title
    notes: list[str] = field(default_factory=list)
    test_problems: list[str] = field(default_factory=list)


@dataclass
class Skipped:
    sigma: str
    where: str
    reason: str


@dataclass
class ImportReport:
    converted: list[Converted] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.test_problems for c in self.converted)


# -- the command --------------------------------------------------------------------------------


def sigma_files(paths: list[str]) -> list[Path]:
    files = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files += sorted([*path.rglob("*.yml"), *path.rglob("*.yaml")])
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"{p}: no such Sigma rule file or folder")
    if not files:
        raise ConfigError(f"no Sigma rules (*.yml) under {', '.join(paths)}")
    return files


def load(paths: list[str]) -> tuple[list, list[Skipped]]:
    """Every rule under ``paths`` (correlations with their references resolved), and the files or
    rules that could not even be read, with the reason."""
    collections, bad = [], []
    for f in sigma_files(paths):
        try:
            collections.append(SigmaCollection.from_yaml(f.read_text(encoding="utf-8"), collect_errors=True,
                                                          source=SigmaRuleLocation(f), resolve_references=False))
        except (yaml.YAMLError, SigmaError, UnicodeDecodeError) as e:
            bad.append(Skipped(f.name, str(f), f"not a readable Sigma file: {str(e).splitlines()[0]}"))
    merged = SigmaCollection.merge(collections, resolve_references=False)
    for e in merged.errors:
        bad.append(Skipped("?", str(getattr(getattr(e, "source", None), "path", "?")), str(e).splitlines()[0]))
    rules = []
    for r in merged.rules:
        if isinstance(r, SigmaCorrelationRule):
            try:
                r.resolve_rule_references(merged)
            except SigmaError as e:
                r.errors.append(e)
        rules.append(r)
    return rules, bad


def _where(rule) -> str:
    src = getattr(rule, "source", None)
    return str(src.path) if src is not None and src.path else "?"


def import_sigma(paths: list[str], output: str, run_tests: bool = True) -> ImportReport:
    """Convert every Sigma rule under ``paths`` into ``output/cloudtrail/`` and ``output/correlation/``."""
    collection, bad = load(paths)
    out = Path(output)
    report = ImportReport(skipped=bad)
    referenced = set()
    for r in collection:
        if isinstance(r, SigmaCorrelationRule) and not r.generate:
            referenced.update(id(ref.rule) for ref in r.rules or [] if hasattr(ref, "rule"))
    seen: dict[str, str] = {}
    for r in collection:
        title = r.title or "(untitled)"
        if r.errors:
            report.skipped.append(Skipped(title, _where(r), "; ".join(str(e).splitlines()[0] for e in r.errors)))
            continue
        if isinstance(r, SigmaRule) and id(r) in referenced:
            continue  # a correlation's member rule: converted as its stage (Sigma's generate: false)
        try:
            if isinstance(r, SigmaCorrelationRule):
                doc, notes = correlation_rule(r)
                folder = "correlation"
            else:
                doc, notes = single_rule(r)
                folder = "cloudtrail"
        except Unsupported as e:
            report.skipped.append(Skipped(title, _where(r), str(e)))
            continue
        if doc["id"] in seen:
            doc["id"] = f"{doc['id']}_{str(r.id or len(seen))[:8].replace('-', '')}"
        seen[doc["id"]] = title
        path = out / folder / f"{doc['id']}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(doc, notes, Path(_where(r)).name))
        problem = check_written(path)
        if problem:
            path.unlink()
            report.skipped.append(Skipped(title, _where(r), f"the converted rule does not validate: {problem}"))
            continue
        conv = Converted(doc["id"], path, title, notes)
        if run_tests:
            conv.test_problems = run_generated_tests(path)
        report.converted.append(conv)
    return report


def check_written(path: Path) -> str | None:
    from pipeline.detect.rules import load_rule_file
    from pipeline.detect.sql import check_sql

    rule, errors = load_rule_file(path)
    if rule is not None:
        errors += check_sql([rule])
    return "; ".join(errors) if errors else None


def run_generated_tests(path: Path) -> list[str]:
    from pipeline.detect.rules import load_rule_file
    from pipeline.detect.testing import run_rule_tests

    rule, _ = load_rule_file(path)
    return [f"{res.test.name}: {p}" for res in run_rule_tests([rule]) for p in res.problems]
