# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Arrow utf8 buffers straight from a list of ``str`` (or None): the per-value loop in C.

The compiled half of :func:`pipeline.normalize.common.string_array`; ``pa.array`` does the same
job through its generic converter at ~3x the cost per value (measured on CloudTrail columns).
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.unicode cimport PyUnicode_Check
from libc.stdint cimport int32_t, uint8_t
from libc.string cimport memcmp, memcpy, memset


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL


def utf8_buffers(seq):
    """(offsets, data, validity or None, null count) of an Arrow utf8 array holding ``seq``'s items."""
    cdef list values = seq if type(seq) is list else list(seq)
    cdef Py_ssize_t n = len(values), i, size = 0, total = 0, nulls = 0, pos = 0
    cdef object v
    cdef const char* p
    for i in range(n):  # sizes first: the second pass then copies into exactly-sized buffers
        v = values[i]
        if v is None:
            nulls += 1
        elif PyUnicode_Check(v):
            PyUnicode_AsUTF8AndSize(v, &size)
            total += size
        else:
            raise TypeError(f"expected str or None, got {type(v).__name__}")
    if total > 2147483647:
        raise OverflowError("over 2 GiB of strings in one array")
    offsets = PyByteArray_FromStringAndSize(NULL, 4 * (n + 1))
    data = PyByteArray_FromStringAndSize(NULL, total)
    cdef int32_t* off = <int32_t*> PyByteArray_AS_STRING(offsets)
    cdef char* out = PyByteArray_AS_STRING(data)
    cdef uint8_t* valid = NULL
    validity = None
    if nulls:
        validity = PyByteArray_FromStringAndSize(NULL, (n + 7) // 8)
        valid = <uint8_t*> PyByteArray_AS_STRING(validity)
        memset(valid, 0, (n + 7) // 8)
    off[0] = 0
    for i in range(n):
        v = values[i]
        if v is not None:
            p = PyUnicode_AsUTF8AndSize(v, &size)
            memcpy(out + pos, p, size)
            pos += size
            if valid != NULL:
                valid[i >> 3] |= <uint8_t> (1 << (i & 7))
        off[i + 1] = <int32_t> pos
    return offsets, data, validity, nulls


cdef inline Py_ssize_t _json_len(object v) except -1:
    """Bytes of one Raw value, 0 when it stands for NULL (absent, or the literal null)."""
    cdef Py_buffer view
    cdef Py_ssize_t size
    PyObject_GetBuffer(v, &view, PyBUF_SIMPLE)
    size = view.len
    if size == 4 and memcmp(view.buf, b"null", 4) == 0:
        size = 0
    PyBuffer_Release(&view)
    return size


def json_buffers(seq):
    """The same for a JSON column from ``msgspec.Raw`` values: empty (absent) and ``null`` are NULL."""
    cdef list values = seq if type(seq) is list else list(seq)
    cdef Py_ssize_t n = len(values), i, size, total = 0, nulls = 0, pos = 0
    cdef Py_buffer view
    for i in range(n):
        size = _json_len(values[i])
        if size == 0:
            nulls += 1
        total += size
    if total > 2147483647:
        raise OverflowError("over 2 GiB of JSON in one array")
    offsets = PyByteArray_FromStringAndSize(NULL, 4 * (n + 1))
    data = PyByteArray_FromStringAndSize(NULL, total)
    cdef int32_t* off = <int32_t*> PyByteArray_AS_STRING(offsets)
    cdef char* out = PyByteArray_AS_STRING(data)
    cdef uint8_t* valid = NULL
    validity = None
    if nulls:
        validity = PyByteArray_FromStringAndSize(NULL, (n + 7) // 8)
        valid = <uint8_t*> PyByteArray_AS_STRING(validity)
        memset(valid, 0, (n + 7) // 8)
    off[0] = 0
    for i in range(n):
        PyObject_GetBuffer(values[i], &view, PyBUF_SIMPLE)
        if view.len and not (view.len == 4 and memcmp(view.buf, b"null", 4) == 0):
            memcpy(out + pos, view.buf, view.len)
            pos += view.len
            if valid != NULL:
                valid[i >> 3] |= <uint8_t> (1 << (i & 7))
        PyBuffer_Release(&view)
        off[i + 1] = <int32_t> pos
    return offsets, data, validity, nulls


# -- straight from msgspec Structs: no tuple per row, no list per column ----------------------------
cdef extern from "Python.h":
    ctypedef struct PyObject
    ctypedef struct PyTypeObject
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    PyTypeObject* Py_TYPE(PyObject*)
    const char* _utf8 "PyUnicode_AsUTF8AndSize"(PyObject*, Py_ssize_t*) except NULL
    bint _is_str "PyUnicode_Check"(PyObject*)
    bint _is_list "PyList_Check"(PyObject*)
    Py_ssize_t _list_size "PyList_GET_SIZE"(PyObject*)
    PyObject* _list_item "PyList_GET_ITEM"(PyObject*, Py_ssize_t)
    int _get_buffer "PyObject_GetBuffer"(PyObject*, Py_buffer*, int) except -1
    PyObject* Py_None
    PyObject* Py_True
    PyObject* Py_False
    bint _is_ascii "PyUnicode_IS_COMPACT_ASCII"(PyObject*)
    Py_ssize_t _str_len "PyUnicode_GET_LENGTH"(PyObject*)
    void* _str_data "PyUnicode_DATA"(PyObject*)


cdef inline const char* _utf8_of(PyObject* v, Py_ssize_t* size) except NULL:
    """A str's UTF-8 bytes: compact ASCII strings (nearly all of a log) read in place, no call."""
    if _is_ascii(v):
        size[0] = _str_len(v)
        return <const char*> _str_data(v)
    return _utf8(v, size)

from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc
from types import MemberDescriptorType

#: Column kinds of :func:`struct_columns`.
STRING, JSON, BOOL, SHARED, LIST, PYTHON = 0, 1, 2, 3, 4, 5
DEF T_OBJECT_EX = 16


def member_offsets(typ, names):
    """Where each named field of a msgspec Struct type lives in its instances (slot offsets)."""
    cdef PyMemberDescrObject* d
    out = []
    for name in names:
        desc = next((k.__dict__[name] for k in typ.__mro__ if name in k.__dict__), None)
        if type(desc) is not MemberDescriptorType:
            raise TypeError(f"{typ.__name__}.{name} is not a slot")
        d = <PyMemberDescrObject*> desc
        if d.d_member.type != T_OBJECT_EX:
            raise TypeError(f"{typ.__name__}.{name} is not an object slot")
        out.append(d.d_member.offset)
    return out


cdef inline PyObject* _slot(PyObject* rec, Py_ssize_t off) noexcept:
    cdef PyObject* v = (<PyObject**> ((<char*> rec) + off))[0]
    return Py_None if v == NULL else v


cdef _bitmap(Py_ssize_t n):
    b = PyByteArray_FromStringAndSize(NULL, (n + 7) // 8)
    memset(PyByteArray_AS_STRING(b), 0, (n + 7) // 8)
    return b


cdef tuple _strings(list records, Py_ssize_t off, bint json):
    """(offsets, data, validity or None, nulls) of one string (or JSON Raw) field over ``records``."""
    cdef Py_ssize_t n = len(records), i, size = 0, total = 0, nulls = 0, pos = 0
    cdef PyObject* v
    cdef Py_buffer view
    cdef const char* p
    for i in range(n):
        v = _slot(_list_item(<PyObject*> records, i), off)
        if json:
            if v == Py_None:
                nulls += 1
                continue
            _get_buffer(v, &view, PyBUF_SIMPLE)
            size = view.len
            if size == 4 and memcmp(view.buf, b"null", 4) == 0:
                size = 0
            PyBuffer_Release(&view)
            if size == 0:
                nulls += 1
            total += size
        elif v == Py_None:
            nulls += 1
        elif _is_str(v):
            _utf8_of(v, &size)
            total += size
        else:
            raise TypeError(f"expected str or None, got {type(<object> v).__name__}")
    if total > 2147483647:
        raise OverflowError("over 2 GiB of strings in one array")
    if nulls == n:
        return None, None, None, n
    offsets = PyByteArray_FromStringAndSize(NULL, 4 * (n + 1))
    data = PyByteArray_FromStringAndSize(NULL, total)
    cdef int32_t* o = <int32_t*> PyByteArray_AS_STRING(offsets)
    cdef char* out = PyByteArray_AS_STRING(data)
    cdef uint8_t* valid = NULL
    validity = None
    if nulls:
        validity = _bitmap(n)
        valid = <uint8_t*> PyByteArray_AS_STRING(validity)
    o[0] = 0
    for i in range(n):
        v = _slot(_list_item(<PyObject*> records, i), off)
        if v != Py_None:
            if json:
                _get_buffer(v, &view, PyBUF_SIMPLE)
                if view.len and not (view.len == 4 and memcmp(view.buf, b"null", 4) == 0):
                    memcpy(out + pos, view.buf, view.len)
                    pos += view.len
                    if valid != NULL:
                        valid[i >> 3] |= <uint8_t> (1 << (i & 7))
                PyBuffer_Release(&view)
            else:
                p = _utf8_of(v, &size)
                memcpy(out + pos, p, size)
                pos += size
                if valid != NULL:
                    valid[i >> 3] |= <uint8_t> (1 << (i & 7))
        o[i + 1] = <int32_t> pos
    return offsets, data, validity, nulls


cdef tuple _bools(list records, Py_ssize_t off):
    """(values bitmap, validity or None, nulls) of one bool field."""
    cdef Py_ssize_t n = len(records), i, nulls = 0
    cdef PyObject* v
    data = _bitmap(n)
    validity = _bitmap(n)
    cdef uint8_t* d = <uint8_t*> PyByteArray_AS_STRING(data)
    cdef uint8_t* valid = <uint8_t*> PyByteArray_AS_STRING(validity)
    for i in range(n):
        v = _slot(_list_item(<PyObject*> records, i), off)
        if v == Py_None:
            nulls += 1
            continue
        valid[i >> 3] |= <uint8_t> (1 << (i & 7))
        if v == Py_True:
            d[i >> 3] |= <uint8_t> (1 << (i & 7))
        elif v != Py_False:
            raise TypeError(f"expected bool or None, got {type(<object> v).__name__}")
    return data, (validity if nulls else None), nulls


from pipeline.normalize._hash cimport hash_bytes as _hash


cdef tuple _shared(list records, Py_ssize_t off):
    """(distinct values, int32 index per row) of a Raw field whose values repeat; None stands for NULL
    (absent or the literal null). The distinct values are the rows' own Raw objects, first seen first."""
    cdef Py_ssize_t n = len(records), i, cap = 16, slot, k
    cdef PyObject* v
    cdef Py_buffer view
    cdef uint64_t h
    while cap < 2 * n:
        cap *= 2
    indices = PyByteArray_FromStringAndSize(NULL, 4 * n)
    cdef int32_t* idx = <int32_t*> PyByteArray_AS_STRING(indices)
    distinct = []
    cdef Py_ssize_t null_at = -1
    # open addressing: table[slot] = 1 + index into the distinct arrays (0 = empty)
    cdef Py_ssize_t* table = <Py_ssize_t*> malloc(cap * sizeof(Py_ssize_t))
    cdef const char** ptrs = <const char**> malloc((n + 1) * sizeof(char*))
    cdef Py_ssize_t* lens = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))
    if table == NULL or ptrs == NULL or lens == NULL:
        free(table); free(ptrs); free(lens)
        raise MemoryError()
    memset(table, 0, cap * sizeof(Py_ssize_t))
    try:
        for i in range(n):
            v = _slot(_list_item(<PyObject*> records, i), off)
            if v == Py_None:
                view.len = 0
            else:
                _get_buffer(v, &view, PyBUF_SIMPLE)
                PyBuffer_Release(&view)  # the Raw keeps its bytes alive and unchanged while we look
            if view.len == 0 or (view.len == 4 and memcmp(view.buf, b"null", 4) == 0):
                if null_at < 0:
                    null_at = len(distinct)
                    distinct.append(None)
                idx[i] = <int32_t> null_at
                continue
            h = _hash(<const unsigned char*> view.buf, view.len)
            slot = <Py_ssize_t> (h & <uint64_t> (cap - 1))
            while True:
                k = table[slot]
                if k == 0:
                    k = len(distinct)
                    ptrs[k] = <const char*> view.buf
                    lens[k] = view.len
                    distinct.append(<object> v)
                    table[slot] = k + 1
                    idx[i] = <int32_t> k
                    break
                k -= 1
                if lens[k] == view.len and memcmp(ptrs[k], view.buf, view.len) == 0:
                    idx[i] = <int32_t> k
                    break
                slot = (slot + 1) & (cap - 1)
    finally:
        free(table); free(ptrs); free(lens)
    return distinct, indices


cdef tuple _lists(list records, Py_ssize_t off):
    """(offsets, validity or None, nulls, every row's items in one list) of a list field."""
    cdef Py_ssize_t n = len(records), i, j, m, nulls = 0, pos = 0
    cdef PyObject* v
    offsets = PyByteArray_FromStringAndSize(NULL, 4 * (n + 1))
    cdef int32_t* o = <int32_t*> PyByteArray_AS_STRING(offsets)
    validity = _bitmap(n)
    cdef uint8_t* valid = <uint8_t*> PyByteArray_AS_STRING(validity)
    flat = []
    o[0] = 0
    for i in range(n):
        v = _slot(_list_item(<PyObject*> records, i), off)
        if v == Py_None:
            nulls += 1
        elif _is_list(v):
            valid[i >> 3] |= <uint8_t> (1 << (i & 7))
            m = _list_size(v)
            for j in range(m):
                flat.append(<object> _list_item(v, j))
            pos += m
        else:
            raise TypeError(f"expected list or None, got {type(<object> v).__name__}")
        o[i + 1] = <int32_t> pos
    return offsets, (validity if nulls else None), nulls, flat


def struct_columns(list records, object typ, offsets, kinds):
    """Every field's column parts, read straight from the Structs' slots (``member_offsets``).

    Per field, by kind: STRING and JSON → (offsets, data, validity or None, nulls), with
    ``offsets`` None when every value is NULL; BOOL → (values, validity or None, nulls); SHARED →
    (distinct values, int32 indices); LIST → (offsets, validity or None, nulls, items); PYTHON →
    the values as a list. None when not every record is an instance of exactly ``typ``.
    """
    cdef Py_ssize_t n = len(records), i, f, nf = len(offsets)
    cdef PyTypeObject* t = <PyTypeObject*> typ
    for i in range(n):
        if Py_TYPE(_list_item(<PyObject*> records, i)) != t:
            return None
    out = []
    cdef Py_ssize_t off
    cdef int kind
    for f in range(nf):
        off = offsets[f]
        kind = kinds[f]
        if kind == STRING or kind == JSON:
            out.append(_strings(records, off, kind == JSON))
        elif kind == BOOL:
            out.append(_bools(records, off))
        elif kind == SHARED:
            out.append(_shared(records, off))
        elif kind == LIST:
            out.append(_lists(records, off))
        else:
            out.append([<object> _slot(_list_item(<PyObject*> records, i), off) for i in range(n)])
    return out
