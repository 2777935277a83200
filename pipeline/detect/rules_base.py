"""Small shared pieces of the rule format."""

from __future__ import annotations

import datetime as dt
import re

_DURATION = re.compile(r"^(\d+)\s*([smhd])$")


def parse_duration(text: str) -> dt.timedelta:
    """'90s', '15m', '1h', '2d' → timedelta."""
    m = _DURATION.match(str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration like 15m, 1h or 2d")
    n, unit = int(m.group(1)), m.group(2)
    return dt.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})
