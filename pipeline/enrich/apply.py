"""Enrich rule output rows before they become alerts: account name and OU, source IP class, ASN,
AS organisation and country.

Rows gain the columns of :data:`COLUMNS` (a rule that returns one itself keeps its value), so they
reach the alert evidence, the alert's own fields and its title (``{account_name}``, ``{src_as_org}``)
without each rule joining anything. Enrichment never blocks detection: a missing cache or
database, or one that cannot be read, leaves its columns NULL and adds one warning line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.enrich import accounts as accounts_mod
from pipeline.enrich.ipinfo import IpInfo, IpLookup

ACCOUNT_COLUMNS = ("account_name", "account_ou")
IP_COLUMNS = ("src_ip_class", "src_asn", "src_as_org", "src_country")
COLUMNS = ACCOUNT_COLUMNS + IP_COLUMNS
#: Where a rule's row carries the source address, in order of preference.
IP_SOURCES = ("sourceIPAddress", "source_ip", "remote_ip")


@dataclass(frozen=True)
class EnrichOptions:
    ip_db: tuple[str, ...] = ()  # MaxMind-format files (ASN, country, city; any order)
    aws_ranges: str | None = None  # a saved copy of AWS's ip-ranges.json


@dataclass
class Enricher:
    accounts: dict[str, dict] = field(default_factory=dict)
    table: object = None  # the cached accounts as an Arrow table (the ``accounts`` view), or None
    ips: IpLookup | None = None
    warning: str | None = None  # one line naming what is missing, or None

    @classmethod
    def load(cls, store, opts: EnrichOptions | None = None) -> Enricher:
        """The lake's account cache and the IP databases; whatever is configured but fails becomes
        part of one warning (no cache and no ``--ip-db`` just mean NULL columns: enrichment is opt-in)."""
        opts = opts or EnrichOptions()
        missing, accounts, table = [], {}, None
        try:
            table = accounts_mod.read_cache(store)  # None: never refreshed, not a warning (opt-in)
            accounts = accounts_mod.by_id(table)
        except Exception as e:  # noqa: BLE001 - enrichment must never stop detection
            missing.append(f"account cache unreadable ({type(e).__name__})")
            table = None
        ips = None
        try:
            ips = IpLookup(opts.ip_db, opts.aws_ranges)
        except Exception as e:  # noqa: BLE001
            missing.append(str(e))
            try:
                ips = IpLookup((), None)  # the address class needs no database
            except Exception:  # noqa: BLE001
                ips = None
        warning = f"enrichment: {'; '.join(missing)}: those columns are NULL (docs/enrichment.md)" if missing else None
        return cls(accounts, table, ips, warning)

    def register(self, con) -> None:
        """The ``accounts`` view and ip_* functions rules may use, over this enricher's data."""
        from pipeline.enrich import sql

        sql.register_accounts(con, self.table)
        sql.register_functions(con, self.ips)

    def ip(self, value) -> IpInfo:
        return self.ips.lookup(str(value)) if self.ips is not None and value else IpInfo()

    def account(self, account_id) -> dict:
        return self.accounts.get(str(account_id), {}) if account_id else {}

    def row(self, row: dict) -> dict:
        """Add the enrichment columns to one row (in place); the row's own values win."""
        acct = self.account(row.get("account_id"))
        add = {"account_name": acct.get("account_name"), "account_ou": acct.get("ou_path")}
        ip = next((row[c] for c in IP_SOURCES if row.get(c)), None)
        add.update(self.ip(ip).columns())
        for k, v in add.items():
            if row.get(k) is None:
                row[k] = v
        return row

    def rows(self, rows: list[dict]) -> list[dict]:
        for r in rows:
            self.row(r)
        return rows

    def close(self) -> None:
        if self.ips is not None:
            self.ips.close()
