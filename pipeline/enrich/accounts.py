"""Account id -> name, OU path and tags, from AWS Organizations or a CSV file, cached in the lake.

The cache is one small Parquet file, ``_enrich/accounts.parquet`` under the lake root, replaced
atomically by ``soclake enrich accounts`` (a single PUT on S3, temp + rename locally), so detect,
the report and ``soclake query`` read it without the writer lease. Detection reads it once per run:
an organisation's accounts are thousands at most.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import ConfigError

CACHE = "_enrich/accounts.parquet"
ARROW_SCHEMA = pa.schema([
    ("account_id", pa.string()), ("account_name", pa.string()), ("email", pa.string()), ("status", pa.string()),
    ("ou_id", pa.string()), ("ou_path", pa.string()), ("tags", pa.map_(pa.string(), pa.string())),
    ("source", pa.string()), ("refreshed_at", pa.timestamp("us", tz="UTC")),
])
_ACCOUNT = re.compile(r"^\d{12}$")
_CSV_NAME = ("name", "account_name")
_CSV_OU = ("ou", "ou_path")
_CSV_FIXED = {"account_id", "email", "status", "ou_id", "tags", *_CSV_NAME, *_CSV_OU}


@dataclass
class Refresh:
    """What a refresh wrote: how many accounts, from where, and how many API pages it read."""

    source: str
    accounts: int
    pages: int = 0
    ous: int = 0

    def to_dict(self) -> dict:
        return {"source": self.source, "accounts": self.accounts, "pages": self.pages, "ous": self.ous, "cache": CACHE}


def from_organizations(client, page_size: int = 20) -> tuple[list[dict], Refresh]:
    """Every account of the organisation with its OU path and tags (ListAccounts, ListParents,
    DescribeOrganizationalUnit, ListTagsForResource; all paginated). Needs the management account
    or a delegated administrator."""
    rows, pages, ou_names, parent_of = [], 0, {}, {}
    for page in client.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": page_size}):
        pages += 1
        for acct in page["Accounts"]:
            path, first = _ou_path(client, acct["Id"], ou_names, parent_of)
            tags = {}
            for tp in client.get_paginator("list_tags_for_resource").paginate(ResourceId=acct["Id"]):
                tags.update({t["Key"]: t["Value"] for t in tp.get("Tags", [])})
            rows.append({"account_id": acct["Id"], "account_name": acct.get("Name"), "email": acct.get("Email"),
                         "status": acct.get("Status"), "ou_id": first, "ou_path": path, "tags": tags})
    return rows, Refresh("organizations", len(rows), pages, len(ou_names))


def _ou_path(client, child: str, names: dict, parent_of: dict) -> tuple[str, str | None]:
    """("Root/Prod/Payments", the account's own OU id or the root id), walking parents up to the root."""
    chain, node = [], child
    while True:
        if node not in parent_of:
            parents = client.list_parents(ChildId=node)["Parents"]  # a child has exactly one parent
            parent_of[node] = (parents[0]["Id"], parents[0]["Type"]) if parents else (None, "ROOT")
        pid, ptype = parent_of[node]
        if pid is None or ptype == "ROOT":
            chain.append("Root")
            break
        if pid not in names:
            names[pid] = client.describe_organizational_unit(OrganizationalUnitId=pid)["OrganizationalUnit"]["Name"]
        chain.append(names[pid])
        node = pid
    first = parent_of[child][0]
    return "/".join(reversed(chain)), first


def from_csv(path: str) -> tuple[list[dict], Refresh]:
    """Accounts from a CSV with a header: ``account_id`` and ``name`` (or ``account_name``), optional
    ``ou`` (or ``ou_path``), ``email``, ``status``, ``tags`` (``key=value;key=value``); every other
    column is a tag named after its header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            if "account_id" not in header:
                raise ConfigError(f"{path}:1: the header needs an account_id column (account_id,name,ou,tags...)")
            rows, seen = [], set()
            for line, raw in enumerate(reader, start=2):
                rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
                acct = rec.get("account_id", "").zfill(12) if rec.get("account_id", "").isdigit() else rec.get("account_id", "")
                if not _ACCOUNT.match(acct):
                    raise ConfigError(f"{path}:{line}: account_id {rec.get('account_id')!r} is not 12 digits")
                if acct in seen:
                    raise ConfigError(f"{path}:{line}: account {acct} listed twice")
                seen.add(acct)
                tags = dict(kv.split("=", 1) for kv in rec.get("tags", "").split(";") if "=" in kv)
                tags.update({k: v for k, v in rec.items() if k not in _CSV_FIXED and k and v})
                rows.append({"account_id": acct, "account_name": _first(rec, _CSV_NAME), "email": rec.get("email") or None,
                             "status": rec.get("status") or None, "ou_id": rec.get("ou_id") or None,
                             "ou_path": _first(rec, _CSV_OU), "tags": {k.strip(): v.strip() for k, v in tags.items()}})
    except FileNotFoundError:
        raise ConfigError(f"accounts CSV {path} not found") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"accounts CSV {path}: not readable as CSV ({type(e).__name__})") from None
    return rows, Refresh("csv", len(rows))


def _first(rec: dict, keys: tuple[str, ...]) -> str | None:
    return next((rec[k] for k in keys if rec.get(k)), None)


def write_cache(store, rows: list[dict], source: str, now: dt.datetime | None = None) -> None:
    """Replace the lake's account cache with ``rows`` in one atomic write."""
    now = now or dt.datetime.now(dt.UTC)
    data = [{**r, "tags": sorted((r.get("tags") or {}).items()), "source": source, "refreshed_at": now}
            for r in sorted(rows, key=lambda r: r["account_id"])]
    table = pa.Table.from_pylist(data, schema=ARROW_SCHEMA)
    with store.writing(CACHE) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_cache(store) -> pa.Table | None:
    """The cached accounts, or None when no refresh has run (or the file is unreadable)."""
    try:
        return pq.read_table(io.BytesIO(store.get(CACHE)))
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return None


def by_id(table: pa.Table | None) -> dict[str, dict]:
    """account id -> {account_name, ou_path, tags}."""
    if table is None:
        return {}
    return {r["account_id"]: {"account_name": r["account_name"], "ou_path": r["ou_path"], "tags": dict(r["tags"] or [])}
            for r in table.select(["account_id", "account_name", "ou_path", "tags"]).to_pylist()}
