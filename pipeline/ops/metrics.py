"""CloudWatch Embedded Metric Format (EMF): one JSON line per run step on stdout.

Off by default, so a terminal shows the usual summary; on with ``soclake --metrics emf …``,
``SOCLAKE_METRICS=emf`` or ``metrics: emf`` in the config file (the container's task sets it).
Each line is a log event CloudWatch turns into metrics (namespace ``soclake``, dimension
``Command``) when it reaches CloudWatch Logs through the CloudWatch agent or a FireLens
router; the CloudFormation template also keeps a metric filter on the ``RunsFailed`` field, which
works with the plain awslogs driver. The metric names and units are listed in docs/deploy.md.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

import orjson

NAMESPACE = "soclake"

#: figure in a run summary → (metric name, unit)
METRICS = {
    "ingest": {
        "events_ingested": ("EventsIngested", "Count"),
        "objects_ingested": ("ObjectsIngested", "Count"),
        "objects_quarantined": ("ObjectsQuarantined", "Count"),
        "objects_failed": ("ObjectsFailed", "Count"),
        "records_rejected": ("RecordsRejected", "Count"),
        "bytes_read": ("BytesRead", "Bytes"),
        "lag_seconds": ("LagSeconds", "Seconds"),
    },
    "detect": {
        "alerts_new": ("AlertsNew", "Count"),
        "alerts_updated": ("AlertsUpdated", "Count"),
        "rules_failed": ("RulesFailed", "Count"),
    },
    "forward": {
        "alerts_forwarded": ("AlertsForwarded", "Count"),
        "alerts_parked": ("AlertsParked", "Count"),
        "alerts_left_pending": ("AlertsLeftPending", "Count"),
    },
}
COMMON = {"run_seconds": ("RunSeconds", "Seconds"), "runs_failed": ("RunsFailed", "Count"),
          "runs_partial": ("RunsPartial", "Count")}


def enabled(args) -> bool:
    value = getattr(args, "metrics", None) or os.environ.get("SOCLAKE_METRICS") or ""
    return value.lower() == "emf"


def emf_line(command: str, figures: dict, now: dt.datetime | None = None, namespace: str = NAMESPACE) -> str:
    """One EMF document for a step: the known numeric figures become metrics, ``Command`` the dimension."""
    now = now or dt.datetime.now(dt.UTC)
    names = {**METRICS.get(command, {}), **COMMON}
    values = {m: figures[k] for k, (m, _) in names.items() if isinstance(figures.get(k), int | float)}
    doc = {
        "_aws": {
            "Timestamp": int(now.timestamp() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Command"]],
                "Metrics": [{"Name": m, "Unit": u} for k, (m, u) in names.items() if m in values],
            }],
        },
        "Command": command,
        **values,
    }
    for k in ("run_id", "outcome", "error"):
        if figures.get(k) is not None:
            doc[k] = figures[k]
    return orjson.dumps(doc).decode()


def emit(args, cur, steps, seconds: float, out=None) -> None:
    """Print one EMF line per step when metrics are on."""
    if not enabled(args):
        return
    out = out or sys.stdout
    for s in steps:
        figures = {**s.figures, "outcome": s.outcome, "run_seconds": round(seconds, 3),
                   "runs_failed": int(s.outcome == "error"), "runs_partial": int(s.outcome == "partial")}
        if s.kind == "ingest" and cur.lake and s.outcome != "error":
            figures.setdefault("lag_seconds", _lag(cur.lake))
        print(emf_line(s.kind, figures), file=out, flush=True)


def _lag(lake: str) -> float | None:
    """Seconds between now and the newest CloudTrail event in the lake (None when it holds none)."""
    try:
        from pipeline.ops.freshness import newest_events

        newest = [t for (_svc, _acct, _reg), t in newest_events(lake).items() if t is not None]
    except Exception:  # noqa: BLE001 - a metric must not fail a run
        return None
    if not newest:
        return None
    return round((dt.datetime.now(dt.UTC) - max(newest)).total_seconds(), 1)
