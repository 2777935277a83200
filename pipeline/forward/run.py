"""``soclake forward``: deliver what is pending, or show the outbox's status."""

from __future__ import annotations

from pipeline import views
from pipeline.detect.alert_store import row_to_alert
from pipeline.forward.config import load_config
from pipeline.forward.deliver import deliver
from pipeline.forward.incidents import incident_message
from pipeline.forward.outbox import Outbox
from pipeline.forward.registry import build_sink
from pipeline.forward.status import status_messages


def current_alerts(lake: str, incidents: bool = False, status: bool = False) -> list:
    """Current alerts (and, when asked, incidents and lifecycle changes as alert-shaped messages)
    in time order. Suppressed alerts (``suppressed_by`` set) are never forwarded."""
    con = views.connect(lake)
    rows = con.sql("SELECT * FROM alerts WHERE suppressed_by IS NULL ORDER BY first_seen, id").to_arrow_table().to_pylist()
    items = [row_to_alert(r) for r in rows]
    if incidents:
        inc = con.sql("SELECT * FROM incidents ORDER BY first_seen, id").to_arrow_table().to_pylist()
        items += [incident_message(r) for r in inc]
    if status:  # after the alerts they are about, so a sink that takes both gets the alert first
        items += status_messages(con)
    return items


def _messages(lake: str, sink_cfgs) -> list:
    return current_alerts(lake, incidents=any("incidents" in c.streams for c in sink_cfgs),
                          status=any("status" in c.streams for c in sink_cfgs))


def forward(lake: str, store, config_path: str, sleep=None, progress=None) -> list:
    _, sink_cfgs = load_config(config_path)
    if progress:
        progress("reading alerts")
    alerts = _messages(lake, sink_cfgs)
    sinks = [(cfg, build_sink(cfg)) for cfg in sink_cfgs]
    kwargs = {"sleep": sleep} if sleep else {}
    return deliver(alerts, sinks, store, progress=progress, **kwargs)


def status(lake: str, store, config_path: str) -> list[dict]:
    _, sink_cfgs = load_config(config_path)
    alerts = _messages(lake, sink_cfgs)
    out = []
    for cfg in sink_cfgs:
        box = Outbox.load(store, cfg.name)
        routed = [a for a in alerts if cfg.routes(a)]
        out.append({
            "sink": cfg.name, "type": cfg.type, "routed": len(routed),
            "delivered": sum(1 for a in routed if box.delivered.get(a.id) == Outbox.version(a)),
            "pending": sum(1 for a in routed if box.pending(a)),
            "parked": [{"alert": i, **p} for i, p in box.parked.items()],
        })
    return out
