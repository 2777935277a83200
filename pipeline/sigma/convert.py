"""Sigma rule → soclake rule file: metadata, detection SQL, test stubs (single-event rules here,
correlations in :mod:`pipeline.sigma.correlation`).


Keys Sigma does not have and soclake requires (practice, runbook, ATT&CK ids when the rule has
none) get defaults, and the written file lists them in its header comment.
"""

from __future__ import annotations

import copy
import datetime as dt
import re

import yaml
from sigma.exceptions import SigmaError
from sigma.modifiers import SigmaExpandModifier
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule

from pipeline.detect.testing import BASE_EVENT
from pipeline.sigma import stubs
from pipeline.sigma.backend import SoclakeBackend

LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
DEFAULT_TACTIC, DEFAULT_TECHNIQUE = "TA0001", "T1078.004"
DEFAULT_PRACTICE = "Detection content imported from Sigma (set the security practice this rule guards)"
SINGLE_COLUMNS = "eventID, event_time, account_id, region, actor, sourceIPAddress, eventSource, eventName"
T0 = dt.datetime(2026, 11, 1, 10, 0, 0, tzinfo=dt.UTC)


class Unsupported(Exception):
    """This rule cannot be converted: the message is the reason."""


# -- metadata ---------------------------------------------------------------------------------


def slug(text: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]+", "_", text.lower())).strip("_")


def rule_id(rule) -> str:
    base = rule.name if rule.name and re.fullmatch(r"[a-z0-9][a-z0-9_]*", rule.name) else slug(rule.title)
    return base if base.startswith("sigma_") else f"sigma_{base}"


def attack_ids(rules) -> tuple[list[str], list[str], list[str]]:
    """ATT&CK tactics and techniques from the rules' ``attack.*`` tags; ids not in schemas/attack.yml are dropped (noted)."""
    from pipeline.detect.coverage import attack_table

    table = attack_table()
    by_short = {short: tid for tid, (_, short) in table.tactics.items()}
    tactics, techniques, notes = [], [], []
    for r in rules:
        for tag in r.tags:
            if tag.namespace != "attack":
                continue
            name = tag.name.lower()
            if re.fullmatch(r"t\d{4}(\.\d{3})?", name):
                tid = name.upper()
                if tid in table.techniques:
                    techniques.append(tid)
                else:
                    notes.append(f"ATT&CK technique {tid} is not in schemas/attack.yml: dropped")
            elif re.fullmatch(r"ta\d{4}", name):
                tactics.append(name.upper()) if name.upper() in table.tactics else notes.append(
                    f"ATT&CK tactic {name.upper()} is not in schemas/attack.yml: dropped")
            elif name in by_short:
                tactics.append(by_short[name])
            elif re.fullmatch(r"[gs]\d{4}", name):
                continue  # groups and software: not part of the rule format
            else:
                notes.append(f"tag attack.{tag.name} is not a known ATT&CK tactic or technique: dropped")
    tactics, techniques = list(dict.fromkeys(tactics)), list(dict.fromkeys(techniques))
    if not tactics:
        tactics = [DEFAULT_TACTIC]
        notes.append(f"no ATT&CK tactic tag: defaulted to {DEFAULT_TACTIC} (Initial Access), review")
    if not techniques:
        techniques = [DEFAULT_TECHNIQUE]
        notes.append(f"no ATT&CK technique tag: defaulted to {DEFAULT_TECHNIQUE} (Valid Accounts: Cloud Accounts), review")
    return tactics, techniques, notes


def metadata(rule, members: list) -> tuple[dict, list[str], list[str]]:
    """The soclake keys Sigma's metadata fills (and the notes on what was defaulted)."""
    tactics, techniques, notes = attack_ids([rule, *members])
    fps = [str(f) for f in rule.falsepositives if str(f).strip()]
    if not fps:
        fps = ["Not stated by the Sigma rule"]
        notes.append("no falsepositives: defaulted")
    desc = (rule.description or rule.title).strip()
    refs = [str(r) for r in rule.references]
    runbook = ("Review the matching events: who acted (actor, access key), from where (sourceIPAddress, userAgent) "
               "and what changed; confirm with the owner of the principal or the resource.")
    if fps[0] != "Not stated by the Sigma rule":
        runbook += " Known benign causes: " + "; ".join(fps) + "."
    if refs:
        runbook += " See the references."
    notes.append("practice and runbook are defaults (Sigma has no such keys): review")
    level = LEVELS.get(str(rule.level).lower() if rule.level else "", "medium")
    if not rule.level:
        notes.append("no level: severity defaulted to medium")
    tags = ["sigma"]
    if rule.id:
        tags.append(f"sigma-id:{rule.id}")
    if rule.status:
        tags.append(f"sigma-status:{str(rule.status).lower()}")
    meta = {
        "id": rule_id(rule), "title": rule.title, "severity": level, "description": desc,
        "attack": {"tactics": tactics, "techniques": techniques}, "practice": DEFAULT_PRACTICE,
        "references": refs, "false_positives": fps, "runbook": runbook,
    }
    return meta, notes, tags


# -- detections ---------------------------------------------------------------------------------


def _check_logsource(rule: SigmaRule) -> None:
    ls = rule.logsource
    if (ls.product or "").lower() != "aws" or (ls.service or "").lower() != "cloudtrail":
        raise Unsupported(f"logsource product={ls.product} service={ls.service}: only product aws, service "
                          "cloudtrail is supported")


def _check_expand(rule: SigmaRule) -> None:
    def walk(items):
        for it in items:
            if isinstance(it, SigmaDetection):
                yield from walk(it.detection_items)
            elif isinstance(it, SigmaDetectionItem):
                yield it
    for name, det in rule.detection.detections.items():
        for item in walk(det.detection_items):
            if SigmaExpandModifier in item.modifiers:
                raise Unsupported(f"'{rule.title}': field {item.field!r} in {name!r} uses the |expand modifier "
                                  "(placeholders): unsupported, soclake has no placeholder values to fill in")


def where_sql(rule: SigmaRule) -> str:
    """The rule's detection as one DuckDB boolean expression (conditions OR-ed)."""
    _check_logsource(rule)
    _check_expand(rule)
    if len(rule.detection.condition) != 1:
        raise Unsupported("more than one condition: write one condition per rule")
    try:
        work = copy.deepcopy(rule)  # the pipeline renames fields in place: keep the rule's own for the stubs
        SoclakeBackend().convert_rule(work)  # a correlation's member returns nothing but keeps its result
        queries = work.get_conversion_result()
    except (SigmaError, NotImplementedError, TypeError, ValueError) as e:
        text = str(e).splitlines()[0] or type(e).__name__
        if "value expressions are not supported" in text:
            text = "keyword searches (values without a field) are not supported: name the field"
        raise Unsupported(text) from None
    return queries[0]


def parsed_condition(rule: SigmaRule):
    return rule.detection.parsed_condition[0].parsed


# -- test stubs ---------------------------------------------------------------------------------


def _event(env: dict, seconds: int = 0) -> dict:
    """The test event: only what differs from the test runner's base record (None removes a key)."""
    rec = stubs.record(env, BASE_EVENT)
    rec["eventTime"] = (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = {k: v for k, v in rec.items() if BASE_EVENT.get(k, stubs.ABSENT) != v or k == "eventTime"}
    out.update({k: None for k in BASE_EVENT if k not in rec})
    return out


def _no_solution(rule, want) -> stubs.StubError:
    return stubs.StubError(f"no event {'matches' if want else 'misses'} the detection of {rule.title!r}")


def single_tests(rule: SigmaRule) -> list[dict]:
    cond = parsed_condition(rule)
    pos, neg = stubs.first(cond, True), stubs.first(cond, False)
    if pos is None or neg is None:
        raise _no_solution(rule, pos is None)
    return [
        {"name": "an event with the Sigma rule's own field values alerts", "alerts": 1, "events": [_event(pos)]},
        {"name": "an event the detection does not match does not alert", "alerts": 0, "events": [_event(neg)]},
    ]


# -- rule files ---------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # repeated test events are written out, not as YAML anchors
        return True


def _str(dumper, s: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)


_Dumper.add_representer(str, _str)


def dump(doc: dict, notes: list[str], source: str) -> str:
    head = [f"# Converted from Sigma by `soclake rules import-sigma` ({source}).",
            "# Review before enabling in production. Defaults filled in where Sigma has no equivalent:"]
    head += [f"#   - {n}" for n in notes] or ["#   - none"]
    return "\n".join(head) + "\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)


def _title(title: str, fields: list[str], counted: bool = False) -> str:
    """``<title>: eventName by actor`` for single rules; ``<title>: key=value, ... (n events)`` for correlations."""
    safe = title.replace("{", "{{").replace("}", "}}")
    if counted:
        return safe + ": " + ", ".join(f"{f}={{{f}}}" for f in fields) + " ({event_count} events)"
    return f"{safe}: {{eventName}} by {{actor}}"


def single_rule(rule: SigmaRule) -> tuple[dict, list[str]]:
    where = where_sql(rule)
    meta, notes, tags = metadata(rule, [])
    doc = {**meta,
           "dedup": {"keys": ["account_id", "actor", "eventName"], "window": "1h"},
           "alert_title": _title(rule.title, []),
           "query": f"SELECT {SINGLE_COLUMNS}\nFROM cloudtrail\nWHERE {where}\n",
           "tags": tags}
    try:
        doc["tests"] = single_tests(rule)
    except stubs.StubError as e:
        raise Unsupported(f"cannot build a test stub: {e}") from None
    notes.append("dedup (account_id, actor, eventName per hour) and alert_title are defaults")
    return doc, notes


