"""The lake's ``alerts`` table: versioned rows, one current version per alert id.

An alert found again (rerun, overlapping window) with nothing new is not written again; one
that grew (late events) gets a new version row; the ``alerts`` view shows the newest version of
each id. Files: ``alerts/event_date=<window day>/part-<run>.parquet``.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.detect.alerts import ENRICHED, Alert
from pipeline.lake.writer import PARQUET_OPTIONS

TABLE = "alerts"
STATE = "_state/detect.json"
_TS = pa.timestamp("us", tz="UTC")
_STR_LIST = pa.list_(pa.string())
ARROW_SCHEMA = pa.schema([
    ("id", pa.string()), ("rule_id", pa.string()), ("rule_version", pa.int64()), ("title", pa.string()),
    ("severity", pa.string()), ("first_seen", _TS), ("last_seen", _TS), ("event_count", pa.int64()),
    ("account_id", pa.string()), ("region", pa.string()), ("actor", pa.string()),
    ("source_ips", _STR_LIST), ("resources", _STR_LIST), ("tactics", _STR_LIST), ("techniques", _STR_LIST),
    ("practice", pa.string()), ("runbook", pa.string()), ("dedup_key", pa.json_(pa.string())),
    ("window_start", _TS), ("window_end", _TS), ("evidence", pa.json_(pa.string())),
    ("entities", _STR_LIST), ("detected_at", _TS), ("first_detected_at", _TS), ("run_id", pa.string()),
    ("suppressed_by", pa.string()),  # added with suppressions: older files lack it (read as NULL)
    # added with enrichment (docs/enrichment.md): older files lack them (read as NULL)
    ("account_name", pa.string()), ("account_ou", pa.string()), ("src_ip_class", pa.string()),
    ("src_asn", pa.int64()), ("src_as_org", pa.string()), ("src_country", pa.string()),
])


def _row(a: Alert, first_detected: dt.datetime, run_id: str) -> dict:
    d = a.model_dump(mode="json")
    return {
        **{k: getattr(a, k) for k in ("id", "rule_id", "rule_version", "title", "severity", "first_seen", "last_seen",
                                       "event_count", "account_id", "region", "actor", "source_ips", "resources",
                                       "practice", "runbook", "window_start", "window_end", "detected_at", "entities",
                                       "suppressed_by", *ENRICHED)},
        "tactics": a.attack.tactics, "techniques": a.attack.techniques,
        "dedup_key": json.dumps(d["dedup_key"]), "evidence": json.dumps(d["evidence"]),
        "first_detected_at": first_detected, "run_id": run_id,
    }


def row_to_alert(row: dict) -> Alert:
    """An alert back from a row of the ``alerts`` table."""
    return Alert(
        **{k: row[k] for k in ("id", "rule_id", "rule_version", "title", "severity", "first_seen", "last_seen",
                               "event_count", "account_id", "region", "actor", "practice", "runbook",
                               "window_start", "window_end", "detected_at")},
        source_ips=row["source_ips"] or [], resources=row["resources"] or [], entities=row.get("entities") or [],
        attack={"tactics": row["tactics"] or [], "techniques": row["techniques"] or []},
        dedup_key=orjson.loads(row["dedup_key"] or "{}"), evidence=orjson.loads(row["evidence"] or "[]"),
        suppressed_by=row.get("suppressed_by"), **{k: row.get(k) for k in ENRICHED},
    )


def empty_alerts_select() -> str:
    from pipeline.lake.datasets import empty_select

    return empty_select(ARROW_SCHEMA.append(pa.field("event_date", pa.date32())))


def register_alerts_view(con: duckdb.DuckDBPyConnection, lake: str, prefix: str = "") -> None:
    """``alert_versions`` (every version) and ``alerts`` (the newest version of each id)."""
    if lake.startswith("s3://"):
        from pipeline.lake.datasets import dataset_view, s3_dataset

        ds = s3_dataset(lake, TABLE, ARROW_SCHEMA.append(pa.field("event_date", pa.date32())))
        dataset_view(con, f"{prefix}alert_versions", ds, empty_alerts_select())
    else:
        pattern = os.path.join(os.path.abspath(lake), TABLE, "**", "*.parquet")
        if glob.glob(pattern, recursive=True):
            path = pattern.replace("'", "''")
            # Unioned by name with the empty table, so every column of ARROW_SCHEMA exists even
            # when all files predate it (NULL there): files without suppressed_by still read.
            con.execute(
                f"CREATE OR REPLACE VIEW {prefix}alert_versions AS {empty_alerts_select()} UNION ALL BY NAME "
                f"SELECT * FROM read_parquet('{path}', hive_partitioning = true, "
                "hive_types = {'event_date': 'DATE'}, union_by_name = true)"
            )
        else:
            con.execute(f"CREATE OR REPLACE VIEW {prefix}alert_versions AS {empty_alerts_select()}")
    con.execute(
        f"CREATE OR REPLACE VIEW {prefix}alerts AS SELECT * FROM {prefix}alert_versions "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY detected_at DESC) = 1"
    )


def existing(con: duckdb.DuckDBPyConnection, ids: list[str], prefix: str = "",
             days: set[dt.date] | None = None) -> dict[str, dict]:
    """Current versions of these alert ids: id → {event_count, first_seen, last_seen, first_detected_at, suppressed_by}.

    ``days``: the dates of their ``window_start``, which the id is made of, so every version of an
    alert lies in that date's partition: only the partitions from the first to the last of those
    days are read, however long the alerts' history (a scheduled run reads a day or two, not
    years of alert files)."""
    if not ids:
        return {}
    con.register("_wanted_ids", pa.table({"id": ids}))
    where = "id IN (SELECT id FROM _wanted_ids)"
    if days is not None:
        # a range, not a list: it prunes as well for the contiguous days of a scheduled run, and a
        # long list of dates costs more to check than the files it spares
        where += f" AND event_date BETWEEN DATE '{min(days).isoformat()}' AND DATE '{max(days).isoformat()}'"
    rows = con.execute(
        f"SELECT id, event_count, first_seen, last_seen, first_detected_at, suppressed_by FROM {prefix}alert_versions "
        f"WHERE {where} QUALIFY row_number() OVER (PARTITION BY id ORDER BY detected_at DESC) = 1"
    ).fetchall()
    con.unregister("_wanted_ids")
    return {r[0]: {"event_count": r[1], "first_seen": r[2], "last_seen": r[3], "first_detected_at": r[4],
                   "suppressed_by": r[5]} for r in rows}


def write_alerts(store, alerts: list[Alert], known: dict[str, dict], run_id: str) -> tuple[list[Alert], list[Alert]]:
    """Write new and grown alerts as new versions; return (new, updated). Unchanged ones are skipped.

    A change of suppression (an entry added, removed or expired) also writes a new version, so the
    current version says whether the alert is suppressed; not from a narrower re-evaluation,
    which never replaces a fuller version."""
    new, updated, rows = [], [], {}
    for a in alerts:
        old = known.get(a.id)
        if old is None:
            new.append(a)
            first_detected = a.detected_at
        else:
            same = (old["event_count"], old["first_seen"], old["last_seen"]) == (a.event_count, a.first_seen, a.last_seen)
            if same and old.get("suppressed_by") == a.suppressed_by:
                continue
            if not same and (a.event_count <= old["event_count"] and a.last_seen <= old["last_seen"]
                             and a.first_seen >= old["first_seen"]):
                continue  # a narrower re-evaluation (incremental lookback) saw part of it: keep the fuller version
            updated.append(a)
            first_detected = old["first_detected_at"] or a.detected_at
        rows.setdefault(a.window_start.date().isoformat(), []).append(_row(a, first_detected, run_id))
    for day, items in rows.items():
        table = pa.Table.from_pylist(items, schema=ARROW_SCHEMA)
        with store.writing(f"{TABLE}/event_date={day}/part-{run_id}.parquet") as tmp:
            pq.write_table(table, tmp, **{**PARQUET_OPTIONS, "write_statistics": True})
    return new, updated


def load_state(store) -> dict:
    try:
        return orjson.loads(store.get(STATE))
    except (FileNotFoundError, OSError):
        return {}
    except Exception:
        return {}


def save_state(store, state: dict) -> None:
    store.put(STATE, orjson.dumps(state, option=orjson.OPT_INDENT_2))
