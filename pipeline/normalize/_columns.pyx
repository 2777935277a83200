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
