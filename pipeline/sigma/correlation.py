"""Sigma correlation rules → soclake's ``correlation:`` form (docs/correlation.md).

soclake's correlation keys follow Sigma's, so the mapping is direct: ``type`` stays, each
referenced rule becomes a stage whose ``where`` is that rule's detection as SQL, ``group-by``
fields become output columns (``userIdentity.arn`` → column ``userIdentity_arn``, selected in
every stage through the rule's alias if it has one), ``timespan`` stays (weeks, months and years
in seconds), ``condition`` ``gte``/``gt`` become ``gte`` (``gt: n`` is ``gte: n+1``), and a
``value_count``'s ``condition.field`` becomes ``field``. Conditions soclake does not evaluate
(``lt``, ``lte``, ``eq``, ``neq``, ranges), correlations of correlations and the extended types
are reported unsupported.
"""

from __future__ import annotations

import re

from sigma.correlations import SigmaCorrelationConditionOperator as Op
from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationType
from sigma.rule import SigmaRule

from pipeline.sigma import stubs
from pipeline.sigma.backend import UnknownFieldError, field_sql
from pipeline.sigma.convert import Unsupported, _event, _title, metadata, parsed_condition, rule_id, where_sql

TYPES = {SigmaCorrelationType.EVENT_COUNT: "event_count", SigmaCorrelationType.VALUE_COUNT: "value_count",
         SigmaCorrelationType.TEMPORAL: "temporal", SigmaCorrelationType.TEMPORAL_ORDERED: "temporal_ordered"}


def column(name: str) -> str:
    return re.sub(r"\W+", "_", name).strip("_")


def duration(seconds: int) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % n == 0:
            return f"{seconds // n}{unit}"
    return f"{seconds}s"


def _sql(field: str) -> str:
    try:
        return field_sql(field)
    except UnknownFieldError as e:
        raise Unsupported(str(e)) from None


def _alias_field(c: SigmaCorrelationRule, name: str, member: SigmaRule) -> str:
    alias = c.aliases.aliases.get(name) if c.aliases else None
    if alias is None:
        return name
    for ref, f in alias.mapping.items():
        if getattr(ref, "rule", None) is member:
            return f
    raise Unsupported(f"alias {name!r} has no field for rule {member.title!r}")


def _gte(c: SigmaCorrelationRule) -> int:
    cond = c.condition
    if not hasattr(cond, "op"):
        raise Unsupported("extended correlation conditions are not supported")
    if cond.op == Op.GTE:
        return int(cond.count)
    if cond.op == Op.GT:
        return int(cond.count) + 1
    raise Unsupported(f"condition {cond.op.name.lower()}: soclake correlations count up to a threshold (gte/gt) only")


def correlation_rule(c: SigmaCorrelationRule) -> tuple[dict, list[str]]:
    kind = TYPES.get(c.type)
    if kind is None:
        raise Unsupported(f"correlation type {c.type.name.lower()} is not supported (event_count, value_count, "
                          "temporal, temporal_ordered are)")
    members = [ref.rule for ref in c.rules or []]
    if any(not isinstance(m, SigmaRule) for m in members):
        raise Unsupported("a correlation of correlations is not supported")
    notes: list[str] = []
    group = list(c.group_by or [])
    if not group:
        notes.append("no group-by: grouped by account_id")
    cols = [column(g) for g in group] or ["account_id"]
    stages = []
    for m in members:
        stage = {"name": rule_id(m).removeprefix("sigma_"), "where": where_sql(m)}
        select = {column(g): _sql(_alias_field(c, g, m)) for g in group}
        if kind == "value_count":
            f = c.condition.fieldref
            if not isinstance(f, str):
                raise Unsupported("value_count needs one condition field")
            select[column(f)] = _sql(f)
        if select:
            stage["select"] = select
        stages.append(stage)
    corr = {"type": kind, "group-by": cols, "timespan": duration(int(c.timespan.seconds)), "stages": stages}
    if kind in ("event_count", "value_count"):
        if len(stages) != 1:
            raise Unsupported(f"{kind} over {len(stages)} rules: soclake counts the events of one rule")
        corr["condition"] = {"gte": _gte(c)}
        if kind == "value_count":
            corr["field"] = column(c.condition.fieldref)
    elif len(stages) < 2:
        raise Unsupported(f"{kind} needs at least two rules")
    meta, more, tags = metadata(c, members)
    doc = {**meta,
           "dedup": {"keys": cols, "window": corr["timespan"]},
           "alert_title": _title(c.title, cols, counted=True),
           "correlation": corr,
           "tags": tags}
    try:
        doc["tests"] = correlation_tests(c, kind, members, group)
    except stubs.StubError as e:
        raise Unsupported(f"cannot build a test stub: {e}") from None
    notes += more + ["dedup (the group-by columns per timespan) and alert_title are defaults"]
    return doc, notes


# -- test stubs ---------------------------------------------------------------------------------


def _seed(group: list[str], c, member) -> dict:
    """Group-by fields set to one value in every event (the base record's, else a constant)."""
    from pipeline.detect.testing import BASE_EVENT

    env = {}
    for g in group:
        f = _alias_field(c, g, member)
        have = stubs.get_path(BASE_EVENT, f)
        env[f] = have if have is not stubs.ABSENT and have is not None else f"sigma-test-{column(g)}"
    return env


def _solve(member, env) -> dict:
    sol = stubs.first(parsed_condition(member), True, env)
    if sol is None:
        raise stubs.StubError(f"no event matches {member.title!r} with the group-by values {env}")
    return sol


def correlation_tests(c, kind: str, members: list, group: list[str]) -> list[dict]:
    step = max(1, min(60, int(c.timespan.seconds) // 100))
    if kind in ("event_count", "value_count"):
        n, m = _gte(c), members[0]
        seed = _seed(group, c, m)
        if kind == "event_count":
            envs = [_solve(m, seed)] * n
        else:
            field = c.condition.fieldref
            envs, values = [], set()
            for sol in stubs.solutions(parsed_condition(m), True, seed):
                if field not in sol:  # the detection leaves the counted field free: any distinct values
                    envs = [{**sol, field: f"Value{i}"} for i in range(n)]
                    break
                v = sol[field]
                if v in values:
                    continue
                values.add(v)
                envs.append(sol)
                if len(envs) == n:
                    break
            if len(envs) < n:
                raise stubs.StubError(f"fewer than {n} distinct {field} values satisfy {m.title!r}")
        events = [_event(e, seconds=i * step) for i, e in enumerate(envs)]
        return [
            {"name": f"{n} matching events within {c.timespan.spec} alert once", "alerts": 1, "events": events},
            {"name": f"{n - 1} matching events do not reach the threshold", "alerts": 0, "events": events[: n - 1]},
        ]
    events = []
    for i, m in enumerate(members):
        events.append(_event(_solve(m, _seed(group, c, m)), seconds=i * step))
    return [
        {"name": "every rule's event, in order, within the timespan alerts", "alerts": 1, "events": events},
        {"name": "without the last rule's event there is no alert", "alerts": 0, "events": events[:-1]},
    ]
