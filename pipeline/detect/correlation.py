"""Correlation rules: thresholds and sequences over events, declared like Sigma correlations
and compiled to one DuckDB query.

```yaml
correlation:
  type: temporal_ordered        # event_count | value_count | temporal | temporal_ordered
  group-by: [user]              # the entity the events must share
  timespan: 10m                 # sliding: the whole pattern fits in this span, ending at its last event
  stages:                       # what events count (event_count/value_count take one stage)
    - name: failures
      table: cloudtrail         # or guardduty / guardduty_latest; or `query:` with full SQL
      where: "eventName = 'ConsoleLogin' AND errorMessage = 'Failed authentication'"
      select: {user: "userIdentity.userName"}
      min: 10                   # this stage needs at least 10 events (default 1)
    - name: success
      where: "eventName = 'ConsoleLogin' AND responseElements->>'$.ConsoleLogin' = 'Success'"
      select: {user: "userIdentity.userName"}
  condition: {gte: 10}          # event_count / value_count: how many (distinct `field` values)
  field: eventName              # value_count only
```

Window semantics (documented in docs/correlation.md): every window is *sliding* and anchored on
an event: the pattern is found at the moment its last event happens, looking back `timespan`.
``temporal_ordered`` needs each stage's events in order (stage k's qualifying events no later
than stage k+1's), ``temporal`` only that all stages occur within the span. Each match returns
the entity, first_seen, last_seen, event_count and event_ids; the rule's dedup turns the
overlapping matches of one burst into one alert.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.detect.rules_base import parse_duration

_IDS = {"cloudtrail": "eventID", "guardduty": "id", "guardduty_latest": "id"}
_DEFAULTS = {
    "cloudtrail": {"account_id": "account_id", "region": "region", "actor": "actor", "source_ip": "sourceIPAddress"},
    "guardduty": {"account_id": "account_id", "region": "region", "actor": "actor", "source_ip": "remote_ip"},
}
_CARRY = ("account_id", "region", "actor", "source_ip")


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str
    table: Literal["cloudtrail", "guardduty", "guardduty_latest"] = "cloudtrail"
    where: str | None = None
    select: dict[str, str] = Field(default_factory=dict, description="output column → SQL expression")
    query: str | None = Field(None, description="full SQL instead of table/where/select: must return event_time, event_id and the group-by columns")
    min: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _one_source(self):
        if self.query and (self.where or self.select):
            raise ValueError("a stage has either `query` or `table`/`where`/`select`, not both")
        return self


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    gte: int = Field(ge=1)


class Correlation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    type: Literal["event_count", "value_count", "temporal", "temporal_ordered"]
    group_by: list[str] = Field(alias="group-by", min_length=1)
    timespan: str
    stages: list[Stage] = Field(min_length=1)
    condition: Condition | None = None
    field: str | None = None

    @model_validator(mode="after")
    def _shape(self):
        parse_duration(self.timespan)
        if self.type in ("event_count", "value_count"):
            if len(self.stages) != 1 or self.condition is None:
                raise ValueError(f"{self.type} takes exactly one stage and a condition (gte)")
            if self.type == "value_count" and not self.field:
                raise ValueError("value_count needs `field`: the column whose distinct values are counted")
        elif len(self.stages) < 2:
            raise ValueError(f"{self.type} needs at least two stages")
        return self


def _interval(timespan: str) -> str:
    return f"INTERVAL {int(parse_duration(timespan).total_seconds())} SECOND"


def _stage_sql(st: Stage, cols: list[str]) -> str:
    if st.query:
        return f"SELECT * FROM ({st.query})"
    base = "guardduty" if st.table.startswith("guardduty") else "cloudtrail"
    exprs = {**_DEFAULTS[base], **st.select}
    parts = [f"{exprs.get(c, c)} AS \"{c}\"" for c in cols]
    parts += ["event_time", f"{_IDS[st.table]} AS event_id"]
    where = f" WHERE {st.where}" if st.where else ""
    return f"SELECT {', '.join(parts)} FROM {st.table}{where}"


def compile_sql(c: Correlation) -> str:
    """The correlation as one DuckDB query returning one row per match (see module docstring)."""
    cols = list(dict.fromkeys(c.group_by + list(_CARRY) + ([c.field] if c.field else [])))
    span = _interval(c.timespan)
    ctes = [f"s{i} AS ({_stage_sql(st, cols)})" for i, st in enumerate(c.stages)]
    same = " AND ".join(f's."{g}" = x."{g}"' for g in c.group_by)
    groups = ", ".join(f'x."{g}"' for g in c.group_by)
    carry = ", ".join(f'x."{g}"' for g in _CARRY if g not in c.group_by)
    out_cols = f"{groups}, {carry}" if carry else groups
    if c.type in ("event_count", "value_count"):
        measure = "count(*)" if c.type == "event_count" else f'count(DISTINCT s."{c.field}")'
        # A window count first (one sorted pass per group), so the per-anchor LATERAL that lists
        # the events runs only for anchors that cross the threshold: exact, and linear in the
        # group instead of quadratic.
        over = "count(*)" if c.type == "event_count" else f'count(DISTINCT "{c.field}")'
        parts = ", ".join(f'"{g}"' for g in c.group_by)
        # Groups that do not reach the threshold over the whole input cannot reach it in any
        # span: one hash aggregate drops them before the (costlier) sliding-window count.
        ctes.append(f"g AS (SELECT {parts} FROM s0 GROUP BY ALL HAVING {over} >= {c.condition.gte})")
        ctes.append(f"s0g AS (SELECT * FROM s0 SEMI JOIN g USING ({parts}))")
        ctes.append(
            f"hot AS (SELECT * FROM (SELECT *, {over} OVER (PARTITION BY {parts} ORDER BY event_time "
            f"RANGE BETWEEN {span} PRECEDING AND CURRENT ROW) AS _n FROM s0g) WHERE _n >= {c.condition.gte})"
        )
        ctes.append(
            f"m AS (SELECT x.* EXCLUDE (_n), l.n, l.ids, l.first_seen FROM hot x, LATERAL (SELECT {measure} AS n, "
            f"list(s.event_id ORDER BY s.event_time) AS ids, min(s.event_time) AS first_seen FROM s0 s "
            f"WHERE {same} AND s.event_time <= x.event_time AND s.event_time >= x.event_time - {span}) l "
            f"WHERE l.n >= {c.condition.gte})"
        )
        return (f"WITH {', '.join(ctes)}\nSELECT {out_cols}, x.first_seen, x.event_time AS last_seen, "
                f"len(x.ids) AS event_count, x.ids AS event_ids, x.n AS matched FROM m x")
    n = len(c.stages)
    if c.type == "temporal_ordered":
        # Anchor on each last-stage event; walk back stage by stage taking, for stage k, the
        # latest time by which it has `min` events (no later than stage k+1's time): greedy
        # latest-first leaves the most room for the earlier stages.
        ctes.append(f"a{n - 1} AS (SELECT x.*, x.event_time AS t{n - 1}, [x.event_id] AS ids{n - 1} FROM s{n - 1} x)")
        for k in range(n - 2, -1, -1):
            m = c.stages[k].min
            ctes.append(
                f"a{k} AS (SELECT x.*, l.t AS t{k}, l.ids AS ids{k} FROM a{k + 1} x, LATERAL ("
                f"SELECT list(s.event_time ORDER BY s.event_time DESC)[{m}] AS t, list(s.event_id ORDER BY s.event_time) AS ids "
                f"FROM s{k} s WHERE {same} AND s.event_time <= x.t{k + 1} AND s.event_time >= x.t{n - 1} - {span}) l "
                f"WHERE l.t IS NOT NULL)"
            )
        ids = " || ".join(f"x.ids{k}" for k in range(n))
        return (f"WITH {', '.join(ctes)}\nSELECT {out_cols}, x.t0 AS first_seen, x.t{n - 1} AS last_seen, "
                f"len(list_distinct({ids})) AS event_count, list_distinct({ids}) AS event_ids FROM a0 x")
    # temporal: anchor on any stage's event; every stage needs `min` events in the span before it.
    union = " UNION ALL BY NAME ".join(f"SELECT * FROM s{i}" for i in range(n))  # stages may order columns differently
    ctes.append(f"anchor AS ({union})")
    laterals, checks, lists = [], [], []
    for k, st in enumerate(c.stages):
        laterals.append(
            f"LATERAL (SELECT count(*) AS n, min(s.event_time) AS f, list(s.event_id) AS ids FROM s{k} s "
            f"WHERE {same} AND s.event_time <= x.event_time AND s.event_time >= x.event_time - {span}) l{k}"
        )
        checks.append(f"l{k}.n >= {st.min}")
        lists.append(f"l{k}.ids")
    firsts = ", ".join(f"l{k}.f" for k in range(n))
    ids = " || ".join(lists)
    return (f"WITH {', '.join(ctes)}\nSELECT {out_cols}, least({firsts}) AS first_seen, x.event_time AS last_seen, "
            f"len(list_distinct({ids})) AS event_count, list_distinct({ids}) AS event_ids "
            f"FROM anchor x, {', '.join(laterals)} WHERE {' AND '.join(checks)}")
