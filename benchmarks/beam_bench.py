"""The Beam backfill on the DirectRunner (multi_processing, 2 workers) over an archive folder.

Measured like the local runner in ingest_bench.py: its own process, peak RSS of the process tree
(the runner and its SDK worker processes). Only the listing crosses a shuffle (workers write
the Parquet files themselves), so memory is the workers' writer buffers, not the archive.
Usage: python -m benchmarks.beam_bench [LOGS_DIR]   (default: the 1M-event archive of make bench)
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.rss import run_measured

DEFAULT_LOGS = Path(".bench/archive-1000000/logs")


def bench_beam(logs_dir: str, workers: int = 2, mb: float | None = None) -> dict:
    """Backfill ``logs_dir`` into a fresh temporary lake; events/s and peak RSS of the whole run."""
    lake = Path(tempfile.mkdtemp(prefix="beam-lake-", dir=Path(logs_dir).parent))
    try:
        cmd = [sys.executable, "-m", "pipeline", "backfill", "--source", str(logs_dir), "--lake", str(lake),
               "--runner", "DirectRunner", "--direct_running_mode=multi_processing",
               f"--direct_num_workers={workers}", "--json"]
        secs, rss, out = run_measured(cmd)
        if out.returncode not in (0, 2):
            raise RuntimeError(f"beam backfill failed ({out.returncode}): {out.stderr[-3000:]}")
        report = json.loads(out.stdout)
    finally:
        shutil.rmtree(lake, ignore_errors=True)
    events = sum(report["events"].values())
    return {
        "runner": f"DirectRunner multi_processing, {workers} workers",
        "events": events,
        "objects": report["ingested_objects"],
        "s": round(secs, 2),
        "events_per_s": round(events / secs),
        "mb_per_s": round(mb / secs, 1) if mb else None,  # uncompressed JSON, when the caller knows it
        "pipeline_s": report["elapsed_s"],  # inside the driver: listing, the job, reading the report
        "peak_rss_mb": round(rss / 1e6),
        "files": report["files_written"],
        "parquet_bytes_per_event": round(report["parquet_bytes"] / events, 1) if events else 0,
    }


if __name__ == "__main__":
    print(json.dumps(bench_beam(sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_LOGS)), indent=2))
