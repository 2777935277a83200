"""Alert and incident lifecycle: status, owner, disposition and notes, kept as events in the lake.

Every change is one row of the ``alert_events`` table, written as its own Parquet file
(``alert_events/<time>-<event id>.parquet``) through the store, so the history is an append-only,
queryable log and nothing is ever rewritten. Each event carries the state *after* it (status,
owner, disposition), so the current state of an id is simply its newest event:

* ``alert_events``: every change, for alerts (``kind = 'alert'``) and incidents (``'incident'``);
* ``alert_status`` / ``incident_status``: one row per current alert / incident with its status
  (``new`` when it has no events), owner, disposition and when and by whom it last changed.

Status is not a column of the versioned ``alerts`` rows, so a detect run that writes a new
version of an alert keeps its status by construction. A closed alert that grows, or a closed
incident that changes, is reopened by detect with an event saying so (:func:`reopen_grown`,
:func:`reopen_changed_incidents`).
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import uuid
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import ConfigError, UsageError

TABLE = "alert_events"
KINDS = ("alert", "incident")
STATUSES = ("new", "acknowledged", "in_progress", "closed")
ACTIONS = ("ack", "assign", "start", "close", "reopen", "note")
DISPOSITIONS = ("true_positive", "benign", "false_positive", "duplicate")
#: ``who`` of the events soclake writes itself (an alert reopened because it grew).
SYSTEM = "soclake"
_TS = pa.timestamp("us", tz="UTC")
ARROW_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("kind", pa.string()), ("id", pa.string()), ("changed_at", _TS), ("who", pa.string()),
    ("action", pa.string()), ("status", pa.string()), ("owner", pa.string()), ("disposition", pa.string()),
    ("note", pa.string()),
])


@dataclass
class State:
    """Where an alert or incident stands: from its newest event, or ``new`` without one."""

    status: str = "new"
    owner: str | None = None
    disposition: str | None = None


# --- the table and its views ------------------------------------------------------------------

def register_views(con: duckdb.DuckDBPyConnection, lake: str, prefix: str = "") -> None:
    """``alert_events``, ``alert_status`` and ``incident_status`` (after the alerts and incidents views)."""
    from pipeline.lake.datasets import dataset_view, empty_select, s3_dataset

    name, empty = f"{prefix}alert_events", empty_select(ARROW_SCHEMA)
    if lake.startswith("s3://"):
        dataset_view(con, name, s3_dataset(lake, TABLE, ARROW_SCHEMA), empty)
    else:
        pattern = os.path.join(os.path.abspath(lake), TABLE, "*.parquet")
        source = empty
        if glob.glob(pattern):
            source = f"{empty} UNION ALL BY NAME SELECT * FROM read_parquet('{pattern.replace(chr(39), chr(39) * 2)}')"
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {source}")
    for kind, table in (("alert", "alerts"), ("incident", "incidents")):
        con.execute(
            f"CREATE OR REPLACE VIEW {prefix}{kind}_status AS "
            f"SELECT t.id, coalesce(e.status, 'new') AS status, e.owner, e.disposition, "
            f"e.changed_at AS status_at, e.who AS status_by, e.action AS last_action "
            f"FROM {prefix}{table} t LEFT JOIN (SELECT * FROM {prefix}alert_events WHERE kind = '{kind}' "
            f"QUALIFY row_number() OVER (PARTITION BY id ORDER BY changed_at DESC, event_id DESC) = 1) e USING (id)"
        )


def write_event(store, kind: str, target_id: str, action: str, state: State, who: str,
                note: str | None = None, at: dt.datetime | None = None) -> dict:
    """Append one event (one file, written atomically through the store); returns its row."""
    at = at or dt.datetime.now(dt.UTC)
    row = {"event_id": uuid.uuid4().hex, "kind": kind, "id": target_id, "changed_at": at, "who": who, "action": action,
           "status": state.status, "owner": state.owner, "disposition": state.disposition, "note": note}
    table = pa.Table.from_pylist([row], schema=ARROW_SCHEMA)
    with store.writing(f"{TABLE}/{at:%Y%m%dT%H%M%S%f}-{row['event_id']}.parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return row


def current(con: duckdb.DuckDBPyConnection, kind: str, ids: list[str], prefix: str = "") -> dict[str, State]:
    """The state of these ids (ids without events are absent: they are ``new``)."""
    if not ids:
        return {}
    con.register("_lc_ids", pa.table({"id": ids}))
    try:
        rows = con.execute(
            f"SELECT id, status, owner, disposition FROM {prefix}alert_events WHERE kind = ? "
            "AND id IN (SELECT id FROM _lc_ids) "
            "QUALIFY row_number() OVER (PARTITION BY id ORDER BY changed_at DESC, event_id DESC) = 1", [kind]).fetchall()
    finally:
        con.unregister("_lc_ids")
    return {r[0]: State(r[1], r[2], r[3]) for r in rows}


def history(con: duckdb.DuckDBPyConnection, kind: str, target_id: str) -> list[dict]:
    cur = con.execute("SELECT changed_at, who, action, status, owner, disposition, note FROM alert_events "
                      "WHERE kind = ? AND id = ? ORDER BY changed_at, event_id", [kind, target_id])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def resolve(con: duckdb.DuckDBPyConnection, kind: str, given: str) -> str:
    """The full id of the alert or incident a unique prefix names."""
    table = "alerts" if kind == "alert" else "incidents"
    ids = [r[0] for r in con.execute(f"SELECT id FROM {table} WHERE starts_with(id, ?) ORDER BY id LIMIT 6",
                                     [given.strip().lower()]).fetchall()]
    if not ids:
        raise ConfigError(f"no {kind} with id {given!r} (soclake {table} --lake … lists them)")
    if len(ids) > 1:
        raise ConfigError(f"{given!r} matches more than one {kind} ({', '.join(i[:12] for i in ids[:5])}, …): "
                          "give more of the id")
    return ids[0]


# --- changes ------------------------------------------------------------------------------------

def next_state(before: State, action: str, *, who: str, owner: str | None = None,
               disposition: str | None = None) -> State:
    """The state after ``action``, or an error for a change that makes no sense from ``before``."""
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    if action == "close":
        if disposition not in DISPOSITIONS:
            raise UsageError(f"close needs --disposition {'|'.join(DISPOSITIONS)}")
    elif disposition is not None:
        raise UsageError("--disposition goes with close only")
    if action == "assign" and not owner:
        raise UsageError("assign needs the OWNER")
    closed = before.status == "closed"
    if action == "reopen":
        if not closed:
            raise ConfigError(f"it is not closed (it is {before.status}): nothing to reopen")
        # by a person: looked at already; by soclake (it grew after the close): back in the queue
        return State("new" if who == SYSTEM else "acknowledged", before.owner, None)
    if action == "note":
        return State(before.status, before.owner, before.disposition)
    if closed:
        raise ConfigError(f"it is closed ({before.disposition}): reopen it first")
    if action == "ack":
        if before.status != "new":
            raise ConfigError(f"it is already {before.status}")
        return State("acknowledged", before.owner)
    if action == "assign":  # taking notice of it: a new one becomes acknowledged
        return State("acknowledged" if before.status == "new" else before.status, owner)
    if action == "start":
        if before.status == "in_progress":
            raise ConfigError("it is already in_progress")
        return State("in_progress", before.owner or who)
    return State("closed", before.owner or who, disposition)  # close


def who_default(by: str | None) -> str:
    return by or os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def change(store, con: duckdb.DuckDBPyConnection, kind: str, given_id: str, action: str, *, who: str,
           owner: str | None = None, disposition: str | None = None, note: str | None = None) -> dict:
    """Apply one change to the alert or incident ``given_id`` (a unique prefix) and store its event.
    The caller holds the lake's writer lease."""
    if kind not in KINDS:
        raise UsageError(f"kind must be one of {', '.join(KINDS)}")
    if action == "note" and not note:
        raise UsageError("note needs the TEXT")
    target = resolve(con, kind, given_id)
    before = current(con, kind, [target]).get(target, State())
    try:
        after = next_state(before, action, who=who, owner=owner, disposition=disposition)
    except UsageError:
        raise
    except ConfigError as e:
        raise ConfigError(f"cannot {action} {kind} {target[:12]}: {e}") from None
    return write_event(store, kind, target, action, after, who, note)


def reopen_grown(con: duckdb.DuckDBPyConnection, store, grown: dict[str, str], prefix: str = "") -> list[dict]:
    """Reopen the closed alerts among ``grown`` (alert id → what changed), one event each."""
    events = []
    for alert_id, state in current(con, "alert", sorted(grown), prefix).items():
        if state.status == "closed":
            after = next_state(state, "reopen", who=SYSTEM)
            note = f"reopened automatically: it grew after it was closed as {state.disposition} ({grown[alert_id]})"
            events.append(write_event(store, "alert", alert_id, "reopen", after, SYSTEM, note))
    return events


def reopen_changed_incidents(con: duckdb.DuckDBPyConnection, store, incidents: list, prefix: str = "") -> list[dict]:
    """Reopen the closed incidents that changed after their close (a late alert joined, or one grew):
    ``updated_at`` (the newest version of its alerts) is after the closing event."""
    by_id = {i.id: i for i in incidents if i.updated_at is not None}
    if not by_id:
        return []
    con.register("_lc_ids", pa.table({"id": list(by_id)}))
    try:
        rows = con.execute(
            f"SELECT id, changed_at, status, owner, disposition FROM {prefix}alert_events WHERE kind = 'incident' "
            "AND id IN (SELECT id FROM _lc_ids) "
            "QUALIFY row_number() OVER (PARTITION BY id ORDER BY changed_at DESC, event_id DESC) = 1").fetchall()
    finally:
        con.unregister("_lc_ids")
    events = []
    for inc_id, closed_at, status, owner, disposition in sorted(rows):
        inc = by_id[inc_id]
        if status == "closed" and inc.updated_at > closed_at:
            after = next_state(State(status, owner, disposition), "reopen", who=SYSTEM)
            note = (f"reopened automatically: it changed after it was closed as {disposition} "
                    f"({inc.alert_count} alert{'s' if inc.alert_count != 1 else ''}, last seen {inc.last_seen.isoformat()})")
            events.append(write_event(store, "incident", inc_id, "reopen", after, SYSTEM, note))
    return events
