"""How fresh the lake is: the newest event per source (service x account x region).

Read by ``soclake status`` (staleness, ``--max-lag``) and by the run metrics (lag), from the log
tables themselves rather than the ledger: a delivered object may hold only old events.
"""

from __future__ import annotations

import datetime as dt

from pipeline import layout


def newest_events(lake: str, con=None) -> dict[tuple[str, str, str], dt.datetime]:
    """(service, account, region) → the newest event time in the lake's log tables."""
    from pipeline import views

    con = con or views.connect(lake)
    out = {}
    for service in (layout.CLOUDTRAIL, layout.GUARDDUTY):
        rows = con.execute(f"SELECT account_id, region, max(event_time) FROM {service} GROUP BY ALL").fetchall()
        for account, region, newest in rows:
            out[(service, account, region)] = newest.astimezone(dt.UTC) if newest else None
    return out
