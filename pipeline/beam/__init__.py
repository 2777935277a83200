"""soclake on Apache Beam: the same listing, normalisers, lake layout and ledger as the local runner.

``pipeline.beam.transforms`` holds the composite PTransforms (it imports Beam);
``pipeline.beam.backfill`` builds and runs the pipeline (``soclake backfill`` is in
``pipeline.cli.backfill``; Beam is imported only when a job runs, so the CLI starts fast and works
without the extra).
Install with ``pip install 'soclake[beam]'``; see docs/scale-out.md.
"""
