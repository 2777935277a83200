"""Detection timing on an ingested lake: the whole catalogue (one shared scan per window, and
one scan per rule) next to one plain full scan of the same table."""

from __future__ import annotations

import time

import duckdb

from pipeline import views
from pipeline.detect.engine import DetectOptions, detect
from pipeline.detect.rules import load_rules
from pipeline.lake import LocalStore


def bench_detect(lake: str) -> dict:
    rules = [r for r in load_rules() if r.enabled]
    con = duckdb.connect()
    views.register(con, lake, prefix="lake_")
    t = time.perf_counter()
    con.execute("CREATE TEMP TABLE full_scan AS SELECT * FROM lake_cloudtrail")
    full = time.perf_counter() - t
    rows = con.execute("SELECT count(*) FROM full_scan").fetchone()[0]
    con.close()
    out = {"rules": len(rules), "rows": rows, "plain_full_scan_s": round(full, 2)}
    for scan in ("shared", "per-rule"):
        t = time.perf_counter()
        rep = detect(lake, LocalStore(lake), rules, DetectOptions(scan=scan, incremental=False))
        out[f"catalogue_{scan}_s"] = round(time.perf_counter() - t, 2)
        out[f"catalogue_{scan}_alerts"] = len(rep.new) + len(rep.updated) + rep.unchanged
    out["shared_vs_full_scan"] = round(out["catalogue_shared_s"] / full, 2)
    return out
