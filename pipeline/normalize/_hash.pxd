"""The byte-string hash both compiled modules use for their distinct-value tables (one definition:
``_columns`` dedups msgspec's raw values, ``_records`` the parser's slices; equality is memcmp's)."""
from libc.stdint cimport uint64_t
from libc.string cimport memcpy


cdef inline uint64_t _rotl(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t hash_bytes(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """A fast 64-bit hash of a byte string: four independent lanes of 8 bytes."""
    cdef uint64_t a = 0x9E3779B97F4A7C15ULL ^ <uint64_t> n, b = 0xC2B2AE3D27D4EB4FULL
    cdef uint64_t c = 0x165667B19E3779F9ULL, d = 0x27D4EB2F165667C5ULL, w0, w1, w2, w3, h
    while n >= 32:
        memcpy(&w0, p, 8)
        memcpy(&w1, p + 8, 8)
        memcpy(&w2, p + 16, 8)
        memcpy(&w3, p + 24, 8)
        a = _rotl((a ^ w0) * 0xBF58476D1CE4E5B9ULL, 31)
        b = _rotl((b ^ w1) * 0xBF58476D1CE4E5B9ULL, 31)
        c = _rotl((c ^ w2) * 0xBF58476D1CE4E5B9ULL, 31)
        d = _rotl((d ^ w3) * 0xBF58476D1CE4E5B9ULL, 31)
        p += 32
        n -= 32
    h = a ^ _rotl(b, 17) ^ _rotl(c, 29) ^ _rotl(d, 43)
    while n >= 8:
        memcpy(&w0, p, 8)
        h = _rotl((h ^ w0) * 0xBF58476D1CE4E5B9ULL, 31)
        p += 8
        n -= 8
    w0 = 0
    memcpy(&w0, p, n)
    h = (h ^ w0) * 0x94D049BB133111EBULL
    h ^= h >> 32
    h *= 0xBF58476D1CE4E5B9ULL
    return h ^ (h >> 29)
