"""Sink types by config ``type``: an explicit dict (model class, factory).

A factory takes the validated config and returns a sink (see :mod:`pipeline.forward.base`).
Third-party sinks can be added under the ``soclake.sinks`` entry point group with the same pair.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from pipeline.forward.sinks import jsonl

SINK_TYPES: dict[str, tuple] = {
    "jsonl": (jsonl.JsonlConfig, jsonl.JsonlSink),
    "stdout": (jsonl.StdoutConfig, jsonl.StdoutSink),
}


def _optional(module: str) -> None:
    """Sink modules written alongside: registered when present."""
    import importlib

    try:
        mod = importlib.import_module(f"pipeline.forward.sinks.{module}")
    except ModuleNotFoundError as e:
        if e.name == f"pipeline.forward.sinks.{module}":
            return
        raise
    SINK_TYPES.update(getattr(mod, "SINK_TYPES", {}))


for _m in ("splunk_hec", "webhook", "elasticsearch", "syslog", "aws"):
    _optional(_m)

for ep in entry_points(group="soclake.sinks"):
    SINK_TYPES.setdefault(ep.name, ep.load())


def build_sink(cfg):
    return SINK_TYPES[cfg.type][1](cfg)
