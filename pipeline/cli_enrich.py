"""``soclake enrich accounts|ip``: refresh the lake's account cache, look up source addresses
(docs/enrichment.md); and the enrichment flags detect and run share."""

from __future__ import annotations

import argparse
import json

from pipeline.options import EXIT_OK, require_lake

_IP_DB_HELP = ("a MaxMind-format IP database (GeoLite2-ASN/-Country/-City, DB-IP lite, IPinfo lite .mmdb); repeatable, "
               "e.g. one ASN and one country file (env SOCLAKE_ENRICH__IP_DB as a JSON list; config enrich.ip_db)")
_RANGES_HELP = "a saved copy of AWS's ip-ranges.json: addresses in it are labelled aws (config enrich.aws_ranges)"


def add_detect_args(p: argparse.ArgumentParser) -> None:
    """--ip-db and --aws-ranges for the commands that build alerts (detect, run, rules profile)."""
    p.add_argument("--ip-db", action="append", default=[], metavar="FILE", help=_IP_DB_HELP)
    p.add_argument("--aws-ranges", metavar="FILE", help=_RANGES_HELP)


def enrich_options(args):
    from pipeline.enrich.apply import EnrichOptions

    return EnrichOptions(ip_db=tuple(getattr(args, "ip_db", None) or ()), aws_ranges=getattr(args, "aws_ranges", None))


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.cli import _add_aws, _lake_arg

    p = sub.add_parser(
        "enrich", help="enrichment: refresh the account cache (names, OUs, tags), look up source addresses",
        description="Alerts carry the account's name and OU and the source address's class, ASN, AS organisation "
        "and country (docs/enrichment.md). Accounts come from a cache in the lake that this command refreshes; "
        "addresses from MaxMind-format files given to detect with --ip-db.")
    esub = p.add_subparsers(dest="enrich_command", metavar="ACTION", required=True)

    ap = esub.add_parser(
        "accounts", help="refresh the lake's account cache from AWS Organizations or a CSV, or show it",
        description="Replaces _enrich/accounts.parquet in the lake in one atomic write. --from-organizations reads "
        "ListAccounts, ListParents, DescribeOrganizationalUnit and ListTagsForResource (the management account or a "
        "delegated administrator; organizations:List*/Describe*). --csv reads account_id,name,ou,... with a header; "
        "extra columns are tags.")
    _lake_arg(ap)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-organizations", action="store_true", help="read the organisation through its API")
    src.add_argument("--csv", metavar="FILE", help="read a CSV file: account_id,name,ou[,email,status,tags][,TAG...]")
    src.add_argument("--show", action="store_true", help="print the cached accounts; change nothing")
    ap.add_argument("--json", action="store_true", help="print JSON")
    _add_aws(ap)
    ap.set_defaults(func=cmd_enrich_accounts)

    ip = esub.add_parser("ip", help="classify source addresses and look up their ASN and country",
                         description="What detect adds to alerts for these addresses (or CloudTrail sourceIPAddress "
                         "values such as ec2.amazonaws.com).")
    ip.add_argument("address", nargs="+", help="IPv4/IPv6 addresses or sourceIPAddress values")
    add_detect_args(ip)
    ip.add_argument("--json", action="store_true", help="print JSON")
    ip.set_defaults(func=cmd_enrich_ip)


def cmd_enrich_accounts(args) -> int:
    from pipeline.cli import _configure_aws
    from pipeline.enrich import accounts
    from pipeline.lake.store import open_store

    _configure_aws(args)
    require_lake(args.lake, create=not args.show)
    store = open_store(args.lake)
    if args.show:
        table = accounts.read_cache(store)
        rows = [] if table is None else table.to_pylist()
        if args.json:
            print(json.dumps(rows, indent=2, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))
        else:
            print(format_accounts(rows))
        return EXIT_OK
    if args.from_organizations:
        from pipeline import aws

        rows, refresh = accounts.from_organizations(aws.client("organizations"))
    else:
        rows, refresh = accounts.from_csv(args.csv)
    accounts.write_cache(store, rows, refresh.source)
    if args.json:
        print(json.dumps(refresh.to_dict(), indent=2))
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
    lines.append(f"{len(rows)} account(s) from {rows[0]['source']}, refreshed {when:%Y-%m-%dT%H:%M:%SZ}")
    return "\n".join(lines)


def cmd_enrich_ip(args) -> int:
    from pipeline.enrich.ipinfo import IpLookup

    lookup = IpLookup(enrich_options(args).ip_db, args.aws_ranges)
    try:
        rows = [{"address": a, **lookup.lookup(a).columns()} for a in args.address]
    finally:
        lookup.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for r in rows:
        print(f"{r['address']:<40} {r['src_ip_class'] or '-':<10} {'AS' + str(r['src_asn']) if r['src_asn'] else '-':<10} "
              f"{r['src_country'] or '-':<3} {r['src_as_org'] or '-'}")
    if not getattr(args, "ip_db", None):
        print("(no --ip-db: ASN, AS organisation and country unknown)")
    return EXIT_OK
