"""``soclake report``: one self-contained HTML page of what the lake's detections found.

Why a single static file: an analyst mails it, attaches it to a ticket or opens it on an
air-gapped workstation. So everything is inline (CSS, SVG charts drawn in Python by
``charts``, one small script that sorts and filters tables, from ``tables``), nothing is
fetched, and a Content-Security-Policy allows that one script by its hash and no remote load.
Alert titles, actors and IPs come from the logs, i.e. from attackers: every string is escaped,
and the CSP is the second fence should one ever slip through. Links (to the AWS console, built
by ``console``) are the only URLs in the page.

``collect`` queries the lake (``pipeline.views``); ``render`` turns that dict into HTML, so
tests can feed it hostile strings directly; ``write_report`` does both (``make demo`` calls it).
"""

from __future__ import annotations

import datetime as dt
import json
import os

from pipeline.analyst import charts, report_data, report_html, tables
from pipeline.analyst.charts import COLORS, SEVERITIES, esc, fmt
from pipeline.detect.coverage import attack_table
from pipeline.errors import ConfigError

SEV_RANK = ("CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 "
            "WHEN 'low' THEN 3 ELSE 4 END")
#: Bucket width of the time charts by span of the data: (max span, unit, tick steps to pick from).
BUCKETS = ((dt.timedelta(days=4), "hour", (1, 2, 3, 6, 12)), (dt.timedelta(days=120), "day", (1, 2, 7, 14)),
           (dt.timedelta.max, "week", (1, 2, 4, 8, 13)))


def _since(value) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    try:
        return _since(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        raise ConfigError(f"--since {value!r} is not a time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]Z") from None


def _where(col: str, since, date_col: str | None = None) -> tuple[str, list]:
    if since is None:
        return "", []
    if date_col:  # prune partitions too
        return f" WHERE {date_col} >= ?::DATE AND {col} >= ?", [since.date(), since]
    return f" WHERE {col} >= ?", [since]


def _breakdown(con, expr: str, since, limit: int) -> list[tuple[str, dict[str, int]]]:
    """Top ``limit`` values of ``expr`` over the alerts, each with its count per severity."""
    w, p = _where("last_seen", since)
    rows = con.execute(
        f"WITH a AS (SELECT {expr} AS k, severity FROM alerts{w}), "
        f"top AS (SELECT k, count(*) AS n FROM a WHERE k IS NOT NULL AND k <> '' GROUP BY k ORDER BY n DESC, k LIMIT {int(limit)}) "
        "SELECT a.k, a.severity, count(*), any_value(top.n) FROM a JOIN top USING (k) GROUP BY ALL", p).fetchall()
    out: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for k, sev, n, total in rows:
        out.setdefault(k, {})[sev] = n
        totals[k] = total
    return [(k, out[k]) for k in sorted(out, key=lambda k: (-totals[k], k))]


def _buckets(lo: dt.datetime, hi: dt.datetime):
    """Every bucket from lo to hi: (unit, starts, tooltip labels, axis tick labels or None)."""
    unit, steps = next((u, s) for span, u, s in BUCKETS if hi - lo <= span)
    if unit == "hour":
        start, width = lo.replace(minute=0, second=0, microsecond=0), dt.timedelta(hours=1)
    else:
        start, width = lo.replace(hour=0, minute=0, second=0, microsecond=0), dt.timedelta(days=1 if unit == "day" else 7)
        if unit == "week":
            start -= dt.timedelta(days=start.weekday())  # DuckDB weeks start on Monday
    starts = []
    while start <= hi:
        starts.append(start)
        start += width
    every = next((s for s in steps if len(starts) / s <= 14), steps[-1])
    ticks, last_day = [], None
    for i, s in enumerate(starts):
        if unit == "hour":
            labels_on = s.hour % every == 0
            ticks.append((s.strftime("%b %d") if s.date() != last_day else s.strftime("%H:%M")) if labels_on else None)
            last_day = s.date() if labels_on else last_day
        else:
            ticks.append(s.strftime("%b %d") if i % every == 0 else None)
    fmt_tip = "%Y-%m-%d %H:00" if unit == "hour" else ("%Y-%m-%d" if unit == "day" else "week of %Y-%m-%d")
    return unit, starts, [s.strftime(fmt_tip) + " UTC" * (unit == "hour") for s in starts], ticks


def _series(con, sql: str, params: list, starts: list[dt.datetime], keys=SEVERITIES) -> dict[str, list[int]]:
    index = {s: i for i, s in enumerate(starts)}
    out = {k: [0] * len(starts) for k in keys}
    for bucket, key, n in con.execute(sql, params).fetchall():
        bucket = bucket if bucket.tzinfo else bucket.replace(tzinfo=dt.UTC)
        if key in out and bucket in index:
            out[key][index[bucket]] += n
    return out


def _dt(value) -> dt.datetime:
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def collect(con, since=None, max_incidents: int = 50, catalogue=None, max_alerts: int = 1000) -> dict:
    """Everything the page shows, from a connection with the lake's views (``views.connect``).
    ``catalogue`` (the rules, for the ATT&CK coverage view) defaults to the built-in one."""
    since = _since(since)
    con.execute("SET TimeZone = 'UTC'")  # buckets and labels in UTC, like every time soclake prints
    ct_w, ct_p = _where("event_time", since, "event_date")
    events, first_event, last_event, accounts = con.execute(
        f"SELECT count(*), min(event_time), max(event_time), count(DISTINCT account_id) FROM cloudtrail{ct_w}", ct_p).fetchone()
    gd_w, gd_p = _where("event_time", since)
    findings = con.execute(f"SELECT count(*) FROM guardduty_latest{gd_w}", gd_p).fetchone()[0]
    al_w, al_p = _where("last_seen", since)
    alerts, rules, a_lo, a_hi = con.execute(
        f"SELECT count(*), count(DISTINCT rule_id), min(first_seen), max(last_seen) FROM alerts{al_w}", al_p).fetchone()
    cur = con.execute(
        "SELECT i.id, title, severity, s.status AS state, s.owner, s.disposition, first_seen, last_seen, alert_count, "
        "rule_ids, tactics, techniques, entities, accounts, actors, timeline FROM incidents i "
        f"LEFT JOIN incident_status s USING (id){al_w} ORDER BY {SEV_RANK}, first_seen, i.id", al_p)
    names = [d[0] for d in cur.description]
    incidents = [dict(zip(names, r)) for r in cur.fetchall()]

    times = [t for t in (first_event, last_event, a_lo, a_hi) if t is not None]
    times += [t for i in incidents for t in (i["first_seen"], i["last_seen"])]
    time = None
    if times:
        lo, hi = max(min(times), since) if since else min(times), max(times)
        unit, starts, labels, ticks = _buckets(lo.astimezone(dt.UTC), hi.astimezone(dt.UTC))
        clamp = "greatest(first_seen, ?)" if since else "first_seen"
        cp = [since] if since else []
        time = {
            "unit": unit, "labels": labels, "ticks": ticks,
            "alerts": _series(con, f"SELECT date_trunc('{unit}', {clamp}), severity, count(*) FROM alerts{al_w} GROUP BY ALL",
                              cp + al_p, starts),
            "incidents": _series(con, f"SELECT date_trunc('{unit}', {clamp}), severity, count(*) FROM incidents{al_w} GROUP BY ALL",
                                 cp + al_p, starts),
            "events": _series(con, f"SELECT date_trunc('{unit}', event_time), 'events', count(*) FROM cloudtrail{ct_w} GROUP BY ALL",
                              ct_p, starts, keys=("events",)),
        }
    from pipeline.correlate.timeline import account_names

    known = account_names(con)  # the lake's account cache (enrichment): ids shown with their names
    for inc in incidents:
        inc["account_names"] = {a: known.get(a) for a in inc["accounts"] or ()}
    by_sev = dict(con.execute(f"SELECT severity, count(*) FROM alerts{al_w} GROUP BY 1", al_p).fetchall())
    alert_rows = report_data.alerts(con, al_w, al_p)
    by_id = {a["id"]: a for a in alert_rows}
    for inc in incidents:
        steps = sorted(json.loads(inc.pop("timeline") or "[]"), key=lambda a: (a["first_seen"], a["alert_id"]))
        inc["alerts"] = [{
            "n": n, "alert_id": a["alert_id"], "rule_id": a["rule_id"], "title": a["title"], "severity": a["severity"],
            "first_seen": _dt(a["first_seen"]), "last_seen": _dt(a["last_seen"] or a["first_seen"]),
            "event_count": a.get("event_count") or 0,
            "events": sum(1 for e in a.get("evidence") or () if e.get("event_id")),
            "findings": sum(1 for e in a.get("evidence") or () if e.get("finding_id")),
            **{k: v for k, v in by_id.get(a["alert_id"], {}).items() if k not in ("first_seen", "last_seen", "severity")},
        } for n, a in enumerate(steps, 1)]
        inc["actors"] = list(dict.fromkeys(a.get("actor_key") or a.get("actor") for a in inc["alerts"]
                                           if a.get("actor_key") or a.get("actor"))) or inc["actors"]
    if catalogue is None:
        from pipeline.detect.rules import load_rules

        catalogue = load_rules(check=False)
    loose = [a for a in alert_rows if a["incident"] is None]
    loose.sort(key=lambda a: (report_html.sev_rank(a["severity"]), a["first_seen"], a["id"]))
    return {
        "lake": None, "since": since, "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0),
        "counts": {"events": events, "findings": findings, "accounts": accounts, "alerts": alerts, "rules": rules,
                   "incidents": len(incidents), "first_event": first_event, "last_event": last_event},
        "time": time,
        "by_severity": [(s, {s: by_sev.get(s, 0)}) for s in SEVERITIES],
        "by_rule": _breakdown(con, "rule_id", since, 15),
        "by_account": [(f"{known[k]} ({k})" if known.get(k) else k, v) for k, v in _breakdown(con, "account_id", since, 15)],
        "by_actor": report_data.top_actors(alert_rows, 10),
        "by_source_ip": _breakdown(con, "unnest(source_ips)", since, 10),
        "incidents": incidents[:max_incidents],
        "loose_alerts": loose[:max_alerts], "loose_total": len(loose),
        "coverage": report_data.attack_coverage(catalogue, alert_rows),
    }


# --------------------------------------------------------------------------------------- render

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f7;color:#1f2933;font:14px/1.45 "DejaVu Sans","Liberation Sans",Arial,Helvetica,sans-serif}
main{max-width:1232px;margin:0 auto;padding:24px 24px 48px}
header h1{margin:0;font-size:26px;letter-spacing:-.3px}
header p{margin:4px 0 0;color:#52606d}
nav.toc{margin:10px 0 0;font-size:13px}
nav.toc a{margin-right:14px}
h2{font-size:18px;margin:32px 0 12px}
h3{font-size:15px;margin:0 0 8px}
.cards{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin-top:20px}
.card{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:12px 14px}
.card b{display:block;font-size:24px;line-height:1.2}
.card span{color:#52606d;font-size:12px;text-transform:uppercase;letter-spacing:.4px}
.panel{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:16px 18px;margin-bottom:16px;overflow:hidden}
.panel.wide{overflow-x:auto}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px;margin-bottom:16px}
.grid .panel{margin-bottom:0}
.note{color:#7b8794;font-size:12px;margin:6px 0 0}
.note.top{margin:0 0 10px}
.legend{display:flex;gap:16px;flex-wrap:wrap;font-size:12px;color:#52606d;margin:0 0 8px}
.legend .key{display:inline-flex;align-items:center;gap:6px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px}
svg.chart{display:block;max-width:100%;height:auto;font-family:inherit}
.badge{display:inline-block;border-radius:4px;padding:1px 7px;font-size:11px;font-weight:700;text-transform:uppercase;letter-spacing:.3px}
table{border-collapse:collapse;width:100%;font-size:12.5px}
th{text-align:left;color:#52606d;font-weight:600;border-bottom:2px solid #e4e7eb;padding:6px 8px;white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:hover{color:#1f2933}
table.sortable th::after{content:"\\2195";color:#c3c9d0;margin-left:4px;font-size:11px}
table.sortable th[aria-sort=ascending]::after{content:"\\25B2";color:#1565c0}
table.sortable th[aria-sort=descending]::after{content:"\\25BC";color:#1565c0}
td{border-bottom:1px solid #eef0f3;padding:5px 8px;vertical-align:top}
td.num,th.num{text-align:right;white-space:nowrap}
td.title{overflow-wrap:anywhere;min-width:220px}
td.rule{font-family:"DejaVu Sans Mono",monospace;font-size:11.5px;overflow-wrap:anywhere;width:150px;min-width:120px}
td.time{font-family:"DejaVu Sans Mono",monospace;font-size:12px;white-space:nowrap}
td.who{overflow-wrap:anywhere;width:220px;min-width:160px;font-size:12px}
td.attack{min-width:140px;width:190px}
.tech.more{color:#7b8794}
table.alerts{table-layout:fixed;min-width:1040px}
th.w-n{width:34px}th.w-sev{width:86px}th.w-time{width:120px}th.w-rule{width:130px}th.w-who{width:190px}
th.w-attack{width:170px}th.w-status{width:92px}th.w-owner{width:72px}
table.alerts td{overflow-wrap:anywhere}
.tech{display:block;font-size:11.5px;line-height:1.35;margin-bottom:2px}
.tid{color:#7b8794;font-family:"DejaVu Sans Mono",monospace;font-size:10.5px}
.sub{color:#7b8794;font-size:11px}
.acct{color:#3e4c59;font-weight:600}
.status{display:inline-block;border-radius:10px;padding:0 8px;font-size:11.5px;white-space:nowrap;background:#e3f2fd;color:#0d47a1}
.status.st-acknowledged{background:#fff3e0;color:#8a4b00}
.status.st-in_progress{background:#ede7f6;color:#4527a0}
.status.st-closed{background:#e8f5e9;color:#1b5e20}
details.runbook{margin-top:3px;font-size:12px;color:#52606d}
details.runbook summary{cursor:pointer;color:#1565c0;font-size:11.5px}
details.runbook div{white-space:pre-wrap;margin:4px 0 2px;padding:6px 8px;background:#f7f8fa;border-radius:4px}
.filterbar{display:flex;align-items:center;gap:10px;margin:0 0 8px}
.filterbar input{flex:0 1 360px;font:inherit;font-size:13px;padding:5px 9px;border:1px solid #cbd2d9;border-radius:6px}
.filterbar .count{color:#7b8794;font-size:12px}
tr[hidden]{display:none}
.incident{border-left:6px solid #9e9e9e}
.incident .meta{color:#52606d;font-size:12.5px;margin:2px 0 10px}
.incident .meta code,.mono{font-family:"DejaVu Sans Mono",monospace;font-size:12px}
td.mono{white-space:nowrap}
.chips span,.chips a{display:inline-block;background:#eef0f3;border-radius:10px;padding:1px 8px;margin:0 4px 4px 0;font-size:11.5px;word-break:break-all}
.chips .kind{color:#7b8794;margin-right:3px}
.coverage{columns:4 260px;column-gap:12px}
.tactic{border:1px solid #e4e7eb;border-radius:6px;padding:8px 10px;break-inside:avoid;margin-bottom:12px}
.tactic h4{margin:0 0 6px;font-size:13px}
.tactic ul{list-style:none;margin:0;padding:0}
.tactic li{font-size:12px;padding:3px 6px;border-radius:4px;margin-bottom:3px;background:#f7f8fa}
.tactic li.fired{background:#fdecea;box-shadow:inset 3px 0 0 #d32f2f}
.tactic li .n{display:block;color:#7b8794;font-size:11px}
a{color:#1565c0;text-decoration:none}
a.console{border-bottom:1px dotted #1565c0}
footer{color:#7b8794;font-size:12px;margin-top:32px}
"""


def _badge(sev: str) -> str:
    return report_html.badge(sev)


def _t(t) -> str:
    return report_html.t(t)


def _duration(a, b) -> str:
    s = int((_dt(b) - _dt(a)).total_seconds())
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _panel(title: str, body: str, note: str = "", cls: str = "") -> str:
    note = f'<p class="note">{esc(note)}</p>' if note else ""
    return f'<div class="panel {cls}"><h3>{esc(title)}</h3>{body}{note}</div>'


def _entity(e: str, region: str | None) -> str:
    kind, _, value = e.partition(":")
    inner = report_html.named(value, region, 60)
    return f'<span><span class="kind">{esc(kind)}</span>{inner}</span>'


def _accounts(inc: dict) -> str:
    names = inc.get("account_names") or {}
    return ", ".join(report_html.account(a, names.get(a)) for a in inc["accounts"] or ()) or "-"


def _incident(inc: dict) -> str:
    items = [{"lane": a["rule_id"], "start": a["first_seen"], "end": a["last_seen"], "severity": a["severity"], "n": a["n"],
              "label": f"#{a['n']} {_t(a['first_seen'])} {a['severity']} {a['rule_id']}: {a['title']}"} for a in inc["alerts"]]
    chips = lambda xs: '<div class="chips">' + "".join(f"<span>{esc(x)}</span>" for x in xs or ()) + "</div>"  # noqa: E731
    regions = [a.get("region") for a in inc["alerts"] if a.get("region")]
    region = max(set(regions), key=regions.count) if regions else None
    techs = report_data.technique_names(inc["techniques"])
    table = attack_table()
    tactic_chips = chips([f"{i} {table.tactic_name(i)}" for i in inc["tactics"] or ()] + [f"{i} {name}" for i, name in techs])
    entity_chips = '<div class="chips">' + "".join(_entity(e, region) for e in inc["entities"] or ()) + "</div>"
    runbooks = {}
    for a in inc["alerts"]:
        if a.get("runbook") and a["rule_id"] not in runbooks:
            runbooks[a["rule_id"]] = a["runbook"]
    runbook = report_html.runbook_html("\n\n".join(f"{rule}: {text.strip()}" for rule, text in runbooks.items()),
                                       f"runbooks of its {len(runbooks)} rule{'s' * (len(runbooks) != 1)}")
    sev = inc["severity"]
    owner = f" · owner {esc(inc['owner'])}" if inc.get("owner") else " · no owner"
    return (
        f'<section class="panel incident sev-{esc(sev)}" id="incident-{esc(inc["id"])}" style="border-left-color:{COLORS.get(sev, "#9e9e9e")}">'
        f'<h3>{_badge(sev)} {esc(inc["title"])}</h3>'
        f'<p class="meta">Incident <code>{esc(inc["id"][:12])}</code> · {esc(_t(inc["first_seen"]))} → {esc(_t(inc["last_seen"]))} '
        f'({esc(_duration(inc["first_seen"], inc["last_seen"]))}) · {fmt(inc["alert_count"])} alerts from '
        f'{len(inc["rule_ids"] or ())} rules · accounts {_accounts(inc)} · '
        f'{report_html.status_html(inc.get("state"), disposition=inc.get("disposition"))}{owner}</p>'
        f'{tactic_chips}{entity_chips}{runbook}'
        f'{charts.timeline(items)}'
        + report_html.alerts_table(f"incident-{inc['id'][:12]}-alerts", inc["alerts"], numbered=True, filterable=False)
        + "</section>")


def render(data: dict) -> str:
    """The page, as one string. Every value from ``data`` is escaped here or in ``charts``."""
    c, time = data["counts"], data["time"]
    span = f"{_t(c['first_event'])} → {_t(c['last_event'])}" if c["first_event"] else "no CloudTrail events"
    scope = f"since {_t(data['since'])}" if data["since"] else "everything in the lake"
    cards = "".join(f'<div class="card"><b>{v}</b><span>{esc(k)}</span></div>' for k, v in (
        ("CloudTrail events", fmt(c["events"])), ("GuardDuty findings", fmt(c["findings"])), ("accounts", fmt(c["accounts"])),
        ("alerts", fmt(c["alerts"])), ("rules alerting", fmt(c["rules"])), ("incidents", fmt(c["incidents"]))))
    if time:
        unit = time["unit"]
        over_time = (
            _panel(f"Alerts per {unit}, by severity", charts.legend() + charts.stacked_columns(
                time["ticks"], time["alerts"], css_class="chart-alerts-over-time", tips=time["labels"]),
                "Each alert counts once, in the bucket where its activity began.")
            + _panel(f"Incidents per {unit}, by severity", charts.legend() + charts.stacked_columns(
                time["ticks"], time["incidents"], css_class="chart-incidents-over-time", height=170, unit="incidents",
                tips=time["labels"]), "By the time of the incident's first alert.")
            + _panel(f"CloudTrail events per {unit}", charts.stacked_columns(
                time["ticks"], time["events"], css_class="chart-events-over-time", height=150, unit="events",
                colors={"events": "#5c7cfa"}, tips=time["labels"]), "What the detections looked at.")
        )
    else:
        over_time = _panel("Over time", charts.empty("chart-alerts-over-time", "the lake holds no events or alerts yet", 1160))
    bars = lambda key, cls, **kw: charts.stacked_bars(data[key], css_class=cls, **kw)  # noqa: E731
    named_width = 210 if any(" (" in str(k) for k, _ in data["by_account"]) else 130  # "name (id)" labels
    incidents = data["incidents"]
    more = c["incidents"] - len(incidents)
    incident_html = (
        '<div class="panel wide">' + report_html.incident_index(incidents, _duration)
        + (f'<p class="note">{fmt(more)} less severe incidents not shown (soclake incidents lists them all).</p>' if more else "")
        + "</div>" + "".join(_incident(i) for i in incidents)
    ) if incidents else '<div class="panel"><p class="note">No incidents.</p></div>'
    loose, loose_more = data["loose_alerts"], data["loose_total"] - len(data["loose_alerts"])
    loose_html = ('<div class="panel wide">' + report_html.alerts_table("loose-alerts", loose)
                  + (f'<p class="note">{fmt(loose_more)} less severe alerts not shown (soclake alerts lists them all).</p>'
                     if loose_more else "") + "</div>") if loose else \
        '<div class="panel"><p class="note">Every alert belongs to an incident.</p></div>'
    lake = f" · lake <span class=\"mono\">{esc(data['lake'])}</span>" if data.get("lake") else ""
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {tables.csp_hash()}; "
           "base-uri 'none'; form-action 'none'")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>soclake report · {esc(c['alerts'])} alerts, {esc(c['incidents'])} incidents</title>
<style>{CSS}</style></head>
<body><main>
<header><h1>soclake security report</h1>
<p>Scope: {esc(scope)} · events {esc(span)}{lake} · generated {esc(_t(data['generated_at']))}</p>
<nav class="toc"><a href="#over-time">Over time</a><a href="#breakdowns">Breakdowns</a><a href="#incidents">Incidents</a>
<a href="#alerts">Alerts in no incident</a><a href="#coverage">ATT&amp;CK coverage</a></nav></header>
<section id="summary" class="cards">{cards}</section>
<h2>Over time</h2><section id="over-time">{over_time}</section>
<h2>Alerts by severity, account, rule, actor and source</h2>
<section id="breakdowns">
<div class="grid">{_panel("Alerts by severity", bars("by_severity", "chart-severity", label_width=90))}
{_panel("Alerts by account", charts.legend() + bars("by_account", "chart-accounts", label_width=named_width))}</div>
{_panel("Alerts by rule (top 15)", charts.legend() + bars("by_rule", "chart-rules", width=1160, label_width=330))}
<div class="grid">{_panel("Top actors (by alerts)", charts.legend() + bars("by_actor", "chart-actors", label_width=270),
                          "GuardDuty's and CloudTrail's names for one principal count as one (its ARN).")}
{_panel("Top source IPs (by alerts)", charts.legend() + bars("by_source_ip", "chart-source-ips", label_width=150))}</div>
</section>
<h2>Incidents, most severe first</h2><section id="incidents">{incident_html}</section>
<h2>Alerts in no incident</h2><section id="alerts">{loose_html}</section>
<h2>ATT&amp;CK coverage of the rule catalogue</h2><section id="coverage" class="panel">{report_html.coverage_view(data["coverage"])}</section>
<footer>Generated by soclake from the lake's alerts and incidents tables. Times are UTC. Links open the AWS console
(signed in to the account named in each link's tooltip). Details: <span class="mono">soclake incident ID</span>,
<span class="mono">soclake alert ID</span>.</footer>
</main><script>{tables.SCRIPT}</script></body></html>
"""


def write_report(lake: str, output: str, since=None, max_incidents: int = 50, *, max_alerts: int = 1000,
                 rule_dirs: list[str] | None = None, progress=None) -> dict:
    """Query ``lake``, write the page to ``output``; returns what ``make demo`` prints.
    ``rule_dirs`` adds folders to the catalogue the ATT&CK coverage view shows; ``progress(step)``
    hears each step (``pipeline.cli.progress.StepProgress``)."""
    from pipeline import views
    from pipeline.detect.rules import load_rules
    from pipeline.detect.rules import rule_dirs as catalogue_dirs
    from pipeline.options import require_lake

    progress = progress or (lambda step: None)
    progress("reading the lake")
    con = views.connect(require_lake(lake))
    try:
        rules = load_rules(catalogue_dirs(rule_dirs), check=False)
        progress("querying alerts, incidents and events")
        data = collect(con, since, max_incidents, catalogue=rules, max_alerts=max_alerts)
    finally:
        con.close()
    data["lake"] = lake
    progress("rendering the page")
    page = render(data)
    progress(f"writing {output}")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as e:
        raise ConfigError(f"cannot write the report to {output}: {e.strerror or e}") from None
    c = data["counts"]
    return {"path": os.path.abspath(output), "alerts": c["alerts"], "incidents": c["incidents"],
            "incidents_shown": len(data["incidents"]), "alerts_in_no_incident": data["loose_total"],
            "alerts_in_no_incident_shown": len(data["loose_alerts"]), "events": c["events"], "bytes": len(page.encode())}
