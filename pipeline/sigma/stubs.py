"""Test events from a Sigma rule's own detection: an event that must match and one that must not.

The detection's parsed condition (pySigma's tree, before field mapping, so field names are the
CloudTrail record's own dotted paths) is solved for true and for false by backtracking over its
ANDs, ORs and NOTs; each leaf proposes values that satisfy it (or not) and checks values already
chosen for its field. The events are then laid over a realistic base record, so fields the
detection does not mention keep ordinary values. The importer runs the generated tests through
the real engine and reports a rule whose stub does not behave.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterator
from re import _parser as sre  # the stdlib regex parser, to build a string a pattern matches

from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionNOT, ConditionOR
from sigma.types import (
    SigmaBool,
    SigmaCIDRExpression,
    SigmaExists,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

ABSENT = object()  # the field is not in the record
_OTHER = "soclake-test-other"
MAX_SOLUTIONS = 500


class StubError(ValueError):
    """The detection has a construct the stub generator cannot solve (the rule still converts)."""


# -- matching a value against a leaf, as the SQL does -----------------------------------------


def _like_regex(s: SigmaString) -> str:
    out = []
    for part in s.s:
        if part == SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif part == SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        elif isinstance(part, str):
            out.append(re.escape(part))
        else:
            raise StubError(f"placeholder or special value {part!r}")
    return "".join(out)


def _cased(leaf) -> bool:
    from sigma.modifiers import SigmaCaseSensitiveModifier

    parent = getattr(leaf, "parent", None)
    mods = getattr(parent, "modifiers", None) or []
    return SigmaCaseSensitiveModifier in mods


def matches(leaf: ConditionFieldEqualsValueExpression, value) -> bool:
    v = leaf.value
    if isinstance(v, SigmaExists):
        return (value is not ABSENT) == v.exists
    if isinstance(v, SigmaNull):
        return value is ABSENT
    if value is ABSENT:
        return False
    if isinstance(v, SigmaBool):
        return value is v.boolean or str(value).lower() == str(v.boolean).lower()
    if isinstance(v, SigmaNumber):
        return str(value) == str(v.number)
    if isinstance(v, SigmaString):
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not v.contains_special():
            return text == v.to_plain()
        flags = 0 if _cased(leaf) else re.IGNORECASE
        return re.fullmatch(_like_regex(v), text, flags | re.DOTALL) is not None
    if isinstance(v, SigmaRegularExpression):
        flags = re.IGNORECASE if any(f.name == "IGNORECASE" for f in v.flags) else 0
        return re.search(v.regexp.to_plain(), str(value), flags) is not None
    if isinstance(v, SigmaCIDRExpression):
        try:
            return ipaddress.ip_address(str(value)) in v.network
        except ValueError:
            return False
    raise StubError(f"value type {type(v).__name__}")


# -- proposing values ------------------------------------------------------------------------


def regex_sample(pattern: str) -> str:
    """A short string matching ``pattern`` (literals, classes, repeats, groups, alternations)."""
    def gen(items) -> str:
        out = []
        for op, av in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(av))
            elif name == "ANY":
                out.append("a")
            elif name == "IN":
                out.append(_class_char(av))
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                lo, _hi, sub = av
                out.append(gen(sub) * lo)
            elif name == "SUBPATTERN":
                out.append(gen(av[-1]))
            elif name == "BRANCH":
                out.append(gen(av[1][0]))
            elif name in ("AT", "ASSERT", "ASSERT_NOT"):
                continue
            elif name == "NOT_LITERAL":
                out.append("a" if av != ord("a") else "b")
            elif name == "CATEGORY":
                out.append(_category_char(av))
            else:
                raise StubError(f"regex construct {name}")
        return "".join(out)
    return gen(sre.parse(pattern))


def _category_char(cat) -> str:
    name = str(cat)
    return {"CATEGORY_DIGIT": "1", "CATEGORY_SPACE": " ", "CATEGORY_WORD": "a"}.get(name, "-")


def _class_char(items) -> str:
    for op, av in items:
        name = str(op)
        if name == "LITERAL":
            return chr(av)
        if name == "RANGE":
            return chr(av[0])
        if name == "CATEGORY":
            return _category_char(av)
    raise StubError("negated character class")


def proposals(leaf: ConditionFieldEqualsValueExpression, want: bool) -> list:
    from pipeline.sigma.backend import COLUMN_TYPES

    v = leaf.value
    if not want:
        if COLUMN_TYPES.get(leaf.field) == "bool":
            return [True, False, ABSENT]
        return [_OTHER, ABSENT, 0, False]
    if isinstance(v, SigmaExists):
        return ["present"] if v.exists else [ABSENT]
    if isinstance(v, SigmaNull):
        return [ABSENT]
    if isinstance(v, SigmaBool):
        return [v.boolean]
    if isinstance(v, SigmaNumber):
        return [v.number]
    if isinstance(v, SigmaString):
        plain = "".join("" if p == SpecialChars.WILDCARD_MULTI else "x" if p == SpecialChars.WILDCARD_SINGLE else p
                        for p in v.s if isinstance(p, str | SpecialChars))
        return [plain, plain + "x"]
    if isinstance(v, SigmaRegularExpression):
        return [regex_sample(v.regexp.to_plain())]
    if isinstance(v, SigmaCIDRExpression):
        net = v.network
        return [str(net.network_address + 1) if net.num_addresses > 2 else str(net.network_address)]
    raise StubError(f"value type {type(v).__name__}")


# -- solving ---------------------------------------------------------------------------------


def solve(node, want: bool, env: dict) -> Iterator[dict]:
    """Every assignment (field → value, or ABSENT) extending ``env`` that makes ``node`` ``want``."""
    if isinstance(node, ConditionNOT):
        yield from solve(node.args[0], not want, env)
    elif isinstance(node, ConditionAND | ConditionOR):
        all_of = isinstance(node, ConditionAND) == want  # AND true / OR false: every child
        if all_of:
            yield from _all(node.args, want, env)
        else:
            for arg in node.args:
                yield from solve(arg, want, env)
    elif isinstance(node, ConditionFieldEqualsValueExpression):
        if node.field in env:
            have = env[node.field]
            if matches(node, have) == want:
                yield env
            elif want and isinstance(have, str) and isinstance(node.value, SigmaString):
                for p in proposals(node, True):  # contains|all and friends: one value holding every part
                    for cand in (f"{have}{p}", f"{p}{have}"):
                        if matches(node, cand):
                            yield {**env, node.field: cand}
            return
        for value in proposals(node, want):
            if matches(node, value) == want:
                yield {**env, node.field: value}
    else:
        raise StubError(f"{type(node).__name__} (keyword searches have no field)")


def _all(args, want, env) -> Iterator[dict]:
    if not args:
        yield env
        return
    for e in solve(args[0], want, env):
        yield from _all(args[1:], want, e)


def evaluate(node, env: dict, base: dict) -> bool:
    """The condition's value on the record ``env`` makes of ``base``."""
    if isinstance(node, ConditionNOT):
        return not evaluate(node.args[0], env, base)
    if isinstance(node, ConditionAND):
        return all(evaluate(a, env, base) for a in node.args)
    if isinstance(node, ConditionOR):
        return any(evaluate(a, env, base) for a in node.args)
    value = env[node.field] if node.field in env else get_path(base, node.field)
    return matches(node, ABSENT if value is None else value)


def _checked(node, want, env) -> Iterator[dict]:
    """Solutions re-checked on the whole record: a later leaf may have rewritten a value an earlier
    one chose, and fields no leaf chose keep the base record's values."""
    from pipeline.detect.testing import BASE_EVENT

    for e in solve(node, want, dict(env or {})):
        if evaluate(node, e, BASE_EVENT) == want:
            yield e


def first(node, want: bool, env: dict | None = None) -> dict | None:
    return next(_checked(node, want, env), None)


def solutions(node, want: bool, env: dict | None = None, limit: int = MAX_SOLUTIONS) -> list[dict]:
    out = []
    for e in _checked(node, want, env):
        out.append(e)
        if len(out) >= limit:
            break
    return out


# -- records ---------------------------------------------------------------------------------


def record(env: dict, base: dict) -> dict:
    """The base record with each assigned dotted field set (or removed when ABSENT)."""
    rec = copy.deepcopy(base)
    for path, value in env.items():
        parts = path.split(".")
        node = rec
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        if value is ABSENT:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return rec


def get_path(rec: dict, path: str):
    node = rec
    for p in path.split("."):
        if not isinstance(node, dict) or p not in node:
            return ABSENT
        node = node[p]
    return node
