"""ATT&CK coverage of the rule catalogue: a tactic x technique table, and an ATT&CK Navigator layer.

The names come from ``schemas/attack.yml`` (ids -> official names), which also lets ``rules
validate`` reject an id that does not exist there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import yaml

from pipeline.resources import resource_dir

__all__ = ["AttackTable", "attack_table", "coverage", "navigator_layer", "unknown_ids"]

NAVIGATOR_VERSION = "5.1.0"
LAYER_VERSION = "4.5"


@dataclass(frozen=True)
class AttackTable:
    version: str
    tactics: dict[str, tuple[str, str]]  # id -> (name, Navigator short name)
    techniques: dict[str, str]  # id -> name (a sub-technique's own name)

    def technique_name(self, tid: str) -> str:
        """``Valid Accounts: Cloud Accounts`` for a sub-technique, the plain name otherwise."""
        name = self.techniques.get(tid, "?")
        parent = tid.split(".")[0]
        return f"{self.techniques.get(parent, '?')}: {name}" if "." in tid else name

    def tactic_name(self, tid: str) -> str:
        return self.tactics.get(tid, ("?", ""))[0]


@lru_cache(maxsize=1)
def attack_table() -> AttackTable:
    data = yaml.safe_load((resource_dir("schemas") / "attack.yml").read_text())
    return AttackTable(
        version=str(data["attack_version"]),
        tactics={k: (v[0], v[1]) for k, v in data["tactics"].items()},
        techniques=dict(data["techniques"]),
    )


def unknown_ids(tactics: list[str], techniques: list[str]) -> list[str]:
    """The ids of a rule's ``attack`` that the table does not know (a typo, or a missing entry)."""
    table = attack_table()
    return [t for t in tactics if t not in table.tactics] + [t for t in techniques if t not in table.techniques]


def coverage(rules) -> dict[str, dict[str, list[str]]]:
    """tactic id -> technique id -> ids of the enabled rules that carry both (``-`` when a rule has
    no technique)."""
    out: dict[str, dict[str, list[str]]] = {}
    for r in sorted(rules, key=lambda r: r.id):
        if not r.enabled:
            continue
        for tactic in r.attack.tactics:
            for tech in r.attack.techniques or ["-"]:
                out.setdefault(tactic, {}).setdefault(tech, []).append(r.id)
    order = list(attack_table().tactics)
    return {t: dict(sorted(out[t].items())) for t in sorted(out, key=lambda t: order.index(t) if t in order else 99)}


def coverage_lines(rules) -> list[str]:
    table = attack_table()
    lines = []
    for tactic, techs in coverage(rules).items():
        lines.append(f"{tactic} {table.tactic_name(tactic)}")
        for tech, ids in techs.items():
            name = table.technique_name(tech) if tech != "-" else "(no technique)"
            lines.append(f"  {tech:<10} {name}: {', '.join(ids)}")
    techs = {t for r in rules if r.enabled for t in r.attack.techniques}
    lines.append(f"{len(techs)} techniques, {len({t for r in rules if r.enabled for t in r.attack.tactics})} tactics, "
                 f"{sum(r.enabled for r in rules)} rules")
    return lines


def navigator_layer(rules, name: str = "soclake detections") -> dict:
    """An ATT&CK Navigator layer (format 4.5): one entry per technique, scored by the number of
    enabled rules that detect it, with the rule ids as the comment."""
    table = attack_table()
    by_tech: dict[str, list[str]] = {}
    for r in sorted(rules, key=lambda r: r.id):
        if r.enabled:
            for tech in r.attack.techniques:
                by_tech.setdefault(tech, []).append(r.id)
    techniques = [
        {"techniqueID": tech, "score": len(ids), "comment": ", ".join(ids), "enabled": True,
         "metadata": [{"name": "technique", "value": table.technique_name(tech)}],
         "showSubtechniques": False}
        for tech, ids in sorted(by_tech.items())
    ]
    top = max((t["score"] for t in techniques), default=1)
    untagged = [r.id for r in sorted(rules, key=lambda r: r.id) if r.enabled and not r.attack.techniques]
    return {
        "name": name,
        "versions": {"attack": table.version, "navigator": NAVIGATOR_VERSION, "layer": LAYER_VERSION},
        "domain": "enterprise-attack",
        "description": f"Techniques detected by {sum(r.enabled for r in rules)} soclake rules; score = number of rules.",
        "techniques": techniques,
        "gradient": {"colors": ["#ffe766ff", "#8ec843ff"], "minValue": 0, "maxValue": top},
        "legendItems": [],
        "metadata": [{"name": "rules without a technique", "value": ", ".join(untagged)}] if untagged else [],
        "showTacticRowBackground": False,
        "selectTechniquesAcrossTactics": True,
        "hideDisabled": False,
    }
