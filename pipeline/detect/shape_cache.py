"""What the rules' SQL reads, kept on disk between runs, so a scheduled run does not parse and
analyse 122 unchanged rules again (about a third of a one-shot run over a day of data).

One JSON file in the user's cache folder (``SOCLAKE_CACHE_DIR``, else ``$XDG_CACHE_HOME/soclake``,
else ``~/.cache/soclake``) holds, per rule SQL text (by its SHA-256), the
:func:`sqlshape.analyse` and :func:`sqlshape.simple_select` results, and the text of the last
few :func:`sqlshape.fused_sql` queries. The file's name carries a key made of everything those
results depend on besides the SQL: the soclake and DuckDB versions, the source of the analysis
code and the lake tables' schemas. So a changed rule is a new entry, a changed version,
analysis or schema a new file (older files are removed); a file that cannot be read or decoded
is ignored and rebuilt, and a cache folder that cannot be written only costs the time saved.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

import duckdb
import orjson

from pipeline.detect import sqlshape
from pipeline.detect.sqlshape import SimpleSelect, SqlShape

PREFIX = "rule-shapes-"
MAX_ENTRIES = 4096  # beyond this, a write keeps only the entries of the run that writes
MAX_FUSED = 8


def cache_dir() -> Path:
    env = os.environ.get("SOCLAKE_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "soclake"


@functools.cache
def key() -> str:
    """Everything an analysis depends on besides the SQL text."""
    import importlib.util

    import pipeline
    from pipeline import schema

    # the analysis code, and the code of the views rules bind against (read, not imported: no import circle)
    code = ("pipeline.detect.sqlshape", __name__, "pipeline.detect.sql", "pipeline.views", "pipeline.enrich.sql")
    h = hashlib.sha256()
    for part in (pipeline.__version__, duckdb.__version__,
                 *(Path(importlib.util.find_spec(m).origin).read_bytes() for m in code),
                 *(str(schema.arrow_schema(t)) for t in ("cloudtrail", "guardduty"))):
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- encoding: sets become sorted lists, tuples lists ------------------------------------------------


def encode_shape(s: SqlShape) -> dict:
    return {
        "tables": sorted(s.tables),
        "columns": {t: None if c is None else sorted(c) for t, c in s.columns.items()},
        "prefilters": s.prefilters,
        "stateful": s.stateful,
        "names": {t: [None if n is None else sorted(n) for n in v] for t, v in s.names.items()},
        "paths": {c: sorted(list(p) for p in v) for c, v in s.paths.items()},
        "needs_rows": s.needs_rows,
    }


def decode_shape(d: dict) -> SqlShape:
    return SqlShape(
        tables=set(d["tables"]),
        columns={t: None if c is None else set(c) for t, c in d["columns"].items()},
        prefilters={t: None if p is None else list(p) for t, p in d["prefilters"].items()},
        stateful=bool(d["stateful"]),
        names={t: [None if n is None else frozenset(n) for n in v] for t, v in d["names"].items()},
        paths={c: {tuple(p) for p in v} for c, v in d["paths"].items()},
        needs_rows=bool(d["needs_rows"]),
    )


def encode_simple(s: SimpleSelect | None) -> dict | None:
    return None if s is None else {"table": s.table, "names": list(s.names), "exprs": list(s.exprs), "where": s.where}


def decode_simple(d: dict | None) -> SimpleSelect | None:
    return None if d is None else SimpleSelect(d["table"], tuple(d["names"]), tuple(d["exprs"]), d["where"])


def _fused_key(selects: list[SimpleSelect]) -> str:
    return _digest(json.dumps([encode_simple(s) for s in selects]))


# -- the file ----------------------------------------------------------------------------------------


def path() -> Path:
    return cache_dir() / f"{PREFIX}{key()}.json"


#: The last file read or written by this process, by its identity (path, inode, size, mtime): a
#: run reads the file once, not once per step that asks (loading the catalogue, the analyses,
#: the fused query); another process's write changes the identity, so it is read again.
_LAST: tuple[tuple, dict] | None = None


def _stamp(p: Path) -> tuple | None:
    try:
        st = p.stat()
    except OSError:
        return None
    return (str(p), st.st_ino, st.st_size, st.st_mtime_ns)


def _copy(data: dict) -> dict:
    return {k: dict(data[k]) for k in ("rules", "fused", "columns")}


def _read(p: Path) -> dict:
    """The stored entries, or empty ones when the file is missing, unreadable or not ours."""
    global _LAST
    stamp = _stamp(p)
    if stamp is not None and _LAST is not None and _LAST[0] == stamp:
        return _copy(_LAST[1])
    try:
        data = orjson.loads(p.read_bytes())
    except (OSError, ValueError):
        return {"rules": {}, "fused": {}, "columns": {}}
    if not isinstance(data, dict) or data.get("key") != key():
        return {"rules": {}, "fused": {}, "columns": {}}
    out = {k: data[k] if isinstance(data.get(k), dict) else {} for k in ("rules", "fused", "columns")}
    if stamp is not None:
        _LAST = (stamp, _copy(out))
    return out


def _write(p: Path, data: dict) -> None:
    global _LAST
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=PREFIX, suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps({"key": key(), **data}))
            os.replace(tmp, p)
            stamp = _stamp(p)
            if stamp is not None:
                _LAST = (stamp, _copy(data))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for old in p.parent.glob(f"{PREFIX}*.json"):  # files of other versions: never read again
            if old != p:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only or full cache folder: the next run analyses again


class _Session:
    """The cache file's entries for one run; written back once if the run added any."""

    def __init__(self) -> None:
        self.path = path()
        self.data = _read(self.path)
        self.used: dict[str, dict] = {}
        self.dirty = False

    def save(self) -> None:
        if not self.dirty:
            return
        rules = self.data["rules"] if len(self.data["rules"]) + len(self.used) <= MAX_ENTRIES else {}
        columns = self.data["columns"] if len(self.data["columns"]) <= MAX_ENTRIES else {}
        fused = dict(list(self.data["fused"].items())[-MAX_FUSED:])
        _write(self.path, {"rules": {**rules, **self.used}, "fused": fused, "columns": columns})
        self.dirty = False


def prime(sqls: list[str]) -> None:
    """Make :func:`sqlshape.analyse` and :func:`sqlshape.simple_select` answer these SQL texts
    from the cache file, analysing (and storing) only the texts it does not hold. SQL that does
    not parse is left to the callers, which report it."""
    todo = [s for s in dict.fromkeys(sqls) if s not in sqlshape.SEEDED]
    if not todo:
        return
    session = _Session()
    for sql in todo:
        h = _digest(sql)
        entry = session.data["rules"].get(h)
        try:
            shape, simple = decode_shape(entry["shape"]), decode_simple(entry["simple"])
        except (TypeError, KeyError, ValueError, AttributeError):
            try:
                shape, simple = sqlshape.analyse(sql), sqlshape.simple_select(sql)
            except (ValueError, duckdb.Error):
                continue
            entry = {"shape": encode_shape(shape), "simple": encode_simple(simple)}
            session.dirty = True
        session.used[h] = entry
        sqlshape.SEEDED[sql] = (shape, simple)
    session.save()


def fused_sql(selects: list[SimpleSelect]) -> str:
    """:func:`sqlshape.fused_sql`, from the cache file when this set of rules was fused before."""
    k = _fused_key(selects)
    session = _Session()
    text = session.data["fused"].get(k)
    if isinstance(text, str):
        return text
    text = sqlshape.fused_sql(selects)
    session.data["fused"].pop(k, None)
    session.data["fused"][k] = text
    session.dirty = True
    session.save()
    return text


class OutputColumns:
    """The output column names of rule SQL that bound before against the same empty views (the cache
    key covers the views' code and schemas): loading the catalogue then binds only new or changed
    rules (~5 ms each). Use as a context manager; the file is written once at the end."""

    def __enter__(self) -> OutputColumns:
        self.session = _Session()
        return self

    def get(self, sql: str) -> list[str] | None:
        cols = self.session.data["columns"].get(_digest(sql))
        return cols if isinstance(cols, list) and all(isinstance(c, str) for c in cols) else None

    def put(self, sql: str, cols: list[str]) -> None:
        self.session.data["columns"][_digest(sql)] = list(cols)
        self.session.dirty = True

    def __exit__(self, *exc) -> None:
        self.session.save()
