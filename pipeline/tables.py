"""One way to print rows for every listing command: a rich table, JSON, JSON Lines or CSV.

Tables fit the terminal (or ``COLUMNS``), with colour only on a terminal; piped, they are plain
text, uncut unless ``COLUMNS`` is set. Times are RFC 3339 (``2026-11-05T10:00:00Z``) in every format.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sys
from collections.abc import Callable, Sequence

#: (key in the row, column header) or (key, header, formatter of the value for the table)
Column = tuple


def rfc3339(v) -> str:
    """A time as RFC 3339 in UTC with ``Z`` (also from an ISO 8601 string, as JSON columns hold them);
    dates as YYYY-MM-DD; ``None`` as ``-``."""
    if v is None:
        return "-"
    if isinstance(v, str) and len(v) > 10:
        try:
            v = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return v
    if isinstance(v, dt.datetime):
        v = v.astimezone(dt.UTC) if v.tzinfo else v.replace(tzinfo=dt.UTC)
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v)


def _plain(v) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.date):
        return rfc3339(v)
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=_default, separators=(",", ":"))
    return str(v)


def _default(v):
    if isinstance(v, (dt.date, dt.datetime)):
        return rfc3339(v)
    if isinstance(v, (set, frozenset)):
        return sorted(v)
    return str(v)


def to_json(data, indent: int | None = 2) -> str:
    """JSON with times in RFC 3339 (UTC, ``Z``)."""
    return json.dumps(data, indent=indent, default=_default)


def width(stream=None) -> int | None:
    """The width to fit: ``COLUMNS``, else the terminal's, else none (piped: lines are not cut)."""
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        return int(cols)
    stream = stream or sys.stdout
    if stream.isatty():
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except OSError:
            return 80
    return None


def table_text(rows: Sequence[dict], columns: Sequence[Column], *, stream=None) -> str:
    """The rows as a rich table; colour and borders on a terminal, plain columns when piped."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    stream = stream or sys.stdout
    tty = stream.isatty()
    fit = width(stream)
    table = Table(box=box.SIMPLE_HEAD if tty else None, show_edge=False, pad_edge=False,
                  header_style="bold" if tty else "", collapse_padding=not tty)
    cells = [[col[2](r.get(col[0])) if len(col) > 2 else _plain(r.get(col[0])) for col in columns] for r in rows]
    widths = [max([len(col[1]), *(len(c[i]) for c in cells)]) for i, col in enumerate(columns)]
    last_width = None
    if fit:  # never drop a column: the others keep their width, the last gets what is left (at least 12)
        last_width = max(12, fit - sum(widths[:-1]) - 3 * len(widths))
    for i, col in enumerate(columns):
        last = i == len(columns) - 1  # the last column (a title, a practice) gives way to a narrow terminal
        table.add_column(col[1], overflow="ellipsis" if fit and last else "ignore", no_wrap=True,
                         min_width=None if last else widths[i], max_width=last_width if last else None)
    for row in cells:
        table.add_row(*map(Text, row))
    buf = io.StringIO()
    console = Console(file=buf, width=100_000, force_terminal=tty, color_system="auto" if tty else None,
                      highlight=False, soft_wrap=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


def emit(rows: Sequence[dict], fmt: str, columns: Sequence[Column], *, empty: str = "no rows",
         footer: Callable[[int], str] | None = None, fields: Sequence[str] | None = None) -> None:
    """Print ``rows`` as ``fmt`` (table, json, jsonl, csv). JSON, JSON Lines and CSV carry every field."""
    out = sys.stdout
    if fmt == "json":
        out.write(to_json(list(rows)) + "\n")
    elif fmt == "jsonl":
        for r in rows:
            out.write(to_json(r, indent=None) + "\n")
    elif fmt == "csv":
        # no rows still gives the header (from the table's columns), so a CSV reader sees the shape
        names = list(fields or dict.fromkeys(k for r in rows for k in r) or (c[0] for c in columns))
        w = csv.writer(out, lineterminator="\n")
        w.writerow(names)
        for r in rows:
            w.writerow([_plain(r.get(k)) for k in names])
    elif not rows:
        out.write(empty + "\n")
    else:
        out.write(table_text(rows, columns) + "\n")
        if footer:
            out.write(footer(len(rows)) + "\n")
