"""``soclake alerts|alert|incidents|incident``: the analyst's queue, one alert or incident with its
evidence and history, and lifecycle changes (ack, assign, start, close, reopen, note; docs/triage.md)."""

from __future__ import annotations

import datetime as dt

import click

from pipeline.cli.options import (
    POSITIVE_INT,
    TIME,
    _stack,
    aws_options,
    configure_aws,
    format_option,
    json_option,
    lake_option,
    to_args,
    wait_option,
)
from pipeline.correlate.lifecycle import ACTIONS, DISPOSITIONS, STATUSES
from pipeline.errors import UsageError
from pipeline.options import EXIT_OK, require_lake
from pipeline.tables import emit, rfc3339, to_json

SEVERITIES = ("info", "low", "medium", "high", "critical")

_ACTIONS_HELP = ("what to do (omit to show it): ack; assign OWNER; start (in progress; you become the owner if none); "
                 "close --disposition D; reopen; note TEXT")


def _change_args(kind: str):
    """The id, action and value arguments and the flags of a lifecycle change (alert and incident)."""
    return _stack(
        click.argument("id"),
        click.argument("action", required=False, type=click.Choice(ACTIONS)),
        click.argument("value", required=False, metavar="[OWNER|TEXT]"),
        click.option("--disposition", type=click.Choice(DISPOSITIONS), help="why it is closed (required by close)"),
        click.option("--note", help="a note stored with the change"),
        click.option("--by", help="who makes the change (default $USER)"),
        json_option,
    )


_ARGS_HELP = ("ID is the {kind} id (a unique prefix is enough). ACTION, omitted to show it: " + _ACTIONS_HELP.split(": ", 1)[1]
              + ". OWNER for assign, TEXT for note.")


@click.command("alerts", short_help="list alerts with their status and owner: the triage queue",
               help="Current alerts (newest activity first) with their lifecycle status, owner and disposition. "
               "Suppressed alerts are left out unless --suppressed.")
@lake_option
@click.option("--status", type=click.Choice((*STATUSES, "open")), help="only this status (open: any but closed)")
@click.option("--open", "open_", is_flag=True, help="same as --status open")
@click.option("--severity", type=click.Choice(SEVERITIES), help="this severity or above (high: high and critical)")
@click.option("--rule", help="rule id or glob (iam_*)")
@click.option("--since", type=TIME, help="active since: a span back from now (24h, 7d), a date or an RFC 3339 time")
@click.option("--limit", type=POSITIVE_INT, help="at most N alerts (applied in the query)")
@click.option("--suppressed", is_flag=True, help="include suppressed alerts")
@format_option
@aws_options
@to_args
def alerts_command(args):
    if args.open_:
        args.status = "open"
    return cmd_alerts(args)


@click.command("alert", short_help="show one alert (evidence, history) or change its status: ack, assign, start, "
               "close, reopen, note",
               help="Without an action: the alert, the events and findings behind it, its incident and its history. "
               "With one: a lifecycle change, stored as an event in the lake's alert_events table (who: --by or "
               "$USER). " + _ARGS_HELP.format(kind="alert"),
               epilog="Examples: soclake alert 3f9a ack; soclake alert 3f9a assign alice; soclake alert 3f9a close "
               "--disposition benign --note 'planned change CHG-123'; soclake alert 3f9a note 'asked the owner'")
@_change_args("alert")
@click.option("--suppress", is_flag=True,
              help="with close --disposition false_positive: add a proposed suppression (rule, principals, "
              "source IPs; expires in 90 days) to the --suppressions file")
@click.option("--suppressions", envvar="SOCLAKE_SUPPRESSIONS", metavar="FILE",
              help="the tuning file --suppress adds to (env SOCLAKE_SUPPRESSIONS; created if missing)")
@lake_option
@wait_option
@aws_options
@to_args
def alert_command(args):
    return cmd_alert(args)


@click.command("incidents", short_help="list incidents with their status and owner",
               help="Incidents are rebuilt by every detect run from the lake's alerts "
               "(docs/correlation.md); their status lives in the lake's alert_events (docs/triage.md).")
@lake_option
@click.option("--open", "open", is_flag=True, help="only open incidents (any status but closed)")
@click.option("--status", type=click.Choice((*STATUSES, "open")), help="only this status (open: any but closed)")
@click.option("--since", type=TIME, help="active since: a span back from now (24h, 7d), a date or an RFC 3339 time")
@click.option("--limit", type=POSITIVE_INT, help="at most N incidents (applied in the query)")
@format_option
@aws_options
@to_args
def incidents_command(args):
    return cmd_incidents(args)


@click.command("incident", short_help="show one incident's timeline and history, or change its status",
               help="Without an action: the ordered timeline (each alert, then the CloudTrail events "
               "and GuardDuty findings behind it) and the incident's history. With one: a lifecycle change, "
               "as for soclake alert. " + _ARGS_HELP.format(kind="incident"))
@_change_args("incident")
@lake_option
@wait_option
@aws_options
@to_args
def incident_command(args):
    return cmd_incident(args)


COMMANDS = [alerts_command, alert_command, incidents_command, incident_command]


def _json(data) -> str:
    """JSON with times in RFC 3339."""
    return to_json(data)


def _connection(args):
    from pipeline import views

    configure_aws(args)
    return views.connect(require_lake(args.lake))


ALERT_COLUMNS = [("id", "ID", lambda v: v[:12]), ("status", "STATUS"), ("severity", "SEVERITY"),
                 ("last_seen", "LAST SEEN", rfc3339), ("owner", "OWNER", lambda v: v or "-"), ("rule_id", "RULE"),
                 ("title", "TITLE")]


def cmd_alerts(args) -> int:
    from pipeline.correlate.triage import list_alerts

    rows = list_alerts(_connection(args), status=args.status, severity=args.severity, rule=args.rule,
                       since=args.since, limit=args.limit, suppressed=args.suppressed)
    emit(rows, args.format, ALERT_COLUMNS, empty="no alerts",
         footer=lambda n: f"{n} alerts (soclake alert ID shows one, with its evidence and history)")
    return EXIT_OK


def cmd_incidents(args) -> int:
    from pipeline.correlate.timeline import list_incidents, status_line

    rows = list_incidents(_connection(args), since=args.since, open_only=args.open, status=args.status,
                          limit=getattr(args, "limit", None))
    columns = [("id", "ID", lambda v: v[:12]), ("severity", "SEVERITY"), ("first_seen", "FIRST SEEN", rfc3339),
               ("last_seen", "LAST SEEN", rfc3339), ("alert_count", "ALERTS"), ("_status", "STATUS"),
               ("title", "TITLE")]
    if any(r.get("account_names") for r in rows):  # enriched (docs/enrichment.md): the accounts' names
        columns.insert(-1, ("account_names", "ACCOUNTS", lambda v: ", ".join(v or [])))
    table_rows = [{**r, "_status": status_line(r)} for r in rows] if args.format == "table" else rows
    emit(table_rows, args.format, columns, empty="no incidents",
         footer=lambda n: f"{n} incidents (soclake incident ID shows one's timeline)")
    return EXIT_OK


def cmd_alert(args) -> int:
    from pipeline.correlate.triage import alert_detail, format_alert

    return _show_or_change(args, "alert", alert_detail, format_alert)


def cmd_incident(args) -> int:
    from pipeline.correlate.timeline import format_timeline, incident_timeline

    return _show_or_change(args, "incident", incident_timeline, format_timeline)


def _show_or_change(args, kind: str, detail, text) -> int:
    """No action: show the alert or incident (``detail`` reads it, ``text`` formats it); else change its status."""
    if args.action is not None:
        return _change(args, kind)
    _no_change_flags(args)
    data = detail(_connection(args), args.id)
    print(_json(data) if args.json else text(data))
    return EXIT_OK


def _no_change_flags(args) -> None:
    given = [f for f, v in (("--disposition", args.disposition), ("--note", args.note), ("--by", args.by),
                            ("--suppress", getattr(args, "suppress", False)), ("OWNER|TEXT", args.value)) if v]
    if given:
        raise UsageError(f"{', '.join(given)} go(es) with an action (ack, assign, start, close, reopen, note)")


def _change(args, kind: str) -> int:
    from pipeline.correlate import lifecycle
    from pipeline.lake.lease import writer_lease
    from pipeline.lake.store import open_store

    if args.value and args.action not in ("assign", "note"):
        raise UsageError(f"{args.action} takes no OWNER or TEXT (got {args.value!r}); --note TEXT adds a note")
    note = args.value if args.action == "note" else args.note
    if args.action == "note" and args.note:
        note = f"{args.value}; {args.note}" if args.value else args.note
    owner = args.value if args.action == "assign" else None
    suppress = getattr(args, "suppress", False)
    if suppress and (args.action != "close" or args.disposition != "false_positive"):
        raise UsageError("--suppress goes with close --disposition false_positive")
    if suppress and not args.suppressions:
        raise UsageError("--suppress needs --suppressions FILE (or SOCLAKE_SUPPRESSIONS): the tuning file to add to")
    who = lifecycle.who_default(args.by)
    configure_aws(args)
    require_lake(args.lake, write=True)
    store = open_store(args.lake)
    entry = None
    with writer_lease(store, f"{kind} {args.action}", wait=args.wait):  # alert_events has one writer at a time
        con = _connection(args)  # inside the lease: the state read is the one the change follows
        if suppress:
            entry = _proposal(con, args.id, who, args.note)
        event = lifecycle.change(store, con, kind, args.id, args.action, who=who, owner=owner,
                                 disposition=args.disposition, note=note)
    added = None
    if entry is not None:
        from pipeline.detect.suppress_propose import add_to_file

        added = add_to_file(args.suppressions, entry, event["id"])
    if args.json:
        print(_json({**event, "suppression": entry, "suppression_added": added}))
        return EXIT_OK
    extra = ", ".join(x for x in (event["disposition"], f"owner {event['owner']}" if event["owner"] else "") if x)
    print(f"{kind} {event['id'][:12]}: {event['action']} by {who} → {event['status']}" + (f" ({extra})" if extra else ""))
    if entry is not None:
        what = "added to" if added else "already in"
        print(f"suppression {entry['id']} {what} {args.suppressions} (expires {entry['expires']}): review it; "
              "the next detect run applies it")
    return EXIT_OK


def _proposal(con, given_id: str, who: str, note: str | None) -> dict:
    from pipeline.correlate.lifecycle import resolve
    from pipeline.detect.alert_store import row_to_alert
    from pipeline.detect.suppress_propose import proposal

    alert_id = resolve(con, "alert", given_id)
    cur = con.execute("SELECT * FROM alerts WHERE id = ?", [alert_id])
    row = dict(zip([d[0] for d in cur.description], cur.fetchall()[0]))
    return proposal(row_to_alert(row), who, note, dt.datetime.now(dt.UTC).date())
