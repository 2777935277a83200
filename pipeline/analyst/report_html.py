"""HTML pieces of ``soclake report`` that are tables of alerts and incidents, and the ATT&CK view.

Every value comes from the lake, i.e. from the logs, so every one passes through ``esc``; links
to the AWS console are built by ``console.link`` (fixed https host, encoded path).
"""

from __future__ import annotations

import datetime as dt

from pipeline.analyst.charts import COLORS, INK, SEVERITIES, esc, fmt
from pipeline.analyst.console import link, shorten
from pipeline.analyst.report_data import technique_names
from pipeline.analyst.tables import Col, cell, table

STATUS_ORDER = {"new": 0, "acknowledged": 1, "in_progress": 2, "closed": 3}


def badge(sev: str) -> str:
    return (f'<span class="badge sev-{esc(sev)}" style="background:{COLORS.get(sev, "#9e9e9e")};'
            f'color:{INK.get(sev, "#fff")}">{esc(sev)}</span>')


def sev_rank(sev: str) -> int:
    return SEVERITIES.index(sev) if sev in SEVERITIES else len(SEVERITIES)


def t(value) -> str:
    """A time as RFC 3339 in UTC (``2026-11-01T10:05:00Z``), whole seconds, as every soclake output."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return f"{value.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"


def named(value: str | None, region: str | None = None, chars: int = 44, finding: bool = False) -> str:
    """A principal, resource or finding id: shortened (ARNs from the left), the full value in the
    tooltip, and a link to its console page when there is one."""
    if not value:
        return "-"
    short = esc(shorten(value, chars))
    target = link(value, region, finding=finding)
    if target is None:
        return f'<span class="name" title="{esc(value)}">{short}</span>'
    where = f" in account {target.account}" if target.account else ""
    tip = f"{value}\nopen the {target.kind} in the AWS console{where}"
    return (f'<a class="console" href="{esc(target.url)}" target="_blank" rel="noopener noreferrer" '
            f'title="{esc(tip)}">{short}</a>')


def attack_html(ids, most: int | None = None) -> str:
    """Technique names with their ids; past ``most`` of them, a count (all of them in its tooltip)."""
    items = technique_names(ids)
    if not items:
        return "-"
    shown = items if most is None or len(items) <= most else items[:most]
    out = "".join(f'<span class="tech" title="{esc(i)}">{esc(name)} <span class="tid">{esc(i)}</span></span>'
                  for i, name in shown)
    if len(shown) < len(items):
        rest = "\n".join(f"{i} {name}" for i, name in items[most:])
        out += f'<span class="tech more" title="{esc(rest)}">+{len(items) - len(shown)} more</span>'
    return out


def runbook_html(text: str | None, label: str = "runbook") -> str:
    if not text or not text.strip():
        return ""
    return f'<details class="runbook"><summary>{esc(label)}</summary><div>{esc(text.strip())}</div></details>'


def status_html(status: str | None, owner: str | None = None, disposition: str | None = None) -> str:
    status = status or "new"
    extra = f" ({disposition})" if disposition else ""
    return f'<span class="status st-{esc(status)}">{esc(status.replace("_", " "))}{esc(extra)}</span>'


def account(account_id: str | None, name: str | None) -> str:
    """``111111111111 (prod-payments)`` when the account is named (enrichment), else the id."""
    if not account_id:
        return esc(name or "")
    return esc(account_id) + (f' <span class="acct">({esc(name)})</span>' if name and name != account_id else "")


def source(a: dict) -> str:
    """The alert's first source address and what enrichment knows of it: class, AS number and
    organisation, country (each only when known; nothing at all when nothing is)."""
    asn = f"AS{a['src_asn']}" if a.get("src_asn") is not None else None
    parts = [x for x in (a.get("src_ip_class"), " ".join(x for x in (asn, a.get("src_as_org")) if x) or None,
                         a.get("src_country")) if x]
    if not a.get("source_ip") and not parts:
        return ""
    ip = f"from {esc(a['source_ip'])}" if a.get("source_ip") else "source"
    return f'<span class="sub src">{ip}' + "".join(f" · {esc(p)}" for p in parts) + "</span>"


def resources(a: dict) -> list[str]:
    """What the alert names that the console can open: its resources, values of its dedup key
    (a security group, an instance), and its GuardDuty findings."""
    actors = {a.get("actor"), a.get("actor_key")}
    out = list(dict.fromkeys([*(a.get("resources") or ()), *(v for v in a.get("dedup_values") or ()
                                                            if v not in actors and link(v, a.get("region")))]))
    return [named(r, a.get("region"), 40) for r in out if r not in actors] + \
        [f'<span class="sub">finding</span> {named(f, a.get("region"), 14, finding=True)}' for f in a.get("finding_ids") or ()]


def alerts_table(table_id: str, rows: list[dict], *, numbered: bool = False, filterable: bool = True) -> str:
    """One row per alert: severity, time, rule, title with its runbook, who and what it names
    (actor, account with its name, source address with its class, AS and country when enrichment
    knows them, resources, findings: console links), ATT&CK techniques, status, owner."""
    cols = ([Col("#", num=True, cls="w-n")] if numbered else []) + [
        Col("severity", num=True, cls="w-sev"), Col("first seen", cls="w-time"), Col("rule", cls="w-rule"),
        Col("alert"), Col("actor, resources", cls="w-who"), Col("ATT&CK", cls="w-attack"),
        Col("status", cls="w-status"), Col("owner", cls="w-owner")]
    body = []
    for n, a in enumerate(rows, 1):
        actor = a.get("actor_key") or a.get("actor")
        spelled = a.get("actor") if a.get("actor") and a.get("actor") != actor else None
        where = " · ".join(x for x in (account(a.get("account_id"), a.get("account_name")), esc(a.get("region") or "")) if x)
        src = source(a)
        who = "<br>".join([named(actor, a.get("region"), 40) if actor else "-",
                           *([f'<span class="sub">GuardDuty: {esc(shorten(spelled, 30))}</span>'] if spelled else []),
                           *([f'<span class="sub">{where}</span>'] if where else []), *([src] if src else []),
                           *resources(a)])
        events = a.get("event_count") or 0
        row = ([cell(str(a.get("n", n)), a.get("n", n), "num")] if numbered else []) + [
            cell(badge(a["severity"]), sev_rank(a["severity"])),
            cell(esc(t(a["first_seen"])).replace("T", "T<wbr>", 1), t(a["first_seen"]), "time"),  # wraps after the day
            cell(esc(a["rule_id"]).replace("_", "_<wbr>"), cls="rule"),  # breaks between words, not inside
            cell(esc(a["title"]) + f'<span class="sub"> · {fmt(events)} event{"s" * (events != 1)}</span>'
                 + runbook_html(a.get("runbook")), cls="title"),
            cell(who, actor or "", "who"),
            cell(attack_html(a.get("techniques")), cls="attack"),
            cell(status_html(a.get("status"), disposition=a.get("disposition")), STATUS_ORDER.get(a.get("status") or "new", 9)),
            cell(esc(a.get("owner") or "-")),
        ]
        body.append(row)
    return table(table_id, cols, body, cls="alerts", filter_label="filter alerts: words in any column" if filterable else None)


def incident_index(incidents: list[dict], duration) -> str:
    cols = [Col("severity", num=True), Col("incident"), Col("status"), Col("owner"), Col("alerts", num=True),
            Col("ATT&CK"), Col("first seen"), Col("duration", num=True)]
    body = []
    for i in incidents:
        seconds = int((i["last_seen"] - i["first_seen"]).total_seconds())
        body.append([
            cell(badge(i["severity"]), sev_rank(i["severity"])),
            cell(f'<a href="#incident-{esc(i["id"])}">{esc(i["title"])}</a>', cls="title"),
            cell(status_html(i.get("state"), disposition=i.get("disposition")), STATUS_ORDER.get(i.get("state") or "new", 9)),
            cell(esc(i.get("owner") or "-")),
            cell(fmt(i["alert_count"]), i["alert_count"], "num"),
            cell(attack_html(i.get("techniques"), most=3), cls="attack"),
            cell(esc(t(i["first_seen"])), t(i["first_seen"]), "mono"),
            cell(esc(duration(i["first_seen"], i["last_seen"])), seconds, "num"),
        ])
    return table("incident-index", cols, body, cls="incident-index", filter_label="filter incidents")


def coverage_view(cov: dict) -> str:
    """The catalogue's ATT&CK coverage: one card per tactic, a line per technique with the rules
    that detect it and how many alerts it raised in this report."""
    cards = []
    for tac in cov["tactics"]:
        lines = []
        for tech in tac["techniques"]:
            rules = ", ".join(tech["rules"])
            fired = tech["alerts"]
            lines.append(
                f'<li class="{"fired" if fired else "quiet"}" title="{esc(tech["id"])}: {esc(rules)}">'
                f'<span class="tid">{esc(tech["id"] if tech["id"] != "-" else "")}</span> {esc(tech["name"])}'
                f'<span class="n">{len(tech["rules"])} rule{"s" * (len(tech["rules"]) != 1)}'
                + (f" · {fmt(fired)} alert{'s' * (fired != 1)}" if fired else "") + "</span></li>")
        cards.append(f'<div class="tactic"><h4><span class="tid">{esc(tac["id"])}</span> {esc(tac["name"])}</h4>'
                     f'<ul>{"".join(lines)}</ul></div>')
    summary = (f'{fmt(cov["rules"])} enabled rules cover {fmt(cov["techniques"])} techniques in {len(cov["tactics"])} of '
               f'{cov["all_tactics"]} tactics (ATT&amp;CK Enterprise v{esc(cov["version"])}). Highlighted: techniques '
               "that raised alerts in this report. Hover a technique for its rules; "
               '<span class="mono">soclake rules coverage --format navigator</span> writes a Navigator layer.')
    return f'<p class="note top">{summary}</p><div class="coverage">{"".join(cards)}</div>'
