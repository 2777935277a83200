"""What a person sees while a run goes and when it ends: a progress line and a plain summary."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only named in annotations: detect, verify and report do not import the ingest stack
    from pipeline.ingest import IngestReport

_silenced = False


def silence() -> None:
    """``--quiet``: no progress for the rest of the process, even on a terminal."""
    global _silenced
    _silenced = True


def shown(stream) -> bool:
    """Progress goes to a terminal only, and not after ``--quiet``."""
    return stream.isatty() and not _silenced


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


class IngestProgress:
    """A live progress bar on a terminal; a line every ``interval`` seconds in a log otherwise."""

    def __init__(self, stream=None, interval: float = 10.0):
        self.stream = stream or sys.stderr
        self.tty = shown(self.stream)
        self.interval = interval
        self.t0 = time.perf_counter()
        self._last = self.t0
        self._bar = None

    def __enter__(self):
        if self.tty:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                console=Console(file=self.stream), transient=True, auto_refresh=False,
            )  # no refresh thread: worker processes are forked, and a fork should not copy threads
            self._bar.start()
            self._task = self._bar.add_task("listing…")
        return self

    def __exit__(self, *exc):
        if self._bar:
            self._bar.stop()

    def __call__(self, report: IngestReport, finished: int) -> None:
        now = time.perf_counter()
        el = max(now - self.t0, 1e-9)
        line = (
            f"objects {finished:,} · events {report.total_events:,} · read {_mb(report.bytes_read)} · "
            f"{report.total_events / el:,.0f} events/s · quarantined {len(report.quarantined)}"
        )
        if self._bar:
            if now - self._last >= 0.1:
                self._last = now
                self._bar.update(self._task, description=line, refresh=True)
        elif now - self._last >= self.interval:
            self._last = now
            print(line, file=self.stream, flush=True)


class DetectProgress:
    """Detection's windows, rows and elapsed time: a live line on a terminal, nothing in a log
    (the summary follows)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self._bar = None

    def __enter__(self):
        if shown(self.stream):
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                 console=Console(file=self.stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("planning…", total=None)
        return self

    def __exit__(self, *exc):
        if self._bar:
            self._bar.stop()

    def __call__(self, stage: str, done: int, total: int, rows: int) -> None:
        if self._bar:
            what = f"scan: window {done}/{total} · {rows:,} rows" if stage == "scan" else f"correlate: window {done}/{total}"
            self._bar.update(self._task, description=what, completed=done, total=total)


class StepProgress:
    """A long command's current step (and ``done/total`` when it is known) with the elapsed time:
    a live line on a terminal, nothing when piped or logged (the command's summary follows).

    Used by backfill, forward, verify and report. The line refreshes itself (a rich thread), so a
    step that blocks, such as a Beam job, still shows time passing; none of these commands forks
    (Beam starts its workers with ``subprocess``), which is why ingest's display has no thread.
    """

    def __init__(self, command: str, stream=None):
        self.command = command
        self.stream = stream or sys.stderr
        self._bar = None

    def __enter__(self):
        if shown(self.stream):
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                                 TimeElapsedColumn(), console=Console(file=self.stream), transient=True,
                                 refresh_per_second=4)
            self._bar.start()
            self._task = self._bar.add_task(f"{self.command}: starting…", total=None)
        return self

    def __exit__(self, *exc):
        if self._bar:
            self._bar.stop()

    def __call__(self, step: str, done: int | None = None, total: int | None = None) -> None:
        """Show ``step`` (``done`` of ``total`` when both are given)."""
        if self._bar:
            count = f" {done:,}/{total:,}" if done is not None and total is not None else ""
            self._bar.update(self._task, description=f"{self.command}: {step}{count}", completed=done or 0,
                             total=total, refresh=True)


def format_summary(r: IngestReport, max_listed: int = 20) -> str:
    d = r.to_dict()
    per_table = ", ".join(f"{k} {v:,}" for k, v in sorted(r.events.items())) or "none"
    lines = [
        f"Ingested {r.ingested_objects:,} objects → {r.total_events:,} events ({per_table}) "
        f"in {r.elapsed:.1f} s ({d['events_per_s']:,} events/s)",
        f"  source: {r.source}",
        f"  lake:   {r.lake}",
        "  listed: " + (", ".join(f"{k} {v:,}" for k, v in sorted(r.listed.items())) or "nothing"),
        f"  new/changed/retried: {sum(r.to_ingest.values()):,}   already ingested (skipped): {r.skipped:,}",
        f"  written: {r.files_written:,} Parquet files, {_mb(r.parquet_bytes)}",
    ]
    if r.orphans_removed:
        lines.append(f"  recovered: removed {r.orphans_removed} uncommitted file(s) left by an interrupted run")
    if r.unrecognised:
        lines.append(f"  not in the AWSLogs layout or unknown source ({len(r.unrecognised)}), not ingested:")
        lines += [f"    {k}: {why}" for k, why in r.unrecognised[:max_listed]]
        if len(r.unrecognised) > max_listed:
            lines.append(f"    … and {len(r.unrecognised) - max_listed} more (--json lists all)")
    if r.quarantined:
        lines.append(f"  QUARANTINED {len(r.quarantined)} object(s) (recorded in the ledger; fix or re-deliver, "
                     "then `soclake ingest --retry-quarantined`):")
        lines += [f"    {u}: {why}" for u, why in r.quarantined[:max_listed]]
        if len(r.quarantined) > max_listed:
            lines.append(f"    … and {len(r.quarantined) - max_listed} more (--json lists all)")
    if r.rejected_records:
        lines.append(f"  REJECTED {r.rejected_records:,} record(s) of ingested objects (left out; each object's ledger "
                     "entry lists them by index and reason):")
        lines += [f"    {u}: {why}" for u, _, why in r.rejected[:max_listed]]  # the reason names the record
        if r.rejected_records > max_listed:
            lines.append(f"    … and {r.rejected_records - max_listed} more (--json lists the first {len(r.rejected)})")
    if r.still_quarantined:
        lines.append(f"  {r.still_quarantined} object(s) remain quarantined from earlier runs "
                     "(`soclake ingest --retry-quarantined` tries them again)")
    if r.failed:
        lines.append(f"  FAILED to read {len(r.failed)} object(s) (not recorded: the next run retries them):")
        lines += [f"    {u}: {why}" for u, why in r.failed[:max_listed]]
    return "\n".join(lines)
