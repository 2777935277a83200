"""CloudTrail digest files as AWS documents them: parse, hash, the data-signing string, signatures.

Pure functions, no I/O. What is followed (CloudTrail User Guide, "CloudTrail digest file
structure" and "Custom implementations of CloudTrail log file integrity validation"; the same
rules as ``aws cloudtrail validate-logs``):

- A digest object is gzip JSON. Its signature is not inside it: it is the S3 user metadata
  ``x-amz-meta-signature`` (hex), with ``x-amz-meta-signature-algorithm`` = ``SHA256withRSA``.
- The data-signing string is four lines joined by ``\\n``, no trailing newline::

      <digestEndTime, exactly as written in the file, e.g. 2015-08-17T00:00:00Z>
      <digestS3Bucket>/<digestS3Object>
      <hex SHA-256 of the digest file's *uncompressed* content>
      <previousDigestSignature, or the string "null" for the first digest of a chain>

  signed with RSA PKCS#1 v1.5 over SHA-256 (``SHA256withRSA``) by the region's private key;
  ``digestPublicKeyFingerprint`` names the public key (``ListPublicKeys`` in that region).
- ``logFiles[].hashValue`` is the hex SHA-256 of each log file's *uncompressed* content, and
  ``previousDigestHashValue`` that of the previous digest file's uncompressed content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib
from dataclasses import dataclass, field

import orjson

SIGNATURE_ALGORITHM = "SHA256withRSA"
HASH_ALGORITHM = "SHA-256"
#: S3 user metadata keys (boto3 returns them without the ``x-amz-meta-`` prefix).
META_SIGNATURE = "signature"
META_ALGORITHM = "signature-algorithm"


class DigestFormatError(ValueError):
    """The object is not a CloudTrail digest file (not gzip, not JSON, a required field missing)."""


REQUIRED = ("awsAccountId", "digestStartTime", "digestEndTime", "digestS3Bucket", "digestS3Object",
            "digestPublicKeyFingerprint", "digestSignatureAlgorithm", "logFiles")


@dataclass(frozen=True)
class LogFileEntry:
    s3_bucket: str
    s3_object: str
    hash_value: str
    hash_algorithm: str
    oldest_event_time: str | None = None
    newest_event_time: str | None = None


@dataclass
class Digest:
    """One digest file: its documented fields, the hash of its content, and its signature (metadata)."""

    doc: dict
    content_sha256: str  # hex SHA-256 of the uncompressed content
    signature: str | None = None  # hex, from the object's metadata
    signature_algorithm: str | None = None  # from the object's metadata
    log_files: list[LogFileEntry] = field(default_factory=list)

    def __getitem__(self, name: str):
        return self.doc.get(name)

    @property
    def start(self) -> dt.datetime:
        return parse_time(self.doc["digestStartTime"])

    @property
    def end(self) -> dt.datetime:
        return parse_time(self.doc["digestEndTime"])


def parse_time(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(dt.UTC)


def gunzip_all(data: bytes) -> bytes:
    """Every gzip member of an object, decompressed (what AWS hashes)."""
    out, rest = [], bytes(data)
    while rest:
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        out.append(d.decompress(rest))
        out.append(d.flush())
        if not d.eof:
            raise zlib.error("truncated gzip stream")
        rest = d.unused_data
    return b"".join(out)


def content_sha256(data: bytes) -> str:
    """Hex SHA-256 of an object's uncompressed content (the ``hashValue`` of a log file)."""
    return hashlib.sha256(gunzip_all(data)).hexdigest()


def parse(data: bytes, metadata: dict | None = None) -> Digest:
    """A digest object's bytes (gzip, as stored) and its S3 user metadata → :class:`Digest`."""
    try:
        raw = gunzip_all(data)
        doc = orjson.loads(raw)
    except (zlib.error, orjson.JSONDecodeError, EOFError) as e:
        raise DigestFormatError(f"not a gzip JSON digest file ({e})") from e
    return from_document(doc, hashlib.sha256(raw).hexdigest(), metadata)


def from_document(doc, sha256_hex: str, metadata: dict | None = None) -> Digest:
    if not isinstance(doc, dict):
        raise DigestFormatError("a digest file is a JSON object")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise DigestFormatError(f"not a CloudTrail digest file: missing {', '.join(missing)}")
    try:
        parse_time(doc["digestStartTime"]), parse_time(doc["digestEndTime"])
    except (TypeError, ValueError, AttributeError) as e:
        raise DigestFormatError(f"digestStartTime/digestEndTime are not ISO-8601 times ({e})") from e
    files = doc["logFiles"]
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("s3Object"), str)
                                              and isinstance(f.get("hashValue"), str) for f in files):
        raise DigestFormatError("logFiles must be a list of {s3Bucket, s3Object, hashValue, hashAlgorithm}")
    meta = {k.lower(): v for k, v in (metadata or {}).items()}
    return Digest(
        doc=doc, content_sha256=sha256_hex,
        signature=meta.get(META_SIGNATURE), signature_algorithm=meta.get(META_ALGORITHM),
        log_files=[LogFileEntry(f.get("s3Bucket") or "", f["s3Object"], f["hashValue"].lower(),
                                f.get("hashAlgorithm") or "", f.get("oldestEventTime"), f.get("newestEventTime"))
                   for f in files],
    )


def signing_string(doc: dict, sha256_hex: str) -> bytes:
    """The data-signing string of a digest (documented format; see the module docstring)."""
    previous = doc.get("previousDigestSignature")
    return "\n".join((
        doc["digestEndTime"],
        f"{doc['digestS3Bucket']}/{doc['digestS3Object']}",
        sha256_hex,
        "null" if previous is None else previous,
    )).encode()


def load_public_key(der: bytes):
    """An RSA public key from ``ListPublicKeys``' ``Value``: DER PKCS#1 RSAPublicKey (SubjectPublicKeyInfo accepted)."""
    from cryptography.hazmat.primitives import serialization

    return serialization.load_der_public_key(der)


def signature_ok(public_key_der: bytes, signature_hex: str, message: bytes) -> bool:
    """SHA256withRSA (RSASSA-PKCS1-v1_5 over SHA-256) check of ``message``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        signature = bytes.fromhex(signature_hex)
        load_public_key(public_key_der).verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def check_signature(d: Digest, public_key_der: bytes | None) -> str | None:
    """Why the digest's signature does not hold, or None when it does."""
    if not d.signature:
        return "no signature: the object has no x-amz-meta-signature metadata"
    algorithm = d.signature_algorithm or d["digestSignatureAlgorithm"]
    if algorithm != SIGNATURE_ALGORITHM or d["digestSignatureAlgorithm"] != SIGNATURE_ALGORITHM:
        return f"unsupported signature algorithm {algorithm!r} (CloudTrail signs with {SIGNATURE_ALGORITHM})"
    if public_key_der is None:
        return f"public key not found for fingerprint {d['digestPublicKeyFingerprint']}"
    if not signature_ok(public_key_der, d.signature, signing_string(d.doc, d.content_sha256)):
        return "invalid signature: the digest file, its location or its chain link was changed, or it was signed by another key"
    return None


# -- signing (synthetic archives and tests; AWS signs real digests) --------------------------------

def public_key_der(private_key) -> bytes:
    """DER PKCS#1 RSAPublicKey bytes, the form ``ListPublicKeys`` returns."""
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)


def fingerprint(der: bytes) -> str:
    """A key fingerprint for keys soclake makes (AWS's own come with ``ListPublicKeys``): hex MD5 of the DER key."""
    return hashlib.md5(der, usedforsecurity=False).hexdigest()


def sign(private_key, doc: dict, sha256_hex: str) -> str:
    """Hex SHA256withRSA signature of a digest document whose uncompressed content hashes to ``sha256_hex``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return private_key.sign(signing_string(doc, sha256_hex), padding.PKCS1v15(), hashes.SHA256()).hex()


def signed_metadata(private_key, doc: dict, content: bytes) -> dict[str, str]:
    """The S3 user metadata CloudTrail puts on a digest object whose uncompressed content is ``content``."""
    return {META_SIGNATURE: sign(private_key, doc, hashlib.sha256(content).hexdigest()),
            META_ALGORITHM: SIGNATURE_ALGORITHM}
