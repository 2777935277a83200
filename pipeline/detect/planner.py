"""Plan a detection run from what the lake holds, not from the calendar.

Row counts per day come from the partitions (Parquet footers); only days heavier than
``budget_rows`` are counted per hour from ``event_time``. Buckets with data are packed into
windows of at most ``budget_rows`` rows, cut at day or hour boundaries: empty spans cost nothing (a window may span years of nothing), sparse days
share a window, a heavy day is split. Windows tile the run's range exactly, so every row and
every match anchor belongs to exactly one window.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import re
from dataclasses import dataclass

DEFAULT_BUDGET_ROWS = 2_000_000
DEFAULT_MEMORY_MB = 256  # DuckDB memory_limit for detection; beyond it DuckDB spills to disk
HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime
    rows: int


def time_filter(start: dt.datetime, end: dt.datetime) -> str:
    """SQL restricting a lake table to [start, end), with partition pruning on event_date."""
    return (f"event_date BETWEEN CAST('{start.date()}' AS DATE) AND CAST('{end.date()}' AS DATE) "
            f"AND event_time >= CAST('{start.isoformat()}' AS TIMESTAMPTZ) "
            f"AND event_time < CAST('{end.isoformat()}' AS TIMESTAMPTZ)")


def day_stats(con, tables: list[str], names_from: str | None = None) -> dict[dt.date, tuple]:
    """Per ``event_date`` of the whole lake: rows, first and last ``event_time`` (over ``tables``),
    and the distinct ``eventName``s of ``names_from`` (one of ``tables``; None when not asked).
    One pass gives the data's range, the day counts :func:`data_counts` needs and the names that
    decide which rules cannot match: on a lake of many small partitions each pass costs opening
    every file."""
    out: dict[dt.date, tuple] = {}
    for t in tables:
        _merge(out, _pass(con, t, t == names_from), t == names_from, names_from is not None)
    return out


def _pass(con, source: str, named: bool) -> list[tuple]:
    """(event_date, rows, first, last, names) groups of one pass over ``source`` (a view, or ``read_parquet``)."""
    if named:
        rows = con.execute(f"SELECT event_date, count(*), min(event_time), max(event_time), eventName FROM {source} "
                           "GROUP BY event_date, eventName").fetchall()
        return [(d, n, lo, hi, {name}) for d, n, lo, hi, name in rows]
    rows = con.execute(f"SELECT event_date, count(*), min(event_time), max(event_time) FROM {source} "
                       "GROUP BY event_date").fetchall()
    return [(d, n, lo, hi, None) for d, n, lo, hi in rows]


def _merge(out: dict, groups, named: bool, with_names: bool) -> None:
    for d, n, lo, hi, names in groups:
        m, a, b, have = out.get(d, (0, None, None, frozenset() if with_names else None))
        out[d] = (m + n, min((x for x in (a, lo) if x is not None), default=None),
                  max((x for x in (b, hi) if x is not None), default=None),
                  have | names if named else have)


_DATE = re.compile(r"/event_date=(\d{4}-\d{2}-\d{2})/")


def lake_day_stats(con, lake: str, tables: tuple[str, ...], named: str | None = None,
                   prefix: str = "lake_") -> dict[dt.date, tuple]:
    """:func:`day_stats` of a lake's tables, from the files' footers where they carry soclake's
    stats (pipeline/lake/file_stats.py: footers are read anyway to bind the views), with one pass
    over only the files that do not. An S3 lake takes the pass over its views."""
    if lake.startswith("s3://"):
        return day_stats(con, [f"{prefix}{t}" for t in tables], names_from=f"{prefix}{named}" if named else None)
    from pipeline import views
    from pipeline.lake import file_stats

    out: dict[dt.date, tuple] = {}
    for t in tables:
        pattern = views.local_pattern(lake, t)
        files = sorted(os.path.normpath(f) for f in glob.glob(pattern, recursive=True))
        if not files:
            continue
        found = {os.path.normpath(f): file_stats.parse(v) for f, v in con.execute(
            f"SELECT file_name, value FROM parquet_kv_metadata('{pattern.replace(chr(39), chr(39) * 2)}') "
            f"WHERE key = '{file_stats.KEY}'::BLOB").fetchall()}
        groups, slow = [], []
        for f in files:
            st, day = found.get(f), _DATE.search(f.replace(os.sep, "/"))
            if st is None or day is None or (t == named and "names" not in st):
                slow.append(f)
            elif st["rows"]:
                groups.append((dt.date.fromisoformat(day.group(1)), st["rows"], st["min"], st["max"],
                               set(st["names"]) if t == named else None))
        if slow:
            groups += _pass(con, views.read_local(slow), t == named)
        _merge(out, groups, t == named, named is not None)
    return out


def day_names(stats: dict[dt.date, tuple], start: dt.datetime, end: dt.datetime) -> set | None:
    """The ``eventName``s of the days [start, end) touches, from :func:`day_stats` with names (None
    without them). A superset of the range's names when it cuts a day: a rule it keeps still runs."""
    days = [s for d, s in stats.items() if d is not None and start.date() <= d <= end.date()]
    if any(len(s) < 4 or s[3] is None for s in days):
        return None
    return set().union(*(s[3] for s in days))


def data_range(stats: dict[dt.date, tuple[int, dt.datetime, dt.datetime]]) -> tuple[dt.datetime | None, dt.datetime | None]:
    """First and last ``event_time`` of :func:`day_stats` (None, None without data)."""
    return (min((s[1] for s in stats.values() if s[1] is not None), default=None),
            max((s[2] for s in stats.values() if s[2] is not None), default=None))


def data_counts(con, tables: list[str], start: dt.datetime, end: dt.datetime,
                budget_rows: int = DEFAULT_BUDGET_ROWS,
                stats: dict[dt.date, tuple[int, dt.datetime, dt.datetime]] | None = None) -> dict[dt.datetime, int]:
    """Rows per bucket in [start, end): a whole UTC day, or an hour for days over ``budget_rows``.

    Day counts come from the partitions alone (row counts in Parquet footers, no column read),
    or from ``stats`` (:func:`day_stats` of the same tables); only a heavy day's ``event_time``
    is read, to cut it by the hour.
    """
    days: dict[dt.date, int] = {}
    if stats is not None:
        days = {d: s[0] for d, s in stats.items() if d is not None and start.date() <= d <= end.date()}
    for t in tables if stats is None else ():
        for d, n in con.execute(
            f"SELECT event_date, count(*) FROM {t} WHERE event_date BETWEEN CAST('{start.date()}' AS DATE) "
            f"AND CAST('{end.date()}' AS DATE) GROUP BY event_date"
        ).fetchall():
            days[d] = days.get(d, 0) + n
    out = {dt.datetime.combine(d, dt.time(), dt.UTC): n for d, n in days.items() if n <= budget_rows}
    for d in (d for d, n in days.items() if n > budget_rows):
        lo = max(start, dt.datetime.combine(d, dt.time(), dt.UTC))
        hi = min(end, lo.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1))
        out.update(hourly_counts(con, tables, lo, hi))
    return out


def hourly_counts(con, tables: list[str], start: dt.datetime, end: dt.datetime) -> dict[dt.datetime, int]:
    """Rows per UTC hour in [start, end), summed over ``tables`` (lake views)."""
    out: dict[dt.datetime, int] = {}
    for t in tables:
        rows = con.execute(
            f"SELECT time_bucket(INTERVAL 1 HOUR, event_time, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS h, "
            f"count(*) FROM {t} WHERE {time_filter(start, end)} GROUP BY h"
        ).fetchall()
        for h, n in rows:
            h = h.astimezone(dt.UTC)
            out[h] = out.get(h, 0) + n
    return out


def plan_windows(counts: dict[dt.datetime, int], start: dt.datetime, end: dt.datetime,
                 budget_rows: int = DEFAULT_BUDGET_ROWS) -> list[Window]:
    """Pack hours into windows of at most ``budget_rows`` rows (an hour over budget stands alone)."""
    if end <= start:
        return []
    cuts: list[tuple[dt.datetime, int]] = []  # (window start, rows)
    acc = 0
    for h in sorted(counts):
        n = counts[h]
        if cuts and acc and acc + n > budget_rows:
            cuts[-1] = (cuts[-1][0], acc)
            cuts.append((max(h, start), 0))
            acc = 0
        elif not cuts:
            cuts.append((start, 0))
        acc += n
    if not cuts:
        return [Window(start, end, 0)]
    cuts[-1] = (cuts[-1][0], acc)
    bounds = [c[0] for c in cuts] + [end]
    return [Window(bounds[i], bounds[i + 1], cuts[i][1]) for i in range(len(cuts)) if bounds[i] < bounds[i + 1]]
