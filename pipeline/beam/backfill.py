"""``soclake backfill``: the ingest on Apache Beam (Dataflow, Flink, Spark or the DirectRunner).

Same listing and filters, same normalisers, same lake layout and the same ledger as ``soclake
ingest``: a backfill and later local incremental runs share one lake and never ingest an object
twice. The driver holds the lake's writer lease for the whole job. Before the job starts it
finishes or removes what an interrupted run left (as the local runner does); the job then
stages every file, commits the ledger once, at the end, and moves the files into place.

Nothing here imports Beam at module level: the ``backfill`` command only parses flags until it runs.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence

from pipeline import aws
from pipeline.errors import ConfigError, LakeError
from pipeline.lake.lease import writer_lease
from pipeline.lake.ledger import Ledger
from pipeline.lake.store import open_store
from pipeline.sources import Filters, open_source, walk

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")
#: Runners whose workers do not share this machine's filesystem: source and lake must be s3://.
REMOTE_ONLY = ("DataflowRunner",)


def run_backfill(source: str, lake: str, filters: Filters | None = None, pipeline_args: Sequence[str] = (), *,
                 aws_settings: aws.AwsSettings | None = None, retry_quarantined: bool = False,
                 shard_bytes: int | None = None, wait: float = 0.0, progress=None) -> dict:
    """Run the backfill pipeline to completion and return its report (the keys of ``soclake ingest --json``).

    ``source`` and ``lake`` are URIs exactly as a local run would be given them (object URIs in
    the ledger are built from ``source``). ``pipeline_args`` go to Beam's PipelineOptions
    (``--runner``, ``--project``, …). AWS clients on the workers use ``aws_settings`` (default:
    the process-wide settings the CLI configured). ``wait``: seconds to wait for another
    writer's lease (0 = fail at once with :class:`~pipeline.errors.LeaseHeld`). ``progress(step)``
    hears each step (``pipeline.cli.progress.StepProgress``).
    """
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from pipeline.ingest import recover

    t0 = time.perf_counter()
    filters = filters or Filters()
    settings = aws_settings or aws._settings
    options = PipelineOptions(list(pipeline_args))
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    if runner in REMOTE_ONLY:
        local = [u for u in (source, lake) if not u.startswith("s3://")]
        if local:
            raise ConfigError(f"{runner} workers cannot reach {local[0]}: give --source and --lake as s3:// URIs")

    def s3():
        return aws.s3_client(settings)

    progress = progress or (lambda step: None)
    store, lister = open_store(lake, s3), open_source(source, s3)
    progress("checking the source")
    next(walk(lister, filters), None)  # fail here (no AWSLogs/, no access) rather than inside a job
    with writer_lease(store, "backfill", wait=wait) as lease:
        progress("reading the ledger")
        ledger = Ledger.load(store)
        orphans = lease.settled + recover(store, ledger)
        return _run_job(store, source, lake, filters, options, runner, settings, ledger, orphans, t0,
                        retry_quarantined=retry_quarantined, shard_bytes=shard_bytes, progress=progress)


def _run_job(store, source, lake, filters, options, runner, settings, ledger, orphans, t0, *,
             retry_quarantined: bool, shard_bytes: int | None, progress) -> dict:
    import apache_beam as beam

    from pipeline.beam.transforms import DEFAULT_SHARD_BYTES, REPORT_PREFIX, BackfillConfig, build

    cfg = BackfillConfig(source=source, lake=lake, run_id=ledger.run_id, ingested_at=dt.datetime.now(dt.UTC),
                         filters=filters, aws=settings, retry_quarantined=retry_quarantined,
                         shard_bytes=shard_bytes or DEFAULT_SHARD_BYTES)
    p = beam.Pipeline(options=options)
    build(p, cfg)
    progress(f"the {runner} job is listing, reading and writing (run {cfg.run_id})")
    result = p.run()
    state = result.wait_until_finish()
    if state != "DONE":
        raise LakeError(f"the {runner} job ended {state}; nothing uncommitted is kept, rerun to continue")
    progress("reading the job's report")
    try:
        report = json.loads(store.get(f"{REPORT_PREFIX}{cfg.run_id}.json"))
    except (OSError, LakeError) as e:
        raise LakeError(f"the job finished but wrote no report for run {cfg.run_id}: {e}") from e
    elapsed = time.perf_counter() - t0
    total = sum(report["events"].values())
    report.update(runner=runner, orphans_removed=orphans, elapsed_s=round(elapsed, 3),
                  events_per_s=round(total / elapsed) if elapsed else 0, metrics=_counters(result))
    return report


def _counters(result) -> dict[str, int]:
    """The soclake counters (committed where the runner has them, else attempted)."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        found = result.metrics().query(MetricsFilter().with_namespace("soclake"))["counters"]
    except Exception:  # some portable runners report no metrics to the client
        return {}
    out: dict[str, int] = {}
    for c in found:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + (value or 0)
    return dict(sorted(out.items()))


def unknown_beam_args(args: Sequence[str]) -> list[str]:
    """Arguments no Beam PipelineOptions class defines (Beam itself would drop them with a warning)."""
    try:
        from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

        parser = _BeamArgumentParser(allow_abbrev=False)
        for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
            cls._add_argparse_args(parser)
        _, unknown = parser.parse_known_args(list(args))
    except Exception:  # Beam's internals moved: let Beam warn instead
        return []
    return [a for a in unknown if a.startswith("-")]
