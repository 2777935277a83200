"""``soclake enrich accounts|ip``: refresh the lake's account cache, look up source addresses
(docs/enrichment.md); and the enrichment flags detect and run share."""

from __future__ import annotations

import click

from pipeline.cli.options import (
    aws_options,
    configure_aws,
    enrich_flags,
    enrich_options,
    format_option,
    lake_option,
    to_args,
)
from pipeline.options import EXIT_OK, require_lake
from pipeline.tables import emit, rfc3339, to_json


@click.group("enrich", short_help="enrichment: refresh the account cache (names, OUs, tags), look up source addresses",
             help="Alerts carry the account's name and OU and the source address's class, ASN, AS organisation "
             "and country (docs/enrichment.md). Accounts come from a cache in the lake that this command refreshes; "
             "addresses from MaxMind-format files given to detect with --ip-db.")
def enrich_group():
    """Only holds enrich accounts and enrich ip."""


@enrich_group.command("accounts", short_help="refresh the lake's account cache from AWS Organizations or a CSV, or "
                      "show it",
                      help="Replaces _enrich/accounts.parquet in the lake in one atomic write. --from-organizations "
                      "reads ListAccounts, ListParents, DescribeOrganizationalUnit and ListTagsForResource (the "
                      "management account or a delegated administrator; organizations:List*/Describe*). --csv reads "
                      "account_id,name,ou,... with a header; extra columns are tags. Exactly one of "
                      "--from-organizations, --csv, --show.")
@lake_option
@click.option("--from-organizations", is_flag=True, help="read the organisation through its API")
@click.option("--csv", metavar="FILE", help="read a CSV file: account_id,name,ou[,email,status,tags][,TAG...]")
@click.option("--show", is_flag=True, help="print the cached accounts; change nothing")
@format_option(help="for --show: table, json, jsonl or csv; otherwise json prints the refresh as JSON")
@aws_options
@to_args
def enrich_accounts_command(args):
    given = [f for f, v in (("--from-organizations", args.from_organizations), ("--csv", args.csv),
                            ("--show", args.show)) if v]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --from-organizations, --csv FILE, --show"
                               + (f" (got {' '.join(given)})" if given else ""))
    return cmd_enrich_accounts(args)


@enrich_group.command("ip", short_help="classify source addresses and look up their ASN and country",
                      help="What detect adds to alerts for these addresses (ADDRESS: IPv4/IPv6 addresses or "
                      "CloudTrail sourceIPAddress values such as ec2.amazonaws.com).")
@click.argument("address", nargs=-1, required=True, metavar="ADDRESS...")
@enrich_flags
@format_option
@to_args
def enrich_ip_command(args):
    return cmd_enrich_ip(args)


COMMANDS = [enrich_group]


def cmd_enrich_accounts(args) -> int:
    from pipeline.enrich import accounts
    from pipeline.lake.store import open_store

    configure_aws(args)
    require_lake(args.lake, create=not args.show)
    store = open_store(args.lake)
    if args.show:
        table = accounts.read_cache(store)
        rows = [] if table is None else table.to_pylist()
        if args.format == "table":
            print(format_accounts(rows))
        else:
            emit(rows, args.format, [])
        return EXIT_OK
    if args.from_organizations:
        from pipeline import aws

        rows, refresh = accounts.from_organizations(aws.client("organizations"))
    else:
        rows, refresh = accounts.from_csv(args.csv)
    accounts.write_cache(store, rows, refresh.source)
    if args.format != "table":
        print(to_json(refresh.to_dict()))
    else:
        extra = f" ({refresh.pages} page(s), {refresh.ous} OU(s))" if refresh.source == "organizations" else ""
        print(f"Cached {refresh.accounts} account(s) from {refresh.source}{extra} in {store.url(accounts.CACHE)}; "
              "the next detect run names them in alerts")
    return EXIT_OK


def format_accounts(rows: list[dict]) -> str:
    if not rows:
        return "no account cache: soclake enrich accounts --from-organizations | --csv FILE"
    lines = [f"{'ACCOUNT':<12}  {'NAME':<28} {'OU':<32} TAGS"]
    for r in rows:
        tags = ", ".join(f"{k}={v}" for k, v in (r["tags"] or []))
        lines.append(f"{r['account_id']:<12}  {(r['account_name'] or '-')[:28]:<28} {(r['ou_path'] or '-')[:32]:<32} {tags}")
    when = rows[0]["refreshed_at"]
    lines.append(f"{len(rows)} account(s) from {rows[0]['source']}, refreshed {rfc3339(when)}")
    return "\n".join(lines)


def cmd_enrich_ip(args) -> int:
    from pipeline.enrich.ipinfo import IpLookup

    lookup = IpLookup(enrich_options(args).ip_db, args.aws_ranges)
    try:
        rows = [{"address": a, **lookup.lookup(a).columns()} for a in args.address]
    finally:
        lookup.close()
    if args.format != "table":
        emit(rows, args.format, [])
        return EXIT_OK
    for r in rows:
        print(f"{r['address']:<40} {r['src_ip_class'] or '-':<10} {'AS' + str(r['src_asn']) if r['src_asn'] else '-':<10} "
              f"{r['src_country'] or '-':<3} {r['src_as_org'] or '-'}")
    if not getattr(args, "ip_db", None):
        print("(no --ip-db: ASN, AS organisation and country unknown)")
    return EXIT_OK
