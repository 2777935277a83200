"""Deterministic ids and AWS time formats shared by the synthetic data modules."""

from __future__ import annotations

import hashlib
import itertools
import random
from datetime import UTC, datetime
from typing import Any


class Whole(dict):
    """A dict that replaces rather than merges when used as a factory override. The identity and
    resource helpers return these, so ``userIdentity=root(account)`` is exactly the root identity."""


ALNUM_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # IAM unique ids use base32-ish characters


def stable_id(prefix: str, *parts: Any, length: int = 16, alphabet: str = ALNUM_UPPER) -> str:
    """A deterministic id such as an IAM unique id (``AIDA...``) or access key (``AKIA...``)."""
    digest = hashlib.shake_256("\x1f".join(map(str, parts)).encode()).digest(length)
    return prefix + "".join(alphabet[b % len(alphabet)] for b in digest)


def stable_hex(*parts: Any, length: int = 32) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=32).hexdigest()[:length]


def format_uuid4(h: str) -> str:
    """Format 32 hex characters as a version-4 UUID string."""
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


SEQ = itertools.count(1)


def new_uuid(rng: random.Random | None = None) -> str:
    """A UUID from ``rng``, or from a process-wide counter (deterministic per call order)."""
    if rng is not None:
        return format_uuid4(rng.randbytes(16).hex())
    return format_uuid4(stable_hex("soclake-synth-seq", next(SEQ)))


def ct_time(when: datetime | float | int | str) -> str:
    """CloudTrail time format: ``YYYY-MM-DDTHH:MM:SSZ``."""
    if isinstance(when, str):
        return when
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, tz=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gd_time(when: datetime | float | int | str, millis: int = 0) -> str:
    """GuardDuty time format: ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    if isinstance(when, str):
        return when
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, tz=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis % 1000:03d}Z"
