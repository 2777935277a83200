"""Enrichment inside DuckDB, so rules and analysts' queries can use it: an ``accounts`` view (the
lake's account cache) and the functions ``ip_class``, ``ip_asn``, ``ip_as_org`` and ``ip_country``.

``ip_class`` needs no database; the other three answer from the IP databases detect was given
(``--ip-db``) and are NULL elsewhere (rule tests, ``soclake query``).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipeline.enrich.accounts import ARROW_SCHEMA
from pipeline.enrich.ipinfo import IpLookup

FUNCTIONS = {"ip_class": ("ip_class", "VARCHAR"), "ip_asn": ("asn", "BIGINT"), "ip_as_org": ("as_org", "VARCHAR"),
             "ip_country": ("country", "VARCHAR")}


def register_accounts(con: duckdb.DuckDBPyConnection, table: pa.Table | None, name: str = "accounts") -> None:
    """View ``name`` over the cached accounts (empty, with the same columns, when there is no cache)."""
    table = table if table is not None else ARROW_SCHEMA.empty_table()
    con.register(f"_{name}_arrow", table)
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _{name}_arrow")


def register_functions(con: duckdb.DuckDBPyConnection, lookup: IpLookup | None = None) -> None:
    """(Re)define the ip_* functions on this connection (and its cursors) over ``lookup``."""
    lookup = lookup or IpLookup()
    for fn, (attr, typ) in FUNCTIONS.items():
        try:
            con.remove_function(fn)
        except (duckdb.InvalidInputException, duckdb.CatalogException):
            pass
        con.create_function(fn, _field(lookup, attr), ["VARCHAR"], typ, null_handling="special", side_effects=False)


def _field(lookup: IpLookup, attr: str):
    def call(v):
        return getattr(lookup.lookup(v), attr) if v else None

    return call


def register_lake(con: duckdb.DuckDBPyConnection, lake: str, prefix: str = "") -> None:
    """``{prefix}accounts`` from the lake's cache and the ip_* functions without databases."""
    from pipeline.enrich.accounts import read_cache
    from pipeline.lake.store import open_store

    try:
        table = read_cache(open_store(lake))
    except Exception:  # noqa: BLE001 - a view of enrichment never stops a reader
        table = None
    register_accounts(con, table, f"{prefix}accounts")
    register_functions(con)
