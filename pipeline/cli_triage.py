"""``soclake alerts|alert|incidents|incident``: the analyst's queue, one alert or incident with its
evidence and history, and lifecycle changes (ack, assign, start, close, reopen, note; docs/triage.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os

from pipeline.correlate.lifecycle import ACTIONS, DISPOSITIONS, STATUSES
from pipeline.errors import UsageError
from pipeline.options import EXIT_OK, positive_int, require_lake

_ACTIONS_HELP = ("what to do (omit to show it): ack; assign OWNER; start (in progress; you become the owner if none); "
                 "close --disposition D; reopen; note TEXT")


def since_arg(s: str) -> dt.datetime:
    """An argparse type: a relative span back from now (24h, 7d, 30m) or a time (YYYY-MM-DD[THH:MM[:SS]Z])."""
    from pipeline.detect.rules import parse_duration

    try:
        return dt.datetime.now(dt.UTC) - parse_duration(s)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is neither a span (24h, 7d) nor a time (YYYY-MM-DD[THH:MM:SSZ])") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.cli import _add_aws, _lake_arg, _wait_arg

    p = sub.add_parser(
        "alerts", help="list alerts with their status and owner: the triage queue",
        description="Current alerts (newest activity first) with their lifecycle status, owner and disposition. "
        "Suppressed alerts are left out unless --suppressed.")
    _lake_arg(p)
    p.add_argument("--status", choices=(*STATUSES, "open"), help="only this status (open: any but closed)")
    p.add_argument("--open", action="store_const", const="open", dest="status", help="same as --status open")
    p.add_argument("--severity", choices=("info", "low", "medium", "high", "critical"),
                   help="this severity or above (high: high and critical)")
    p.add_argument("--rule", help="rule id or glob (iam_*)")
    p.add_argument("--since", type=since_arg, help="active since: a span back from now (24h, 7d) or a time (UTC)")
    p.add_argument("--limit", type=positive_int, help="at most N alerts")
    p.add_argument("--suppressed", action="store_true", help="include suppressed alerts")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_aws(p)
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser(
        "alert", help="show one alert (evidence, history) or change its status: ack, assign, start, close, reopen, note",
        description="Without an action: the alert, the events and findings behind it, its incident and its history. "
        "With one: a lifecycle change, stored as an event in the lake's alert_events table (who: --by or $USER).",
        epilog="Examples: soclake alert 3f9a ack; soclake alert 3f9a assign alice; soclake alert 3f9a close "
        "--disposition benign --note 'planned change CHG-123'; soclake alert 3f9a note 'asked the owner'")
    _change_args(p, "alert")
    p.add_argument("--suppress", action="store_true",
                   help="with close --disposition false_positive: add a proposed suppression (rule, principals, "
                   "source IPs; expires in 90 days) to the --suppressions file")
    p.add_argument("--suppressions", default=os.environ.get("SOCLAKE_SUPPRESSIONS"), metavar="FILE",
                   help="the tuning file --suppress adds to (env SOCLAKE_SUPPRESSIONS; created if missing)")
    _lake_arg(p)
    _wait_arg(p)
    _add_aws(p)
    p.set_defaults(func=cmd_alert)

    p = sub.add_parser("incidents", help="list incidents with their status and owner",
                       description="Incidents are rebuilt by every detect run from the lake's alerts "
                       "(docs/correlation.md); their status lives in the lake's alert_events (docs/triage.md).")
    _lake_arg(p)
    p.add_argument("--open", action="store_true", help="only open incidents (any status but closed)")
    p.add_argument("--status", choices=(*STATUSES, "open"), help="only this status (open: any but closed)")
    p.add_argument("--since", type=since_arg, help="active since: a span back from now (24h, 7d) or a time (UTC)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_aws(p)
    p.set_defaults(func=cmd_incidents)

    p = sub.add_parser("incident", help="show one incident's timeline and history, or change its status",
                       description="Without an action: the ordered timeline (each alert, then the CloudTrail events "
                       "and GuardDuty findings behind it) and the incident's history. With one: a lifecycle change, "
                       "as for soclake alert.")
    _change_args(p, "incident")
    _lake_arg(p)
    _wait_arg(p)
    _add_aws(p)
    p.set_defaults(func=cmd_incident)


def _change_args(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("id", help=f"{kind} id (a unique prefix is enough)")
    p.add_argument("action", nargs="?", choices=ACTIONS, help=_ACTIONS_HELP)
    p.add_argument("value", nargs="?", metavar="OWNER|TEXT", help="the owner for assign, the text for note")
    p.add_argument("--disposition", choices=DISPOSITIONS, help="why it is closed (required by close)")
    p.add_argument("--note", help="a note stored with the change")
    p.add_argument("--by", help="who makes the change (default $USER)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _json(data) -> str:
    """JSON with times in RFC 3339."""
    return json.dumps(data, indent=2, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))


def _connection(args):
    from pipeline import views
    from pipeline.cli import _configure_aws

    _configure_aws(args)
    return views.connect(require_lake(args.lake))


def cmd_alerts(args) -> int:
    from pipeline.correlate.triage import format_alerts, list_alerts

    rows = list_alerts(_connection(args), status=args.status, severity=args.severity, rule=args.rule,
                       since=args.since, limit=args.limit, suppressed=args.suppressed)
    print(_json(rows) if args.json else format_alerts(rows))
    return EXIT_OK


def cmd_incidents(args) -> int:
    from pipeline.correlate.timeline import list_incidents, status_line

    rows = list_incidents(_connection(args), since=args.since, open_only=args.open, status=args.status)
    if args.json:
        print(_json(rows))
        return EXIT_OK
    if not rows:
        print("no incidents")
        return EXIT_OK
    for r in rows:
        print(f"{r['id'][:12]}  {r['severity']:<8} {r['first_seen']:%Y-%m-%d %H:%M} → {r['last_seen']:%H:%M}  "
              f"{r['alert_count']:>3} alerts  [{status_line(r)}]  {r['title']}"
              + (f"  (accounts: {', '.join(r['account_names'])})" if r.get("account_names") else ""))
    print(f"{len(rows)} incidents (soclake incident ID shows one's timeline)")
    return EXIT_OK


def cmd_alert(args) -> int:
    if args.action is None:
        from pipeline.correlate.triage import alert_detail, format_alert

        _no_change_flags(args)
        data = alert_detail(_connection(args), args.id)
        print(_json(data) if args.json else format_alert(data))
        return EXIT_OK
    return _change(args, "alert")


def cmd_incident(args) -> int:
    if args.action is None:
        from pipeline.correlate.timeline import format_timeline, incident_timeline

        _no_change_flags(args)
        data = incident_timeline(_connection(args), args.id)
        print(_json(data) if args.json else format_timeline(data))
        return EXIT_OK
    return _change(args, "incident")


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
    from pipeline.cli import _configure_aws

    _configure_aws(args)
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
