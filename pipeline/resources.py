"""Where the table contracts (``schemas/``) and the rule catalogue (``detections/``) are.

In a checkout or an editable install they sit beside the package; a wheel installs them as
data files under ``<prefix>/share/soclake/`` (see pyproject.toml), which is what remote Beam
workers and container images get.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def resource_dir(name: str) -> Path:
    for base in (_REPO, Path(sys.prefix) / "share" / "soclake"):
        if (base / name).is_dir():
            return base / name
    return _REPO / name  # the error that follows names the expected place
