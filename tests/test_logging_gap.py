"""The logging-gap rule aggregates per bucket of its threshold instead of sorting every event:
it must find exactly the silences an event-by-event reading finds."""

import datetime as dt
import random

import duckdb
import pyarrow as pa

from pipeline import views
from pipeline.detect.rules import load_rules

RULE = next(r for r in load_rules() if r.id == "cloudtrail_logging_gap")
LIMIT = dt.timedelta(hours=12)


def _events(seed: int) -> list[tuple[str, dt.datetime, str, str]]:
    rnd = random.Random(seed)
    out, n = [], 0
    for account in ("111111111111", "222222222222"):
        for region in ("us-east-1", "eu-west-1"):
            t = dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=rnd.randrange(600))
            for _ in range(rnd.randrange(20, 60)):
                out.append((f"e{n:05d}", t, account, region))
                n += 1
                # mostly minutes apart, sometimes a silence near or over the 12h threshold
                t += dt.timedelta(minutes=rnd.choice([1, 7, 30, 200, 11 * 60 + 59, 12 * 60 + 1, 30 * 60]))
    return out


def _expected(events) -> set[tuple[str, str]]:
    found, last = set(), max(e[1] for e in events)
    by_stream: dict[tuple[str, str], list] = {}
    for e in sorted(events, key=lambda e: (e[1], e[0])):
        by_stream.setdefault((e[2], e[3]), []).append(e)
    for evs in by_stream.values():
        for prev, cur in zip(evs, evs[1:]):
            if cur[1] - prev[1] > LIMIT:
                found.add((cur[0], "resumed"))
        if last - evs[-1][1] > LIMIT:
            found.add((evs[-1][0], "no events since"))
    return found


def test_bucketed_gaps_equal_the_event_by_event_definition():
    for seed in range(8):
        events = _events(seed)
        table = pa.table({"eventID": [e[0] for e in events], "event_time": [e[1] for e in events],
                          "account_id": [e[2] for e in events], "region": [e[3] for e in events]})
        con = duckdb.connect()
        views.register_arrow(con, {}, prefix="")  # guardduty views, empty
        con.register("_ct", table)
        con.execute("CREATE OR REPLACE VIEW cloudtrail AS SELECT * FROM _ct")
        got = {(r[0], r[1]) for r in con.execute(f"SELECT eventID, status FROM ({RULE.query})").fetchall()}
        assert got == _expected(events), seed
        assert got  # the data has silences
