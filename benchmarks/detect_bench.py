"""`make bench`, detection: the whole catalogue next to one plain DuckDB pass over the columns
the rules name, on (a) the dense 1M-event lake, (b) a sparse four-year archive with every day
its own partition, (c) a 5M-event lake (peak RSS must not grow with the lake).

Each detection runs as ``soclake detect --json`` in its own process (peak RSS covers it); the
baseline runs in its own process too. The catalogue runs twice on the dense lake: first with an
empty rule-analysis cache (``cold``: a first run, or rules just changed), then as a scheduled
run finds it (``catalogue``: the cache in place, the headline figure). Ratios compare DuckDB query time with the detect run's own
elapsed time (both without interpreter start-up), and the same for CPU time (all threads), which
a busy machine disturbs less than wall time.
Usage: python -m benchmarks.detect_bench [--events N] [--skip-5m]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

from benchmarks.rss import run_measured

ROOT = Path(".bench")
PY = sys.executable
CACHE = ROOT / "cache"  # the rule-analysis cache of the benchmark's runs (pipeline/detect/shape_cache.py)

BASELINE = """
import sys, time, duckdb
from pipeline import schema, views
from pipeline.detect.rules import load_rules
from pipeline.detect.sqlshape import analyse
cols = set()
for r in load_rules():
    c = analyse(r.query).columns.get('cloudtrail')
    cols |= set(schema.arrow_schema('cloudtrail').names) if c is None and 'cloudtrail' in analyse(r.query).tables else (c or set())
con = duckdb.connect()
views.register(con, sys.argv[1], prefix='lake_')
sel = ', '.join(f'"{c}"' for c in sorted(cols))
t, c = time.perf_counter(), time.process_time()
n = con.execute(f'SELECT count(*) FROM lake_cloudtrail WHERE hash({sel}) IS NOT NULL').fetchone()[0]
print(n, len(cols), time.perf_counter() - t, time.process_time() - c)
"""


def _lake(events: int) -> Path:
    """The ingested lake of the cached ``events``-event archive (ingested once)."""
    from benchmarks.ingest_bench import ensure_archive

    logs, _ = ensure_archive(events)
    lake = ROOT / f"detect-lake-{events}"
    if not (lake / "_state").exists():
        shutil.rmtree(lake, ignore_errors=True)
        out = run_measured([PY, "-m", "pipeline", "ingest", "--source", str(logs), "--lake", str(lake), "--json"])[2]
        assert out.returncode == 0, out.stderr
    return lake


def _sparse_lake(events: int = 3654, days: int = 1461) -> Path:
    """A few thousand events over four years: every day a separate partition."""
    lake = ROOT / f"sparse-lake-{events}"
    if not (lake / "_state").exists():
        from pipeline.synth import DirSink, generate_archive

        src = ROOT / f"sparse-archive-{events}"
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(lake, ignore_errors=True)
        generate_archive(DirSink(src), seed=3, accounts=2, regions=("us-east-1",), start="2020-11-01", days=days,
                         events=events, events_per_object=5, guardduty_findings=20, scenarios=("all",))
        out = run_measured([PY, "-m", "pipeline", "ingest", "--source", str(src), "--lake", str(lake), "--json"])[2]
        assert out.returncode == 0, out.stderr
    return lake


def _detect(lake: Path, *extra: str) -> dict:
    env = {**os.environ, "SOCLAKE_CACHE_DIR": str(CACHE)}
    secs, rss, out = run_measured([PY, "-m", "pipeline", "detect", "--lake", str(lake), "--since", "2010-01-01",
                                   "--until", "2030-01-01", "--json", *extra], env=env)
    assert out.returncode in (0, 2), out.stderr
    rep = json.loads(out.stdout)
    return {"process_s": round(secs, 2), "elapsed_s": rep["elapsed_s"], "cpu_s": rep["cpu_s"],
            "peak_rss_mb": round(rss / 1e6),
            "windows": rep["windows"], "rows_scanned": rep["rows_scanned"], "candidate_rows": rep["candidate_rows"],
            "alerts": rep["alerts_new"] + rep["alerts_updated"] + rep["alerts_unchanged"],
            "slowest_rules": rep["rule_costs"][:3]}


def _baseline(lake: Path) -> dict:
    secs, rss, out = run_measured([PY, "-c", BASELINE, str(lake)])
    assert out.returncode == 0, out.stderr
    rows, ncols, query_s, cpu_s = out.stdout.split()
    return {"rows": int(rows), "columns": int(ncols), "query_s": round(float(query_s), 3),
            "cpu_s": round(float(cpu_s), 3), "peak_rss_mb": round(rss / 1e6)}


def bench(events: int, big: bool) -> dict:
    res: dict = {}
    dense = _lake(events)
    base = _baseline(dense)
    shutil.rmtree(CACHE, ignore_errors=True)
    cold = _detect(dense)
    cat = _detect(dense)
    res["dense"] = {"events": events, "one_duckdb_pass_over_rule_columns": base, "catalogue": cat,
                    "catalogue_vs_one_pass": round(cat["elapsed_s"] / base["query_s"], 2),
                    "catalogue_vs_one_pass_cpu": round(cat["cpu_s"] / base["cpu_s"], 2),
                    "catalogue_cold_cache": cold,
                    "catalogue_cold_vs_one_pass": round(cold["elapsed_s"] / base["query_s"], 2),
                    "catalogue_cold_vs_one_pass_cpu": round(cold["cpu_s"] / base["cpu_s"], 2)}
    res["dense"]["catalogue_per_rule_scan"] = _detect(dense, "--scan", "per-rule")
    sparse = _sparse_lake()
    res["sparse_4_years"] = {"partitions": sum(1 for _ in (sparse / "cloudtrail").glob("event_date=*")),
                             "catalogue": _detect(sparse)}
    if big:
        res["dense_5x"] = {"events": events * 5, "catalogue": _detect(_lake(events * 5))}
        res["peak_rss_5x_vs_1x"] = round(res["dense_5x"]["catalogue"]["peak_rss_mb"] / cat["peak_rss_mb"], 2)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--skip-5m", action="store_true", help="skip the 5x lake (memory stays flat)")
    args = p.parse_args(argv)
    ROOT.mkdir(exist_ok=True)
    machine = {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
               "load_average_1m": round(os.getloadavg()[0], 2)}
    res = bench(args.events, not args.skip_5m)
    machine["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps({"machine": machine, "detect": res}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
