"""CloudTrail's public keys, by region and fingerprint: ``ListPublicKeys`` cached in the lake, or a key file.

CloudTrail signs each region's digests with that region's private key; ``ListPublicKeys`` in the
same region returns the public keys valid in a time range (``Value``: DER PKCS#1 RSA public key;
``Fingerprint``: what ``digestPublicKeyFingerprint`` names). Fetched keys are cached in the lake
(``_state/integrity/public-keys.json``), so a verify run calls the API at most once per region
and only for fingerprints it has not seen. Air-gapped: a key file, per region the output of
``aws cloudtrail list-public-keys --region R --start-time … --end-time …`` saved elsewhere.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import orjson

from pipeline.errors import ConfigError

CACHE = "_state/integrity/public-keys.json"


def _b64(value) -> bytes:
    return value if isinstance(value, bytes | bytearray) else base64.b64decode(value)


def _entries(doc) -> list[dict]:
    if isinstance(doc, dict):
        doc = doc.get("PublicKeyList", [])
    if not isinstance(doc, list) or not all(isinstance(k, dict) and "Fingerprint" in k and "Value" in k for k in doc):
        raise ValueError("expected a list of {Value, Fingerprint, ValidityStartTime, ValidityEndTime}")
    return doc


def parse_key_file(text: bytes | str, name: str = "key file") -> dict[str, dict[str, bytes]]:
    """``{region: {fingerprint: DER}}`` from a key file; region ``*`` holds keys valid for any region.

    Accepted shapes: ``{"us-east-1": <list-public-keys output>, ...}``, or one
    ``list-public-keys`` output (``{"PublicKeyList": [...]}``) matched by fingerprint in every region.
    """
    try:
        doc = orjson.loads(text)
        if isinstance(doc, dict) and "PublicKeyList" in doc:
            doc = {"*": doc}
        if not isinstance(doc, dict):
            raise ValueError("expected a JSON object")
        return {region: {k["Fingerprint"]: _b64(k["Value"]) for k in _entries(keys)} for region, keys in doc.items()}
    except (orjson.JSONDecodeError, ValueError, TypeError) as e:
        raise ConfigError(f"{name}: not a CloudTrail public key file ({e}); save "
                          "`aws cloudtrail list-public-keys --region R` per region as {\"R\": <output>}") from e


class PublicKeys:
    """Looks keys up by (region, fingerprint); fetches a region's keys on a miss when it has a client."""

    def __init__(self, keys: dict[str, dict[str, bytes]] | None = None, client_for: Callable[[str], object] | None = None,
                 store=None):
        self.keys = keys or {}
        self.client_for, self.store = client_for, store
        self.fetched: set[str] = set()
        self.calls = 0

    @classmethod
    def from_file(cls, path: str) -> PublicKeys:
        try:
            text = Path(path).read_bytes()
        except OSError as e:
            raise ConfigError(f"--public-keys {path}: {e.strerror or e}") from e
        return cls(parse_key_file(text, path))

    @classmethod
    def from_aws(cls, store, client_for: Callable[[str], object]) -> PublicKeys:
        """Keys from ``ListPublicKeys`` (``client_for(region)`` → a boto3 cloudtrail client), cached in ``store``."""
        keys: dict[str, dict[str, bytes]] = {}
        try:
            cached = orjson.loads(store.get(CACHE))
            keys = {r: {fp: base64.b64decode(v) for fp, v in fps.items()} for r, fps in cached.items()}
        except (FileNotFoundError, OSError, orjson.JSONDecodeError, AttributeError, ValueError):
            keys = {}
        return cls(keys, client_for, store)

    def get(self, region: str, fp: str, start: dt.datetime, end: dt.datetime) -> bytes | None:
        """The DER key of ``fp`` for ``region``; ``start``/``end`` bound the ListPublicKeys call on a miss."""
        found = self.keys.get(region, {}).get(fp) or self.keys.get("*", {}).get(fp)
        if found is None and self.client_for is not None and region not in self.fetched:
            self.fetched.add(region)
            self._fetch(region, start, end)
            found = self.keys.get(region, {}).get(fp)
        return found

    def _fetch(self, region: str, start: dt.datetime, end: dt.datetime) -> None:
        client = self.client_for(region)
        kwargs = {"StartTime": start, "EndTime": end}
        got = self.keys.setdefault(region, {})
        while True:
            self.calls += 1
            page = client.list_public_keys(**kwargs)
            for k in page.get("PublicKeyList", ()):
                got[k["Fingerprint"]] = _b64(k["Value"])
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        if self.store is not None:
            doc = {r: {fp: base64.b64encode(v).decode() for fp, v in fps.items()} for r, fps in self.keys.items() if r != "*"}
            self.store.put(CACHE, orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
