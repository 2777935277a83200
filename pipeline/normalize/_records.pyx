# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""A log object's ``{"Records": [...]}`` text straight into Arrow column parts, without Python objects.

The strict msgspec decode builds one Struct per record and a str or Raw per field, which the
column build then reads and the allocator frees: most of the fast path's cost. This parser walks
the text once and records, per row and field, where the value lies (a slice of the text, or of a
side buffer for strings with escapes); :meth:`Parser.columns` then copies those slices into
exactly-sized Arrow buffers for a whole batch of objects. The parts are those
``_columns.struct_columns`` returns, so the arrays are built by the same code.

It only accepts what the strict Structs accept, and is stricter where that is simpler (invalid
UTF-8 anywhere, escaped or duplicate keys, deep nesting, lone surrogates): :meth:`Parser.parse`
returns None and the caller runs the msgspec decode, which then decides exactly as before.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize, PyByteArray_Resize
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memset

#: Field kinds (the same numbers as ``_columns``): a string, raw JSON, a bool, raw JSON whose
#: values repeat (deduplicated), a list of flat structs of strings.
STRING, JSON, BOOL, SHARED, LIST = 0, 1, 2, 3, 4

cdef enum:
    K_STRING = 0
    K_JSON = 1
    K_BOOL = 2
    K_SHARED = 3
    K_LIST = 4
    MAX_FIELDS = 64
    MAX_ITEM_FIELDS = 8
    MEMO = 8  # recent distinct values remembered per SHARED field
    SLACK = 64  # bytes a string column's data buffer has past its end while it is filled
    MAX_DEPTH = 200  # msgspec's own limit is Python's recursion limit (~1000); no AWS log nests past ~10
    SLOTS = 256

ctypedef struct Cell:
    int32_t start  # >= 0: offset in the text; < 0: -(offset in the side buffer) - 1
    int32_t len    # -1: NULL (absent or null); a bool's value is in ``start``; a list's first item

ctypedef struct Ctx:
    const char* base
    const char* end  # base[end - base] is a NUL byte (bytes and bytearray keep one): every scan stops there
    int nf
    int ni
    Cell* cells
    Py_ssize_t n
    Py_ssize_t cap
    Cell* items
    Py_ssize_t nitems
    Py_ssize_t items_cap
    char* side
    Py_ssize_t side_len
    Py_ssize_t side_cap
    Cell memo[MAX_FIELDS][MEMO]  # per SHARED field: objects seen (and checked) in this text
    int memo_n[MAX_FIELDS]
    int memo_next[MAX_FIELDS]

# Byte classes inside a string: 0 plain, 1 quote, 2 backslash, 3 control (NUL included), 4 non-ASCII.
cdef uint8_t CLS[256]
cdef int _i
for _i in range(256):
    CLS[_i] = 3 if _i < 0x20 else (4 if _i >= 0x80 else 0)
CLS[0x22] = 1
CLS[0x5C] = 2

cdef uint8_t HEX[256]
for _i in range(256):
    HEX[_i] = 255
for _i in range(10):
    HEX[0x30 + _i] = _i
for _i in range(6):
    HEX[0x41 + _i] = 10 + _i
    HEX[0x61 + _i] = 10 + _i


cdef inline const char* _ws(const char* p) noexcept nogil:
    while p[0] == b' ' or p[0] == b'\n' or p[0] == b'\r' or p[0] == b'\t':
        p += 1
    return p


cdef inline uint64_t _special(uint64_t w) noexcept nogil:
    """Non-zero when one of 8 bytes is a quote, a backslash, a control byte or non-ASCII."""
    cdef uint64_t ones = 0x0101010101010101ULL
    cdef uint64_t q = w ^ (ones * 0x22)
    cdef uint64_t b = w ^ (ones * 0x5C)
    return (((q - ones) & ~q) | ((b - ones) & ~b) | (w - ones * 0x20) | w) & (ones * 0x80)


cdef inline const char* _utf8(const char* s) noexcept nogil:
    """One strictly valid UTF-8 sequence starting at a byte >= 0x80: the byte after it, or NULL."""
    cdef const uint8_t* p = <const uint8_t*> s
    cdef uint8_t c = p[0]
    if c < 0xC2:
        return NULL
    if c < 0xE0:
        return s + 2 if (p[1] & 0xC0) == 0x80 else NULL
    if c < 0xF0:
        if c == 0xE0:
            if p[1] < 0xA0 or p[1] > 0xBF:
                return NULL
        elif c == 0xED:
            if p[1] < 0x80 or p[1] > 0x9F:
                return NULL
        elif (p[1] & 0xC0) != 0x80:
            return NULL
        return s + 3 if (p[2] & 0xC0) == 0x80 else NULL
    if c > 0xF4:
        return NULL
    if c == 0xF0:
        if p[1] < 0x90 or p[1] > 0xBF:
            return NULL
    elif c == 0xF4:
        if p[1] < 0x80 or p[1] > 0x8F:
            return NULL
    elif (p[1] & 0xC0) != 0x80:
        return NULL
    if (p[2] & 0xC0) != 0x80 or (p[3] & 0xC0) != 0x80:
        return NULL
    return s + 4


cdef inline const char* _hex4(const char* p, uint32_t* out) noexcept nogil:
    cdef uint8_t a = HEX[<uint8_t> p[0]], b, c, d
    if a == 255:
        return NULL
    b = HEX[<uint8_t> p[1]]
    if b == 255:
        return NULL
    c = HEX[<uint8_t> p[2]]
    if c == 255:
        return NULL
    d = HEX[<uint8_t> p[3]]
    if d == 255:
        return NULL
    out[0] = (<uint32_t> a << 12) | (<uint32_t> b << 8) | (<uint32_t> c << 4) | d
    return p + 4


cdef inline const char* _escape(const char* p, uint32_t* cp) noexcept nogil:
    """The escape at ``p`` (after its backslash): its code point; surrogates must pair. NULL if invalid."""
    cdef uint32_t lo
    cdef char c = p[0]
    if c == b'"' or c == b'\\' or c == b'/':
        cp[0] = <uint8_t> c
    elif c == b'b':
        cp[0] = 8
    elif c == b'f':
        cp[0] = 12
    elif c == b'n':
        cp[0] = 10
    elif c == b'r':
        cp[0] = 13
    elif c == b't':
        cp[0] = 9
    elif c == b'u':
        p = _hex4(p + 1, cp)
        if p == NULL:
            return NULL
        if 0xDC00 <= cp[0] <= 0xDFFF:
            return NULL
        if 0xD800 <= cp[0] <= 0xDBFF:
            if p[0] != b'\\' or p[1] != b'u':
                return NULL
            p = _hex4(p + 2, &lo)
            if p == NULL or lo < 0xDC00 or lo > 0xDFFF:
                return NULL
            cp[0] = 0x10000 + ((cp[0] - 0xD800) << 10) + (lo - 0xDC00)
        return p
    else:
        return NULL
    return p + 1


cdef const char* _skip_string(const char* end, const char* p) noexcept nogil:
    """``p`` just after an opening quote: just after the closing one, the string checked; NULL if invalid."""
    cdef uint64_t w
    cdef uint8_t k
    cdef uint32_t cp
    while True:
        while p + 8 <= end:
            memcpy(&w, p, 8)
            if _special(w):
                break
            p += 8
        k = CLS[<uint8_t> p[0]]
        if k == 0:
            p += 1
        elif k == 1:
            return p + 1
        elif k == 2:
            p = _escape(p + 1, &cp)
            if p == NULL:
                return NULL
        elif k == 4:
            p = _utf8(p)
            if p == NULL:
                return NULL
        else:
            return NULL


cdef inline const char* _skip_number(const char* p) noexcept nogil:
    if p[0] == b'-':
        p += 1
    if p[0] == b'0':
        p += 1
    elif b'1' <= p[0] <= b'9':
        p += 1
        while b'0' <= p[0] <= b'9':
            p += 1
    else:
        return NULL
    if p[0] == b'.':
        p += 1
        if not (b'0' <= p[0] <= b'9'):
            return NULL
        while b'0' <= p[0] <= b'9':
            p += 1
    if p[0] == b'e' or p[0] == b'E':
        p += 1
        if p[0] == b'+' or p[0] == b'-':
            p += 1
        if not (b'0' <= p[0] <= b'9'):
            return NULL
        while b'0' <= p[0] <= b'9':
            p += 1
    return p


cdef inline const char* _literal(const char* p) noexcept nogil:
    """``true``, ``false`` or ``null`` at ``p``: the byte after it, or NULL."""
    if p[0] == b't':
        if p[1] == b'r' and p[2] == b'u' and p[3] == b'e':
            return p + 4
    elif p[0] == b'f':
        if p[1] == b'a' and p[2] == b'l' and p[3] == b's' and p[4] == b'e':
            return p + 5
    elif p[0] == b'n':
        if p[1] == b'u' and p[2] == b'l' and p[3] == b'l':
            return p + 4
    return NULL


cdef const char* _skip_value(const char* end, const char* p, int depth) noexcept nogil:
    """Any JSON value at ``p`` (no whitespace before it), checked: the byte after it, or NULL."""
    cdef char c = p[0]
    if c == b'"':
        return _skip_string(end, p + 1)
    if c == b'{':
        if depth >= MAX_DEPTH:
            return NULL
        p = _ws(p + 1)
        if p[0] == b'}':
            return p + 1
        while True:
            if p[0] != b'"':
                return NULL
            p = _skip_string(end, p + 1)
            if p == NULL:
                return NULL
            p = _ws(p)
            if p[0] != b':':
                return NULL
            p = _skip_value(end, _ws(p + 1), depth + 1)
            if p == NULL:
                return NULL
            p = _ws(p)
            if p[0] == b',':
                p = _ws(p + 1)
            elif p[0] == b'}':
                return p + 1
            else:
                return NULL
    if c == b'[':
        if depth >= MAX_DEPTH:
            return NULL
        p = _ws(p + 1)
        if p[0] == b']':
            return p + 1
        while True:
            p = _skip_value(end, p, depth + 1)
            if p == NULL:
                return NULL
            p = _ws(p)
            if p[0] == b',':
                p = _ws(p + 1)
            elif p[0] == b']':
                return p + 1
            else:
                return NULL
    if c == b'-' or (b'0' <= c <= b'9'):
        return _skip_number(p)
    return _literal(p)


cdef inline int _reserve(Ctx* c, Py_ssize_t more) noexcept nogil:
    cdef Py_ssize_t cap
    cdef char* grown
    if c.side_len + more <= c.side_cap:
        return 0
    cap = c.side_cap * 2 if c.side_cap else 4096
    while cap < c.side_len + more:
        cap *= 2
    grown = <char*> realloc(c.side, cap)
    if grown == NULL:
        return -1
    c.side, c.side_cap = grown, cap
    return 0


cdef const char* _unescape(Ctx* c, const char* start, const char* p, Cell* out) noexcept nogil:
    """A string with escapes (``p`` at its first backslash): its text into the side buffer."""
    cdef Py_ssize_t at = c.side_len
    cdef uint32_t cp
    cdef uint8_t k
    cdef char* o
    if _reserve(c, p - start + 8) < 0:
        return NULL
    memcpy(c.side + c.side_len, start, p - start)
    c.side_len += p - start
    while True:
        k = CLS[<uint8_t> p[0]]
        if k == 1:
            break
        if _reserve(c, 4) < 0:
            return NULL
        o = c.side + c.side_len
        if k == 0:
            o[0] = p[0]
            c.side_len += 1
            p += 1
        elif k == 2:
            p = _escape(p + 1, &cp)
            if p == NULL:
                return NULL
            if cp < 0x80:
                o[0] = <char> cp
                c.side_len += 1
            elif cp < 0x800:
                o[0] = <char> (0xC0 | (cp >> 6))
                o[1] = <char> (0x80 | (cp & 0x3F))
                c.side_len += 2
            elif cp < 0x10000:
                o[0] = <char> (0xE0 | (cp >> 12))
                o[1] = <char> (0x80 | ((cp >> 6) & 0x3F))
                o[2] = <char> (0x80 | (cp & 0x3F))
                c.side_len += 3
            else:
                o[0] = <char> (0xF0 | (cp >> 18))
                o[1] = <char> (0x80 | ((cp >> 12) & 0x3F))
                o[2] = <char> (0x80 | ((cp >> 6) & 0x3F))
                o[3] = <char> (0x80 | (cp & 0x3F))
                c.side_len += 4
        elif k == 4:
            start = _utf8(p)
            if start == NULL:
                return NULL
            memcpy(o, p, start - p)
            c.side_len += start - p
            p = start
        else:
            return NULL
    out.start = <int32_t> (-at - 1)
    out.len = <int32_t> (c.side_len - at)
    return p + 1


cdef const char* _string(Ctx* c, const char* p, Cell* out) noexcept nogil:
    """A string value (``p`` after its opening quote) into ``out``: a slice of the text when it has no escape."""
    cdef const char* start = p
    cdef uint64_t w
    cdef uint8_t k
    while True:
        while p + 8 <= c.end:
            memcpy(&w, p, 8)
            if _special(w):
                break
            p += 8
        k = CLS[<uint8_t> p[0]]
        if k == 0:
            p += 1
        elif k == 1:
            out.start = <int32_t> (start - c.base)
            out.len = <int32_t> (p - start)
            return p + 1
        elif k == 4:
            p = _utf8(p)
            if p == NULL:
                return NULL
        elif k == 2:
            return _unescape(c, start, p, out)
        else:
            return NULL


cdef inline const char* _shared_value(Ctx* c, int f, const char* p, Cell* out) noexcept nogil:
    """A value that repeats within the text (one principal's userIdentity): when its bytes are those of an
    object already checked here it is that object (an object's extent is fixed by its bytes), not scanned again."""
    cdef const char* v = p
    cdef Cell m
    cdef int j
    if p[0] == b'{':
        for j in range(c.memo_n[f]):
            m = c.memo[f][j]
            if m.len <= c.end - p and memcmp(p, c.base + m.start, m.len) == 0:
                out[0] = m
                return p + m.len
    p = _skip_value(c.end, p, 3)
    if p == NULL:
        return NULL
    if p - v == 4 and v[0] == b'n':  # the literal null is NULL, as an absent value
        return p
    out.start, out.len = <int32_t> (v - c.base), <int32_t> (p - v)
    if v[0] == b'{':
        c.memo[f][c.memo_next[f]] = out[0]
        c.memo_next[f] = (c.memo_next[f] + 1) % MEMO
        if c.memo_n[f] < MEMO:
            c.memo_n[f] += 1
    return p


cdef class Parsed:
    """One object's records as cells: where each field's value lies; built into columns by :meth:`Parser.columns`."""

    cdef Py_buffer view
    cdef bint held
    cdef const char* base
    cdef Py_ssize_t n
    cdef int nf, ni
    cdef Cell* cells
    cdef Cell* items
    cdef Py_ssize_t nitems
    cdef char* side
    cdef const char* base_end  # readable up to here (the text's NUL byte included)
    cdef const char* side_end

    def __len__(self):
        return self.n

    def __dealloc__(self):
        free(self.cells)
        free(self.items)
        free(self.side)
        if self.held:
            PyBuffer_Release(&self.view)


cdef inline uint32_t _key_hash(const char* k, Py_ssize_t n) noexcept nogil:
    return (<uint32_t> n * 31 + <uint8_t> k[0] * 7 + <uint8_t> k[n - 1] * 13 + <uint8_t> k[n >> 1]) & (SLOTS - 1)


cdef class Parser:
    """The parser for one record schema: field names and kinds, the required field, a list field's item names."""

    cdef int nf, ni, required
    cdef int kinds[MAX_FIELDS]
    cdef const char* names[MAX_FIELDS]
    cdef Py_ssize_t lens[MAX_FIELDS]
    cdef int slots[SLOTS]
    cdef const char* item_names[MAX_ITEM_FIELDS]
    cdef Py_ssize_t item_lens[MAX_ITEM_FIELDS]
    cdef list _keep

    def __init__(self, names, kinds, item_names=(), required=None):
        if len(names) > MAX_FIELDS or len(item_names) > MAX_ITEM_FIELDS or len(names) != len(kinds):
            raise ValueError("too many fields for the compiled parser")
        self._keep = [n.encode() for n in names] + [n.encode() for n in item_names]
        self.nf, self.ni = len(names), len(item_names)
        self.required = list(names).index(required) if required is not None else -1
        cdef int f, s
        cdef bytes b
        for f in range(SLOTS):
            self.slots[f] = -1
        for f in range(self.nf):
            b = self._keep[f]
            if not b:
                raise ValueError("empty field name")
            self.names[f] = b
            self.lens[f] = len(b)
            self.kinds[f] = kinds[f]
            s = _key_hash(self.names[f], self.lens[f])
            while self.slots[s] >= 0:
                s = (s + 1) & (SLOTS - 1)
            self.slots[s] = f
        for f in range(self.ni):
            b = self._keep[self.nf + f]
            self.item_names[f] = b
            self.item_lens[f] = len(b)

    cdef inline int _field(self, const char* k, Py_ssize_t n) noexcept nogil:
        cdef int s, f
        if n == 0:
            return -1
        s = _key_hash(k, n)
        while True:
            f = self.slots[s]
            if f < 0:
                return -1
            if self.lens[f] == n and memcmp(self.names[f], k, n) == 0:
                return f
            s = (s + 1) & (SLOTS - 1)

    cdef const char* _items(self, Ctx* c, const char* p, Cell* out) noexcept nogil:
        """A list of flat objects of strings (``p`` at ``[``): their cells appended to ``c.items``."""
        cdef Py_ssize_t first = c.nitems, cap
        cdef Cell* it
        cdef Cell* grown
        cdef const char* k
        cdef int f, g
        cdef uint32_t seen
        p = _ws(p + 1)
        if p[0] == b']':
            out.start, out.len = <int32_t> first, 0
            return p + 1
        while True:
            if p[0] != b'{':
                return NULL
            if c.nitems == c.items_cap:
                cap = c.items_cap * 2 if c.items_cap else 64
                grown = <Cell*> realloc(c.items, cap * self.ni * sizeof(Cell))
                if grown == NULL:
                    return NULL
                c.items, c.items_cap = grown, cap
            it = c.items + c.nitems * self.ni
            for f in range(self.ni):
                it[f].start, it[f].len = 0, -1
            c.nitems += 1
            seen = 0
            p = _ws(p + 1)
            if p[0] == b'}':
                p += 1
            else:
                while True:
                    if p[0] != b'"':
                        return NULL
                    k = p + 1
                    p = k
                    while p[0] != b'"' and p[0] != b'\\' and p[0] != 0:
                        p += 1
                    if p[0] != b'"':
                        return NULL
                    f = -1
                    for g in range(self.ni):
                        if self.item_lens[g] == p - k and memcmp(self.item_names[g], k, p - k) == 0:
                            f = g
                            break
                    if f < 0 or seen & ((<uint32_t> 1) << f):
                        return NULL
                    seen |= (<uint32_t> 1) << f
                    p = _ws(p + 1)
                    if p[0] != b':':
                        return NULL
                    p = _ws(p + 1)
                    if p[0] == b'"':
                        p = _string(c, p + 1, &it[f])
                        if p == NULL:
                            return NULL
                        it = c.items + (c.nitems - 1) * self.ni
                    elif p[0] == b'n' and p[1] == b'u' and p[2] == b'l' and p[3] == b'l':
                        p += 4
                    else:
                        return NULL
                    p = _ws(p)
                    if p[0] == b',':
                        p = _ws(p + 1)
                    elif p[0] == b'}':
                        p += 1
                        break
                    else:
                        return NULL
            p = _ws(p)
            if p[0] == b',':
                p = _ws(p + 1)
            elif p[0] == b']':
                out.start, out.len = <int32_t> first, <int32_t> (c.nitems - first)
                return p + 1
            else:
                return NULL

    cdef const char* _record(self, Ctx* c, const char* p) noexcept nogil:
        """One record (``p`` at ``{``) into row ``c.n`` of the cells."""
        cdef Cell* row
        cdef Cell* grown
        cdef Py_ssize_t cap
        cdef const char* k
        cdef const char* v
        cdef int f, kind
        cdef uint64_t seen = 0
        if c.n == c.cap:
            cap = c.cap * 2 if c.cap else 256
            grown = <Cell*> realloc(c.cells, cap * self.nf * sizeof(Cell))
            if grown == NULL:
                return NULL
            c.cells, c.cap = grown, cap
        row = c.cells + c.n * self.nf
        for f in range(self.nf):
            row[f].start, row[f].len = 0, -1
        p = _ws(p + 1)
        if p[0] != b'}':
            while True:
                if p[0] != b'"':
                    return NULL
                k = p + 1
                p = k
                while p[0] != b'"' and p[0] != b'\\' and p[0] != 0:
                    p += 1
                if p[0] != b'"':
                    return NULL  # an escaped key (it might name a field): msgspec decides
                f = self._field(k, p - k)
                if f < 0 or seen & (1ULL << f):
                    return NULL  # unknown field (the slow path's unmapped) or a repeated one
                seen |= 1ULL << f
                p = _ws(p + 1)
                if p[0] != b':':
                    return NULL
                p = _ws(p + 1)
                kind = self.kinds[f]
                if kind == K_STRING:
                    if p[0] == b'"':
                        p = _string(c, p + 1, &row[f])
                    elif p[0] == b'n' and p[1] == b'u' and p[2] == b'l' and p[3] == b'l':
                        p += 4
                    else:
                        return NULL
                elif kind == K_JSON:
                    v = p
                    p = _skip_value(c.end, p, 3)
                    if p == NULL:
                        return NULL
                    if not (p - v == 4 and v[0] == b'n'):  # the literal null is NULL, as an absent value
                        row[f].start, row[f].len = <int32_t> (v - c.base), <int32_t> (p - v)
                elif kind == K_SHARED:
                    p = _shared_value(c, f, p, &row[f])
                elif kind == K_BOOL:
                    if p[0] == b't' and p[1] == b'r' and p[2] == b'u' and p[3] == b'e':
                        row[f].start, row[f].len = 1, 0
                        p += 4
                    elif p[0] == b'f' and p[1] == b'a' and p[2] == b'l' and p[3] == b's' and p[4] == b'e':
                        row[f].start, row[f].len = 0, 0
                        p += 5
                    elif p[0] == b'n' and p[1] == b'u' and p[2] == b'l' and p[3] == b'l':
                        p += 4
                    else:
                        return NULL
                else:  # K_LIST
                    if p[0] == b'[':
                        p = self._items(c, p, &row[f])
                    elif p[0] == b'n' and p[1] == b'u' and p[2] == b'l' and p[3] == b'l':
                        p += 4
                    else:
                        return NULL
                if p == NULL:
                    return NULL
                p = _ws(p)
                if p[0] == b',':
                    p = _ws(p + 1)
                elif p[0] == b'}':
                    break
                else:
                    return NULL
        if self.required >= 0 and not (seen & (1ULL << self.required)):
            return NULL
        c.n += 1
        return p + 1

    cdef const char* _document(self, Ctx* c) noexcept nogil:
        cdef const char* p = _ws(c.base)
        cdef const char* k
        cdef Py_ssize_t klen
        cdef bint got = False
        if p[0] != b'{':
            return NULL
        p = _ws(p + 1)
        if p[0] == b'}':
            return NULL
        while True:
            if p[0] != b'"':
                return NULL
            k = p + 1
            p = _skip_string(c.end, k)
            if p == NULL:
                return NULL
            klen = p - 1 - k
            if memchr(k, 92, klen) != NULL:
                return NULL  # an escaped key (it might spell Records): msgspec decides
            p = _ws(p)
            if p[0] != b':':
                return NULL
            p = _ws(p + 1)
            if klen == 7 and memcmp(k, b"Records", 7) == 0:
                if got or p[0] != b'[':
                    return NULL
                got = True
                p = _ws(p + 1)
                if p[0] == b']':
                    p += 1
                else:
                    while True:
                        if p[0] != b'{':
                            return NULL
                        p = self._record(c, p)
                        if p == NULL:
                            return NULL
                        p = _ws(p)
                        if p[0] == b',':
                            p = _ws(p + 1)
                        elif p[0] == b']':
                            p += 1
                            break
                        else:
                            return NULL
            else:
                p = _skip_value(c.end, p, 1)
                if p == NULL:
                    return NULL
            p = _ws(p)
            if p[0] == b',':
                p = _ws(p + 1)
            elif p[0] == b'}':
                p += 1
                break
            else:
                return NULL
        if not got:
            return NULL
        p = _ws(p)
        return p if p == c.end else NULL

    def parse(self, text):
        """The object's records as :class:`Parsed`, or None: not what the strict Structs take (or not
        plainly so). ``text`` is bytes, a bytearray or a memoryview ending where its bytearray ends."""
        cdef Parsed out = Parsed.__new__(Parsed)
        cdef Ctx c
        cdef const char* done
        if type(text) is memoryview:
            owner = text.obj
            if (type(owner) is not bytearray and type(owner) is not bytes) or not text.c_contiguous \
                    or not _ends_with_owner(text, owner):
                text = bytes(text)
        elif type(text) is not bytes and type(text) is not bytearray:
            text = bytes(text)
        PyObject_GetBuffer(text, &out.view, PyBUF_SIMPLE)
        out.held = True
        if out.view.len >= 2147483647:
            return None
        memset(&c, 0, sizeof(Ctx))
        c.base = <const char*> out.view.buf
        c.end = c.base + out.view.len
        c.nf, c.ni = self.nf, self.ni
        with nogil:
            done = self._document(&c)
        out.base, out.cells, out.items, out.side = c.base, c.cells, c.items, c.side
        out.base_end, out.side_end = c.end + 1, c.side + c.side_len
        out.n, out.nitems, out.nf, out.ni = c.n, c.nitems, self.nf, self.ni
        return out if done != NULL else None  # ``out`` frees what was allocated either way

    def columns(self, list batch):
        """Every field's column parts over the objects of ``batch`` (Parsed), rows in order.

        As ``_columns.struct_columns``: STRING and JSON → (offsets, data, validity or None, nulls),
        ``offsets`` None when all NULL; BOOL → (values, validity or None, nulls); SHARED → (distinct
        values as bytes, None for NULL; int32 indices); LIST → (offsets, validity or None, nulls,
        items, [STRING parts per item field]). The cells are read row by row, as they lie in memory,
        every column's buffers filled in the same pass.
        """
        cdef Py_ssize_t k, n = 0, items = 0
        cdef Parsed p
        for k in range(len(batch)):
            p = batch[k]
            if p.nf != self.nf:
                raise ValueError("parsed by another parser")
            n += p.n
            items += p.nitems
        out = _fill(batch, n, self.nf, self.kinds, False)
        children = _fill(batch, items, self.ni, NULL, True) if items else []
        cdef int f
        for f in range(self.nf):
            if self.kinds[f] == K_SHARED:
                out[f] = _shared(batch, n, f)
            elif self.kinds[f] == K_LIST:
                out[f] = out[f] + (items, children)
        return out


cdef inline void _copy(char* d, const char* s, Py_ssize_t n, const char* readable) noexcept nogil:
    """memcpy, but a short string (most values) as one fixed-size copy: no call, no length dispatch."""
    if n <= SLACK and s + SLACK <= readable:
        memcpy(d, s, SLACK)
    else:
        memcpy(d, s, n)


cdef list _fill(list batch, Py_ssize_t n, int nf, int* kinds, bint items):
    """The parts of every STRING, JSON, BOOL and LIST field (the record cells, or with ``items`` the
    list items' cells, all STRING): two passes over the cells in row order, sizes then copies."""
    cdef Py_ssize_t nulls[MAX_FIELDS]
    cdef Py_ssize_t total[MAX_FIELDS]
    cdef Py_ssize_t pos[MAX_FIELDS]
    cdef int32_t* offs[MAX_FIELDS]
    cdef char* datas[MAX_FIELDS]
    cdef uint8_t* valids[MAX_FIELDS]
    cdef uint8_t* bits[MAX_FIELDS]
    cdef int kind[MAX_FIELDS]
    cdef Py_ssize_t k, r, rows, i
    cdef int f
    cdef Parsed p
    cdef Cell* cells
    cdef Cell* row
    cdef Cell c
    cdef uint8_t bit
    for f in range(nf):
        nulls[f] = total[f] = pos[f] = 0
        kind[f] = K_STRING if kinds == NULL else kinds[f]
    for k in range(len(batch)):
        p = batch[k]
        if items:
            cells, rows = p.items, p.nitems
        else:
            cells, rows = p.cells, p.n
        for r in range(rows):
            row = cells + r * nf
            for f in range(nf):
                if row[f].len < 0:
                    nulls[f] += 1
                elif kind[f] <= K_JSON:
                    total[f] += row[f].len
    out = [None] * nf
    keep = []  # every buffer written below, returned or not, stays alive until the pass is done
    for f in range(nf):
        offs[f], datas[f], valids[f], bits[f] = NULL, NULL, NULL, NULL
        if kind[f] <= K_JSON:
            if total[f] > 2147483647:
                raise OverflowError("over 2 GiB of strings in one array")
            if nulls[f] == n:
                out[f] = (None, None, None, n)
                continue
            offsets = PyByteArray_FromStringAndSize(NULL, 4 * (n + 1))
            data = PyByteArray_FromStringAndSize(NULL, total[f] + SLACK)
            keep.append(data)
            offs[f] = <int32_t*> PyByteArray_AS_STRING(offsets)
            offs[f][0] = 0
            datas[f] = PyByteArray_AS_STRING(data)
            validity = None
            if nulls[f]:
                validity = _bitmap(n)
                valids[f] = <uint8_t*> PyByteArray_AS_STRING(validity)
            out[f] = (offsets, data, validity, nulls[f])
        elif kind[f] == K_BOOL:
            data, validity = _bitmap(n), _bitmap(n)
            keep.append(validity)
            bits[f] = <uint8_t*> PyByteArray_AS_STRING(data)
            valids[f] = <uint8_t*> PyByteArray_AS_STRING(validity)
            out[f] = (data, validity if nulls[f] else None, nulls[f])
        elif kind[f] == K_LIST:
            offsets, validity = PyByteArray_FromStringAndSize(NULL, 4 * (n + 1)), _bitmap(n)
            keep.append(validity)
            offs[f] = <int32_t*> PyByteArray_AS_STRING(offsets)
            offs[f][0] = 0
            valids[f] = <uint8_t*> PyByteArray_AS_STRING(validity)
            out[f] = (offsets, validity if nulls[f] else None, nulls[f])
    i = 0
    for k in range(len(batch)):
        p = batch[k]
        if items:
            cells, rows = p.items, p.nitems
        else:
            cells, rows = p.cells, p.n
        for r in range(rows):
            row = cells + r * nf
            bit = <uint8_t> (1 << (i & 7))
            for f in range(nf):
                c = row[f]
                if kind[f] <= K_JSON:
                    if offs[f] == NULL:
                        continue
                    if c.len >= 0:
                        if c.start >= 0:
                            _copy(datas[f] + pos[f], p.base + c.start, c.len, p.base_end)
                        else:
                            _copy(datas[f] + pos[f], p.side + (-<Py_ssize_t> c.start - 1), c.len, p.side_end)
                        pos[f] += c.len
                        if valids[f] != NULL:
                            valids[f][i >> 3] |= bit
                    offs[f][i + 1] = <int32_t> pos[f]
                elif kind[f] == K_BOOL:
                    if c.len >= 0:
                        valids[f][i >> 3] |= bit
                        if c.start:
                            bits[f][i >> 3] |= bit
                elif kind[f] == K_LIST:
                    if c.len >= 0:
                        valids[f][i >> 3] |= bit
                        pos[f] += c.len
                    offs[f][i + 1] = <int32_t> pos[f]
            i += 1
    for f in range(nf):
        if datas[f] != NULL:
            PyByteArray_Resize(out[f][1], total[f])  # the slack off: the buffer is exactly the strings
    return out


def _ends_with_owner(view, owner):
    """Whether a memoryview's bytes run to the end of the bytes/bytearray it views (its NUL follows)."""
    cdef Py_buffer a, b
    cdef bint ok
    PyObject_GetBuffer(view, &a, PyBUF_SIMPLE)
    PyObject_GetBuffer(owner, &b, PyBUF_SIMPLE)
    ok = (<const char*> a.buf) + a.len == (<const char*> b.buf) + b.len
    PyBuffer_Release(&a)
    PyBuffer_Release(&b)
    return ok


cdef _bitmap(Py_ssize_t n):
    b = PyByteArray_FromStringAndSize(NULL, (n + 7) // 8)
    memset(PyByteArray_AS_STRING(b), 0, (n + 7) // 8)
    return b


from pipeline.normalize._hash cimport hash_bytes as _hash


cdef tuple _shared(list batch, Py_ssize_t n, int f):
    """(distinct values, int32 index per row) of a raw field whose values repeat; None for NULL, first seen first."""
    cdef Py_ssize_t k, r, i = 0, cap = 16, slot, j, null_at = -1, m = 0
    cdef Parsed p
    cdef Cell c
    cdef const char* v
    cdef uint64_t h
    while cap < 2 * n:
        cap *= 2
    indices = PyByteArray_FromStringAndSize(NULL, 4 * n)
    cdef int32_t* idx = <int32_t*> PyByteArray_AS_STRING(indices)
    distinct = []
    cdef Py_ssize_t* table = <Py_ssize_t*> malloc(cap * sizeof(Py_ssize_t))
    cdef const char** ptrs = <const char**> malloc((n + 1) * sizeof(char*))
    cdef Py_ssize_t* lens = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))
    if table == NULL or ptrs == NULL or lens == NULL:
        free(table); free(ptrs); free(lens)
        raise MemoryError()
    memset(table, 0, cap * sizeof(Py_ssize_t))
    try:
        for k in range(len(batch)):
            p = batch[k]
            for r in range(p.n):
                c = p.cells[r * p.nf + f]
                if c.len < 0:
                    if null_at < 0:
                        null_at = m
                        m += 1
                        distinct.append(None)
                    idx[i] = <int32_t> null_at
                    i += 1
                    continue
                v = p.base + c.start
                h = _hash(<const unsigned char*> v, c.len)
                slot = <Py_ssize_t> (h & <uint64_t> (cap - 1))
                while True:
                    j = table[slot]
                    if j == 0:
                        ptrs[m], lens[m] = v, c.len
                        distinct.append(PyBytes_FromStringAndSize(v, c.len))
                        table[slot] = m + 1
                        idx[i] = <int32_t> m
                        m += 1
                        break
                    j -= 1
                    if lens[j] == c.len and memcmp(ptrs[j], v, c.len) == 0:
                        idx[i] = <int32_t> j
                        break
                    slot = (slot + 1) & (cap - 1)
                i += 1
    finally:
        free(table); free(ptrs); free(lens)
    return distinct, indices
