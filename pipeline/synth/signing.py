"""Test key pairs for synthetic digest files: one RSA-2048 key per (seed, region), like AWS's per-region keys.

The keys are derived from the seed (primes found with a seeded generator and Miller-Rabin), so
the same seed gives the same key, the same signatures and byte-identical archives, and no private
key is stored anywhere. They sign synthetic archives only: never trust them for anything else.
"""

from __future__ import annotations

import base64
import functools
import random

from pipeline.integrity.digest import fingerprint, public_key_der

_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]
E = 65537
#: Validity written into the key document (ListPublicKeys' shape); synthetic archives fall inside it.
VALID_FROM, VALID_TO = "2013-11-01T00:00:00Z", "2100-01-01T00:00:00Z"


def _probable_prime(n: int, rng: random.Random, rounds: int = 24) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(rng: random.Random, bits: int) -> int:
    while True:
        n = rng.getrandbits(bits) | (3 << (bits - 2)) | 1  # top two bits set: p*q has exactly 2*bits bits
        if n % E != 1 and _probable_prime(n, rng):
            return n


@functools.cache
def private_key(seed: int, region: str, purpose: str = "digest"):
    """The synthetic archive's signing key for ``region`` (``purpose="attacker"``: the wrong key of a tamper)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    rng = random.Random(f"soclake-synth:{seed}:{region}:{purpose}-key")
    p = _prime(rng, 1024)
    q = _prime(rng, 1024)
    while q == p:
        q = _prime(rng, 1024)
    phi = (p - 1) * (q - 1)
    d = pow(E, -1, phi)
    public = rsa.RSAPublicNumbers(E, p * q)
    return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), public).private_key()


def key_fingerprint(seed: int, region: str) -> str:
    return fingerprint(public_key_der(private_key(seed, region)))


def public_keys_document(seed: int, regions) -> dict:
    """The archive's public keys in the key-file format ``soclake verify --public-keys`` reads:
    per region, the output of ``aws cloudtrail list-public-keys`` (``Value`` base64 DER)."""
    out = {}
    for region in regions:
        der = public_key_der(private_key(seed, region))
        out[region] = {"PublicKeyList": [{"Value": base64.b64encode(der).decode(), "ValidityStartTime": VALID_FROM,
                                          "ValidityEndTime": VALID_TO, "Fingerprint": fingerprint(der)}]}
    return out
