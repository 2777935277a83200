"""`make bench`: ingest throughput and memory next to the floor (gunzip only) and plain DuckDB.

All figures come from one run on the same files on this machine. Each contender runs in its own
process; peak RSS covers that process and its children (worker processes included). Every line
gives events/s, MB/s (uncompressed JSON), peak RSS and its ratio to its baseline: tuned DuckDB
for soclake ingest and untuned DuckDB, the local runner for the Beam DirectRunner. JSON on
stdout, the same figures as a table on stderr.
Usage: python -m benchmarks.ingest_bench [--events N] [--scale-check] [--skip-duckdb]
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


def ensure_archive(events: int) -> tuple[Path, dict]:
    """Generate (once, cached by size) a synthetic archive of ``events`` CloudTrail events."""
    path = ROOT / f"archive-{events}"
    meta = path / "summary.json"
    if not meta.exists():
        from pipeline.synth import DirSink, generate_archive

        shutil.rmtree(path, ignore_errors=True)
        print(f"generating a {events:,}-event archive in {path} …", flush=True)
        s = generate_archive(DirSink(path / "logs"), seed=11, accounts=4, regions=("us-east-1", "eu-west-1"),
                             days=3, events=events, events_per_object=500, guardduty_findings=200)
        meta.write_text(json.dumps({"events": s.events, "objects": s.objects, "json_bytes": s.json_bytes,
                                    "gz_bytes": s.bytes, "findings": s.findings}))
    return path / "logs", json.loads(meta.read_text())


GUNZIP = """
import sys, glob, time
from concurrent.futures import ProcessPoolExecutor
from isal import igzip
def n(p):
    with open(p, 'rb') as f: return len(igzip.decompress(f.read()))
files = glob.glob(sys.argv[1] + '/**/CloudTrail/**/*.json.gz', recursive=True)
with ProcessPoolExecutor(int(sys.argv[2])) as pool: total = sum(pool.map(n, files, chunksize=16))
print(total)
"""

DUCKDB = """
import sys, duckdb
from pipeline import schema
cols = ', '.join(f'"{c.name}" {schema.duckdb_type(schema.arrow_type(c))}'
                 for c in schema.load('cloudtrail').columns if not c.derived)
con = duckdb.connect()
con.execute('SET threads = 2')
if sys.argv[3] == 'tuned':  # DuckDB's own advice for large COPYs: what a user who reaches for DuckDB sets
    con.execute('SET preserve_insertion_order = false')
glob = sys.argv[1] + '/AWSLogs/*/CloudTrail/**/*.json.gz'
con.execute(f\"\"\"COPY (SELECT unnest(Records, max_depth := 2) FROM read_json('{glob}',
    columns = {{'Records': 'STRUCT({cols.replace("'", "''")})[]'}}, records = true, maximum_object_size = 1000000000))
    TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)\"\"\")
print(con.execute(f"SELECT count(*) FROM '{sys.argv[2]}'").fetchone()[0])
"""


def figures(secs: float, rss: int, events: int, mb: float) -> dict:
    """What every line reports: time, events/s, MB/s of uncompressed JSON, peak RSS."""
    return {"s": round(secs, 2), "events_per_s": round(events / secs), "mb_per_s": round(mb / secs, 1),
            "peak_rss_mb": round(rss / 1e6)}


#: Each line's baseline: the ratio printed is its events/s over the baseline's.
BASELINES = {"duckdb_default_settings": "duckdb_tuned", "soclake_ingest": "duckdb_tuned",
             "beam_direct_runner": "soclake_ingest"}


def bench(events: int, skip_duckdb: bool, detect: bool = True) -> dict:
    logs, meta = ensure_archive(events)
    mb = meta["json_bytes"] / 1e6
    res = {"events": meta["events"], "objects": meta["objects"], "uncompressed_mb": round(mb, 1)}
    lake = ROOT / f"lake-{events}"
    shutil.rmtree(lake, ignore_errors=True)

    secs, rss, out = run_measured([PY, "-c", GUNZIP, str(logs), "2"])
    assert out.returncode == 0, out.stderr
    res["gunzip_only"] = figures(secs, rss, meta["events"], mb)

    if not skip_duckdb:
        target = ROOT / "duckdb.parquet"
        for mode, name in (("tuned", "duckdb_tuned"), ("default", "duckdb_default_settings")):
            secs, rss, out = run_measured([PY, "-c", DUCKDB, str(logs), str(target), mode])
            if out.returncode == 0:
                res[name] = figures(secs, rss, meta["events"], mb)
            else:
                res[name] = {"error": out.stderr.strip().splitlines()[-1][:300]}
            target.unlink(missing_ok=True)

    secs, rss, out = run_measured([PY, "-m", "pipeline", "ingest", "--source", str(logs), "--lake", str(lake), "--json"])
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    total = sum(rep["events"].values())
    res["soclake_ingest"] = {**figures(secs, rss, total, mb),
                             "parquet_bytes_per_event": round(rep["parquet_bytes"] / total, 1),
                             "files": rep["files_written"]}
    if detect:
        from benchmarks.beam_bench import bench_beam

        res["beam_direct_runner"] = bench_beam(str(logs), mb=mb)
    for name, base in BASELINES.items():
        if "events_per_s" in res.get(name, {}) and "events_per_s" in res.get(base, {}):
            res[name][f"vs_{base}"] = round(res[name]["events_per_s"] / res[base]["events_per_s"], 2)
    shutil.rmtree(lake, ignore_errors=True)
    return res


def table(run: dict) -> str:
    """The run as aligned lines: one per contender, its ratio to its baseline."""
    lines = [f"{run['events']:,} events, {run['uncompressed_mb']:,} MB of JSON"]
    for name, r in run.items():
        if isinstance(r, dict) and "events_per_s" in r:
            base = BASELINES.get(name)
            ratio = f"{r[f'vs_{base}']:.2f}x {base}" if base and f"vs_{base}" in r else ""
            lines.append(f"  {name:25s} {r['events_per_s']:>9,} events/s {r['mb_per_s']:>7,.1f} MB/s "
                         f"{r['peak_rss_mb']:>6,} MB RSS  {ratio}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--scale-check", action="store_true", help="also run a 4x archive to show memory stays flat")
    p.add_argument("--skip-duckdb", action="store_true")
    args = p.parse_args(argv)
    ROOT.mkdir(exist_ok=True)
    machine = {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}
    results = {"machine": machine, "runs": [bench(args.events, args.skip_duckdb)]}
    if args.scale_check:
        results["runs"].append(bench(args.events * 4, skip_duckdb=True, detect=False))
    print(json.dumps(results, indent=2))
    for run in results["runs"]:
        print(table(run), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
