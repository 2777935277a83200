"""JSON Lines file and stdout: the simplest sinks, and the reference for writing others."""

from __future__ import annotations

import json
import os
import sys
from typing import Literal

from pipeline.forward.base import SendResult, SinkConfig
from pipeline.forward.render import to_json, to_ocsf


def _render(fmt: str, alert) -> str:
    return json.dumps(to_ocsf(alert) if fmt == "ocsf" else to_json(alert), separators=(",", ":"))


class JsonlConfig(SinkConfig):
    type: Literal["jsonl"]
    path: str
    format: Literal["soclake", "ocsf"] = "soclake"


class StdoutConfig(SinkConfig):
    type: Literal["stdout"]
    format: Literal["soclake", "ocsf"] = "soclake"


class JsonlSink:
    """Appends one JSON object per line and fsyncs before reporting delivery."""

    max_batch = 500

    def __init__(self, cfg: JsonlConfig):
        self.name, self.cfg = cfg.name, cfg

    def send(self, alerts) -> SendResult:
        os.makedirs(os.path.dirname(os.path.abspath(self.cfg.path)), exist_ok=True)
        with open(self.cfg.path, "a") as f:
            f.write("".join(_render(self.cfg.format, a) + "\n" for a in alerts))
            f.flush()
            os.fsync(f.fileno())
        return SendResult(delivered=[a.id for a in alerts])

    def close(self) -> None:
        pass


class StdoutSink:
    max_batch = 500

    def __init__(self, cfg: StdoutConfig):
        self.name, self.cfg = cfg.name, cfg

    def send(self, alerts) -> SendResult:
        sys.stdout.write("".join(_render(self.cfg.format, a) + "\n" for a in alerts))
        sys.stdout.flush()
        return SendResult(delivered=[a.id for a in alerts])

    def close(self) -> None:
        pass
