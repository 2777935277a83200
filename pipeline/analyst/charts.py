"""Inline SVG charts for the HTML report, drawn in plain Python.

Why by hand: the report must be one file that opens anywhere with no network, so no JS chart
library, no web fonts. The three shapes it needs (stacked columns over time, stacked horizontal
bars, an incident's lane timeline) are simple SVG. Every label passes through ``esc`` because
most of them come from the logs (alert titles, user names, IPs) and are attacker-controlled.
"""

from __future__ import annotations

import datetime as dt
import html
import math

SEVERITIES = ("critical", "high", "medium", "low", "info")
COLORS = {"critical": "#7b1fa2", "high": "#d32f2f", "medium": "#f57c00", "low": "#fbc02d", "info": "#9e9e9e"}
#: Text drawn on top of a severity colour: white reads badly on the yellow of "low".
INK = {"critical": "#fff", "high": "#fff", "medium": "#fff", "low": "#3e2f00", "info": "#fff"}
AXIS, GRID, MUTED = "#52606d", "#e4e7eb", "#7b8794"


def esc(value) -> str:
    """HTML-escape anything (quotes too: the result also goes into attribute values)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(n: float) -> str:
    return f"{int(n):,}"


def _svg(css_class: str, width: int, height: int, body: list[str], label: str) -> str:
    return (f'<svg class="chart {esc(css_class)}" role="img" aria-label="{esc(label)}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}">' + "".join(body) + "</svg>")


def _clip(text: str, chars: int) -> str:
    """Shorten for a label: an ARN from the left (account and name stay), anything else in the middle."""
    from pipeline.analyst.console import shorten

    return shorten(text, chars)


def nice_step(raw: float) -> int:
    """The smallest round step (1, 2 or 5 × 10^k, at least 1: counts are whole) not below ``raw``."""
    if raw <= 1:
        return 1
    mag = 10 ** math.floor(math.log10(raw))
    return int(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw - 1e-9))


def nice_ticks(top: float, count: int = 4) -> list[int]:
    """0 and round, equal steps up to the first tick at or above ``top``, at most ``count`` + 1 of them
    (Heckbert's nice numbers, restricted to whole steps so every label is exactly its tick's value)."""
    if top <= 0:
        return [0, 1]
    step = nice_step(top / count)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def legend(keys=SEVERITIES, colors=COLORS) -> str:
    items = "".join(f'<span class="key"><i style="background:{colors[k]}"></i>{esc(k)}</span>' for k in keys)
    return f'<div class="legend">{items}</div>'


def empty(css_class: str, message: str, width: int = 560, height: int = 60) -> str:
    body = [f'<text x="{width / 2}" y="{height / 2 + 5}" text-anchor="middle" fill="{MUTED}" font-size="14">'
            f"{esc(message)}</text>"]
    return _svg(css_class + " empty", width, height, body, message)


def stacked_columns(ticks: list[str | None], series: dict[str, list[int]], *, css_class: str, tips: list[str] | None = None,
                    colors=COLORS, width: int = 1160, height: int = 240, unit: str = "alerts") -> str:
    """Vertical stacked columns, one per time bucket, stacked in ``series`` order.

    ``ticks`` holds each bucket's axis label, or None for no tick; ``tips`` the hover text.
    """
    labels = tips or [t or "" for t in ticks]
    if not labels or not any(any(v) for v in series.values()):
        return empty(css_class, f"no {unit} in this period", width)
    left, right, top, bottom = 52, 12, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(series[k][i] for k in series) for i in range(len(labels))]
    yticks = nice_ticks(max(totals))
    ymax = yticks[-1]
    body = []
    for t in yticks:
        y = top + plot_h - plot_h * t / ymax
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(f'<text class="ytick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                    f'fill="{AXIS}">{fmt(t)}</text>')
    slot = plot_w / len(labels)
    bar = max(1.0, slot * 0.78)
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        for key, values in series.items():
            n = values[i]
            if not n:
                continue
            h = plot_h * n / ymax
            y -= h
            body.append(f'<rect class="seg sev-{esc(key)}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                        f'fill="{colors.get(key, MUTED)}"><title>{esc(label)}: {fmt(n)} {esc(key)} {esc(unit)}</title></rect>')
        if ticks[i] is not None:
            cx = left + i * slot + slot / 2
            body.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}" stroke="{AXIS}"/>')
            body.append(f'<text x="{cx:.1f}" y="{top + plot_h + 17}" text-anchor="middle" font-size="11" '
                        f'fill="{AXIS}">{esc(ticks[i])}</text>')
    body.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{AXIS}"/>')
    return _svg(css_class, width, height, body, f"{unit} over time")


def stacked_bars(rows: list[tuple[str, dict[str, int]]], *, css_class: str, colors=COLORS, width: int = 560,
                 label_width: int = 200, bar_h: int = 20, unit: str = "alerts") -> str:
    """Horizontal stacked bars with the label on the left and the total at the end of the bar."""
    if not rows:
        return empty(css_class, f"no {unit}", width)
    gap, top, total_w = 8, 6, 56
    plot_w = width - label_width - total_w
    biggest = max(sum(parts.values()) for _, parts in rows) or 1
    height = top * 2 + len(rows) * (bar_h + gap)
    chars = int(label_width / 7.8)
    body = []
    for i, (label, parts) in enumerate(rows):
        y = top + i * (bar_h + gap)
        total = sum(parts.values())
        body.append(f'<g class="row"><title>{esc(label)}: {fmt(total)} {esc(unit)}</title>')
        body.append(f'<text x="{label_width - 8}" y="{y + bar_h * 0.7:.1f}" text-anchor="end" font-size="12" '
                    f'fill="#1f2933">{esc(_clip(str(label), chars))}</text>')
        x = float(label_width)
        for key in [k for k in colors if k in parts] + [k for k in parts if k not in colors]:
            n = parts[key]
            if not n:
                continue
            w = max(1.5, plot_w * n / biggest)
            body.append(f'<rect class="seg sev-{esc(key)}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                        f'fill="{colors.get(key, MUTED)}"><title>{esc(label)}: {fmt(n)} {esc(key)}</title></rect>')
            x += w
        body.append(f'<text x="{x + 6:.1f}" y="{y + bar_h * 0.7:.1f}" font-size="12" fill="{AXIS}">{fmt(total)}</text></g>')
    return _svg(css_class, width, height, body, f"{unit} by {css_class}")


_STEPS = [60 * m for m in (1, 2, 5, 10, 15, 30)] + [3600 * h for h in (1, 2, 3, 6, 12)] + [86400 * d for d in (1, 2, 7, 14, 30)]


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def timeline(items: list[dict], *, css_class: str = "incident-timeline", width: int = 1160, label_width: int = 290) -> str:
    """One lane per rule, each alert a numbered marker at its first_seen and a bar to its last_seen.

    ``items`` are dicts with ``lane``, ``start``, ``end`` (datetimes), ``severity``, ``label``
    (tooltip) and ``n`` (the number shown, matching the table under the chart). Markers that
    would cover each other in a lane go to a second row of that lane rather than overlap.
    """
    if not items:
        return empty(css_class, "no alerts", width)
    items = sorted(items, key=lambda i: _utc(i["start"]))
    lanes = list(dict.fromkeys(i["lane"] for i in items))
    t0 = min(_utc(i["start"]) for i in items)
    t1 = max(_utc(i["end"] or i["start"]) for i in items)
    span = max((t1 - t0).total_seconds(), 120.0)
    pad = span * 0.04
    lo, hi = t0 - dt.timedelta(seconds=pad), t0 + dt.timedelta(seconds=span + pad)
    row_h, top, axis_h, right = 22, 8, 34, 24
    plot_w = width - label_width - right

    def x(t: dt.datetime) -> float:
        return label_width + plot_w * (_utc(t) - lo).total_seconds() / (hi - lo).total_seconds()

    rows_end: dict[str, list[float]] = {lane: [] for lane in lanes}  # per lane, per row: right edge of its last marker
    placed = []
    for item in items:
        xs, xe = x(item["start"]), x(item["end"] or item["start"])
        ends = rows_end[item["lane"]]
        row = next((r for r, end in enumerate(ends) if xs - end >= 20), len(ends))
        if row == len(ends):
            ends.append(0.0)
        ends[row] = max(xs, xe) if xe - xs > 4 else xs
        placed.append((item, xs, xe, row))
    lane_top, y = {}, top
    for lane in lanes:
        lane_top[lane] = y
        y += 8 + row_h * len(rows_end[lane])
    axis_y, height = y, y + axis_h
    body = []
    for k, lane in enumerate(lanes):
        ly, lh = lane_top[lane], 8 + row_h * len(rows_end[lane])
        if k % 2 == 0:
            body.append(f'<rect x="{label_width}" y="{ly}" width="{plot_w}" height="{lh}" fill="#f7f8fa"/>')
        body.append(f'<text x="{label_width - 10}" y="{ly + 4 + row_h / 2 + 4}" text-anchor="end" font-size="12" '
                    f'fill="#1f2933"><title>{esc(lane)}</title>{esc(_clip(str(lane), int(label_width / 7.8)))}</text>')
    step = next((s for s in _STEPS if (hi - lo).total_seconds() / s <= 9), _STEPS[-1])
    tick = dt.datetime.fromtimestamp(math.ceil(lo.timestamp() / step) * step, dt.UTC)
    last_day = None
    while tick <= hi:
        tx = x(tick)
        body.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top}" y2="{axis_y + 4}" stroke="{GRID}"/>')
        label = tick.strftime("%H:%M") if step < 86400 else tick.strftime("%b %d")
        if step < 86400 and tick.date() != last_day:
            label = tick.strftime("%b %d %H:%M")
        last_day = tick.date()
        body.append(f'<text x="{tx:.1f}" y="{axis_y + 18}" text-anchor="middle" font-size="11" fill="{AXIS}">{esc(label)}</text>')
        tick += dt.timedelta(seconds=step)
    body.append(f'<line x1="{label_width}" x2="{width - right}" y1="{axis_y}" y2="{axis_y}" stroke="{AXIS}"/>')
    for item, xs, xe, row in placed:
        sev = item["severity"]
        color, ink = COLORS.get(sev, MUTED), INK.get(sev, "#fff")
        cy = lane_top[item["lane"]] + 4 + row * row_h + row_h / 2
        body.append(f'<g class="alert-mark sev-{esc(sev)}"><title>{esc(item["label"])}</title>')
        if xe - xs > 4:
            body.append(f'<rect x="{xs:.1f}" y="{cy - 4:.1f}" width="{xe - xs:.1f}" height="8" rx="4" fill="{color}" opacity="0.45"/>')
        body.append(f'<circle cx="{xs:.1f}" cy="{cy:.1f}" r="9" fill="{color}" stroke="#fff" stroke-width="1.5"/>')
        body.append(f'<text x="{xs:.1f}" y="{cy + 3.5:.1f}" text-anchor="middle" font-size="10" font-weight="700" '
                    f'fill="{ink}">{esc(item["n"])}</text></g>')
    return _svg(css_class, width, height, body, "incident timeline")
