"""The compiled CloudTrail parser (``pipeline/normalize/_records.pyx``) against the msgspec fast path.

Whenever it takes an object, its columns must be exactly (buffer for buffer) those the msgspec
decode and column build give; whatever the strict Structs would not take, it must decline (None),
and the object then gets exactly today's outcome: rows, slow path, rejected records or quarantine.
"""

import datetime as dt
import gzip
import json
import random
from pathlib import Path

import msgspec
import orjson
import pyarrow as pa
import pytest

from pipeline import layout
from pipeline.errors import ObjectError
from pipeline.normalize import cloudtrail, normalize_object
from pipeline.synth.archive import DirSink, generate_archive
from pipeline.synth.records import Replace, iam_user, make_cloudtrail_record
from tests.archive import ct_key

NOW = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
CT = layout.classify(ct_key(), 1, "e")
BENCH = Path(__file__).resolve().parent.parent / ".bench" / "archive-1000000" / "logs"

needs_parser = pytest.mark.skipif(cloudtrail._PARSER is None, reason="the compiled parser is not built here")


def _buffers(arr: pa.Array) -> list:
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    return [None if b is None else b.to_pybytes() for b in arr.buffers()]


def assert_same_columns(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name in want:
        a, b = got[name], want[name]
        assert a.type == b.type, name
        a.validate(full=True)
        assert a.equals(b), name
        assert _buffers(a) == _buffers(b), name  # byte for byte, not only equal values


def parsed_columns(texts: list):
    parsed = [cloudtrail._PARSER.parse(t) for t in texts]
    if any(p is None for p in parsed):
        return None
    return cloudtrail._build_parsed(parsed)


def msgspec_columns(texts: list) -> dict:
    return cloudtrail._build_columns([r for t in texts for r in cloudtrail._decode_file(t).Records])


def outcome(data: bytes, obj=CT):
    """What ingest makes of one object: its table, rejected records and hash, or the quarantine reason."""
    try:
        out = normalize_object(data, obj, "s3://b/k", NOW)
    except ObjectError as e:
        return ("quarantined", str(e))
    except Exception as e:  # a bug: the comparison still shows it (both paths must raise the same)
        return ("raised", type(e).__name__, str(e))
    return ("ok", out.table, [(r.index, r.reason) for r in out.rejected], out.sha256)


def assert_same_outcome(data: bytes, monkeypatch) -> tuple:
    with monkeypatch.context() as m:
        m.setattr(cloudtrail, "_PARSER", None)
        want = outcome(data)
    got = outcome(data)
    assert got[0] == want[0], (got[:2], want[:2])
    if got[0] == "ok":
        assert got[1].schema == want[1].schema and got[1].equals(want[1])
        assert got[2:] == want[2:]
    else:
        assert got == want
    return got


@pytest.fixture(scope="module")
def archive_texts(tmp_path_factory) -> list[bytes]:
    """Every CloudTrail object of a small archive with every scenario's events injected."""
    root = tmp_path_factory.mktemp("records-archive")
    generate_archive(DirSink(root), seed=18, accounts=2, days=1, events=12000, events_per_object=150,
                     guardduty_findings=0, scenarios=("all",), digests=False)
    files = sorted(p for p in root.rglob("*.json.gz") if "/CloudTrail/" in str(p))
    assert len(files) > 60
    return [gzip.decompress(p.read_bytes()) for p in files]


# -- (a) the same columns -------------------------------------------------------------------------
@needs_parser
def test_every_object_of_a_scenario_archive_gives_the_same_columns(archive_texts):
    for text in archive_texts:
        got = parsed_columns([text])
        assert got is not None, text[:200]  # nothing in a synthetic archive is unusual
        assert_same_columns(got, msgspec_columns([text]))


@needs_parser
def test_batches_of_three_give_the_same_columns_and_tables(archive_texts, monkeypatch):
    """One build over several objects (the worker's batches): shared values deduplicated across them."""
    texts = archive_texts[:30]
    for i in range(0, len(texts), 3):
        assert_same_columns(parsed_columns(texts[i:i + 3]), msgspec_columns(texts[i:i + 3]))
    objs = [layout.classify(ct_key(uniq=f"b{i}", hhmm="2359"), 1, "e") for i in range(len(texts))]
    batch = [cloudtrail.decode(gzip.compress(t), o, f"s3://b/{o.key}", NOW) for t, o in zip(texts, objs)]
    assert all(d.records is None and d.parsed is not None for d in batch)  # the parser took them all
    got, got_outs = cloudtrail.build_many(batch, NOW)
    monkeypatch.setattr(cloudtrail, "_PARSER", None)
    old = [cloudtrail.decode(gzip.compress(t), o, f"s3://b/{o.key}", NOW) for t, o in zip(texts, objs)]
    assert all(d.records is not None for d in old)
    want, want_outs = cloudtrail.build_many(old, NOW)
    assert got.schema == want.schema and got.equals(want)
    assert [(o.rows, o.rejected, o.sha256) for o in got_outs] == [(o.rows, o.rejected, o.sha256) for o in want_outs]


@needs_parser
@pytest.mark.skipif(not BENCH.is_dir(), reason="no cached benchmark archive here")
def test_objects_of_the_benchmark_archive_give_the_same_columns():
    files = sorted(BENCH.rglob("*_CloudTrail_*.json.gz"))
    for path in random.Random(18).sample(files, min(200, len(files))):
        text = gzip.decompress(path.read_bytes())
        assert_same_columns(parsed_columns([text]), msgspec_columns([text]))


def _rec(i: int = 0, **kw) -> dict:
    kw.setdefault("eventTime", "2026-11-01T09:30:00Z")
    return make_cloudtrail_record(eventID=f"rp-{i}", **kw)


def _doc(records: list) -> bytes:
    return orjson.dumps({"Records": records})


#: Objects the parser must take, with what makes them unusual.
TAKEN = {
    "escapes": _doc([_rec(userAgent='q"uote\\back/slash\b\f\n\r\t é ☃ 😀 \x00 \x1f', errorMessage="\u2028")]),
    "escaped unicode": b'{"Records": [{"eventTime": "2026-11-01T09:30:00Z", "userAgent": "\\u00e9\\u2603\\ud83d\\ude00\\u0000\\/",'
                       b' "errorCode": "\\"\\\\", "eventName": "plain", "resources": [{"ARN": "a\\u0041", "type": null}]}]}',
    "raw unicode": _doc([_rec(userAgent="é ünïcode ☃ 😀", requestParameters=Replace({"k": "ü😀"}))]),
    "pretty printed": json.dumps({"Records": [_rec(1), _rec(2, readOnly=None, tlsDetails=None)]}, indent=4).encode(),
    "whitespace everywhere": b' \r\n\t{ "Records" :\n[ {\t"eventTime" : "2026-11-01T09:30:00Z" , "readOnly" : true ,'
                             b' "requestParameters" : { "a" : [ 1 , -2.5e+3 , 0.0 , 1E2 , true , false , null , "x" ] } ,'
                             b' "resources" : [ { } , { "ARN" : null } ] , "userIdentity" : { "type" : "Root" } } ] } \n',
    "other top-level keys": b'{"before": {"x": [1, {"y": null}]}, "Records": [' + orjson.dumps(_rec(3)) + b'], "after": "z"}',
    "no records": b'{"Records": []}',
    "empty record list and items": _doc([_rec(4, resources=[]), _rec(5, resources=[{}]), _rec(6, resources=None)]),
    "every value null": _doc([{k: None for k in [c.name for c in cloudtrail._RAW_COLUMNS]}]),
    "only the time": _doc([{"eventTime": "2026-11-01T09:30:00Z"}, {"eventTime": None}]),
    "json of every kind": _doc([_rec(7, requestParameters=Replace(v)) for v in ([1, 2], "s", 3, -0.5, True, False, {}, [], "null")]),
    "structs not objects (the build declines)": _doc([{**_rec(8), "userIdentity": "a string"}, {**_rec(9), "tlsDetails": [1]}]),
    "repeated principals": _doc([_rec(i, userIdentity=Replace(iam_user(f"u{i % 3}"))) for i in range(40)]),
    "bad times (rejected later)": _doc([_rec(10, eventTime="yesterday"), {**_rec(11), "eventTime": None}, _rec(12)]),
    "bom": b"\xef\xbb\xbf" + _doc([_rec(13)]),
}


@needs_parser
@pytest.mark.parametrize("name", list(TAKEN))
def test_unusual_but_valid_objects_are_taken_with_the_same_outcome(name, monkeypatch):
    text = TAKEN[name]
    if "build declines" in name:  # the parser takes raw JSON; the strict decode of a struct refuses it
        with pytest.raises(msgspec.ValidationError):
            msgspec_columns([text])
        with pytest.raises(msgspec.ValidationError):
            parsed_columns([text])
    elif not text.startswith(b"\xef"):
        assert_same_columns(parsed_columns([text]), msgspec_columns([text]))
    assert_same_outcome(gzip.compress(text), monkeypatch)


# -- (b) what the parser declines ------------------------------------------------------------------
_R = orjson.dumps(_rec(20, resources=[{"ARN": "arn:aws:s3:::b", "accountId": "1", "type": "AWS::S3::Bucket"}]))


def _swap(old: bytes, new: bytes) -> bytes:
    assert old in _R, old
    return b'{"Records": [' + _R.replace(old, new, 1) + b"]}"


DECLINED = {
    "unknown field": _doc([_rec(21, brandNewField={"x": 1})]),
    "unknown field in a resource": _doc([_rec(22, resources=[{"ARN": "a", "extra": 1}])]),
    "string field holds a number": _doc([_rec(23, eventName=5)]),
    "string field holds an object": _doc([_rec(24, errorCode={"a": 1})]),
    "bool field holds a string": _doc([_rec(25, readOnly="yes")]),
    "bool field holds a number": _doc([_rec(26, managementEvent=1)]),
    "resources holds a string": _doc([_rec(27, resources="nope")]),
    "resources item is null": _doc([_rec(28, resources=[None])]),
    "resources item is a list": _doc([_rec(29, resources=[["a"]])]),
    "resource field holds a number": _doc([_rec(30, resources=[{"ARN": 1}])]),
    "eventTime missing": _doc([_rec(31, eventTime=None), {"eventName": "x"}]),
    "eventTime a number": _doc([_rec(32, eventTime=1700000000)]),
    "record not an object": _doc([_rec(33), 1, "two", [3], None, True]),
    "empty record": _doc([{}]),
    "truncated": _doc([_rec(34)])[:-30],
    "not json": b"this is a log file, honest",
    "records null": b'{"Records": null}',
    "records a dict": b'{"Records": {"a": 1}}',
    "no records key": b'{"records": []}',
    "empty object": b"{}",
    "top-level list": b"[]",
    "trailing garbage": _doc([_rec(35)]) + b" x",
    "trailing comma": _swap(b'"eventCategory"', b'"eventCategory"')[:-2] + b",]}",
    "invalid utf-8 in a string": _doc([_rec(36)]).replace(b"rp-36", b"rp-\xff\xfe"),
    "invalid utf-8 in json": _doc([_rec(37, requestParameters=Replace({"k": "v"}))]).replace(b'"v"', b'"\xc0\x80"'),
    "encoded surrogate": _doc([_rec(38)]).replace(b"rp-38", b"rp-\xed\xa0\x80"),
    "lone surrogate escape": _doc([_rec(39)]).replace(b"rp-39", b"rp-\\ud800"),
    "lone low surrogate": _doc([_rec(40)]).replace(b"rp-40", b"rp-\\udc00x"),
    "bad escape": _doc([_rec(41)]).replace(b"rp-41", b"rp-\\q"),
    "short unicode escape": _doc([_rec(42)]).replace(b"rp-42", b"rp-\\u12"),
    "raw control byte": _doc([_rec(43)]).replace(b"rp-43", b"rp-\x01"),
    "raw nul": _doc([_rec(44)]).replace(b"rp-44", b"rp\x00"),
    "deep nesting": b'{"Records": [{"eventTime": "2026-11-01T09:30:00Z", "requestParameters": '
                    + b"[" * 10_000 + b"]" * 10_000 + b"}]}",
    "nesting past the parser's limit": b'{"Records": [{"eventTime": "2026-11-01T09:30:00Z", "requestParameters": '
                                       + b"[" * 300 + b"]" * 300 + b"}]}",
    "duplicate field": _doc([_rec(45, eventName="First")]).replace(b'"eventName":"First"',
                                                                   b'"eventName":"First","eventName":"Second"'),
    "duplicate resource field": _swap(b'"type":"AWS::S3::Bucket"', b'"type":"AWS::S3::Bucket","type":"x"'),
    "duplicate records": b'{"Records": [], "Records": [' + orjson.dumps(_rec(46)) + b"]}",
    "escaped field name": _swap(b'"eventName"', b'"event\\u004eame"'),
    "escaped records key": b'{"Rec\\u006frds": [' + orjson.dumps(_rec(47)) + b"]}",
    "bad number in json": _swap(b'"requestParameters":{', b'"requestParameters":{"n":01,'),
    "nan in json": _swap(b'"requestParameters":{', b'"requestParameters":{"n":NaN,'),
    "missing colon": _swap(b'"eventName":', b'"eventName" '),
    "bad literal": _swap(b'"readOnly":true', b'"readOnly":tru'),
    "mistyped userIdentity member (the build declines)": None,  # taken: the distinct build raises, as today
}


@needs_parser
@pytest.mark.parametrize("name", [k for k, v in DECLINED.items() if v is not None])
def test_what_the_structs_would_not_take_is_declined_and_keeps_its_outcome(name, monkeypatch):
    text = DECLINED[name]
    assert cloudtrail._PARSER.parse(text) is None
    assert cloudtrail._PARSER.parse(bytearray(text)) is None
    assert_same_outcome(gzip.compress(text), monkeypatch)


@needs_parser
def test_outcomes_of_declined_objects_are_todays(monkeypatch):
    """Spot checks that the cases above reach every outcome: rows via the slow path, rejected, quarantined."""
    assert assert_same_outcome(gzip.compress(DECLINED["unknown field"]), monkeypatch)[1].column("unmapped")[0].as_py()
    assert "is not a JSON object" in assert_same_outcome(gzip.compress(DECLINED["record not an object"]), monkeypatch)[2][0][1]
    assert assert_same_outcome(gzip.compress(DECLINED["duplicate field"]), monkeypatch)[1].column("eventName")[0].as_py() \
        == "Second"
    assert "nested deeper" in assert_same_outcome(gzip.compress(DECLINED["deep nesting"]), monkeypatch)[1]
    assert "Invalid UTF-8" in assert_same_outcome(gzip.compress(DECLINED["invalid utf-8 in a string"]), monkeypatch)[1]
    assert "invalid JSON" in assert_same_outcome(gzip.compress(DECLINED["truncated"]), monkeypatch)[1]


@needs_parser
def test_a_mistyped_value_inside_a_shared_struct_takes_the_slow_path_as_today(monkeypatch):
    recs = [_rec(50), _rec(51, userIdentity=Replace({"type": "IAMUser", "userName": 42}))]
    text = _doc(recs)
    assert cloudtrail._PARSER.parse(text) is not None  # raw JSON to the parser; the strict decode of the struct refuses it
    with pytest.raises(msgspec.ValidationError):
        cloudtrail._build_parsed([cloudtrail._PARSER.parse(text)])
    got = assert_same_outcome(gzip.compress(text), monkeypatch)
    assert got[1].num_rows == 2 and got[1].column("unmapped")[1].as_py() is not None


@needs_parser
def test_text_kinds_the_parser_reads(monkeypatch):
    """bytes, bytearray and the gunzip's memoryview past a BOM (ending where its bytearray ends), or a copy."""
    text = _doc([_rec(60), _rec(61)])
    want = msgspec_columns([text])
    for form in (text, bytearray(text), memoryview(bytearray(b"\xef\xbb\xbf" + text))[3:],
                 memoryview(bytearray(text + b"  "))[:len(text)], memoryview(text)):
        assert_same_columns(cloudtrail._build_parsed([cloudtrail._PARSER.parse(form)]), want)


# -- (c) fuzz --------------------------------------------------------------------------------------
_VALUES = [None, 1, -2.5, "s", "", True, False, [], {}, [1, "x"], {"a": {"b": None}}, "é\n\"", [None], [{}]]


def _mutants(rnd: random.Random, base: list[dict]):
    doc = _doc(base)
    for _ in range(700):  # byte flips, insertions and deletions
        b = bytearray(doc)
        for _ in range(rnd.choice((1, 1, 2, 3))):
            at = rnd.randrange(len(b))
            op = rnd.random()
            byte = rnd.choice(b'{}[]",:\\ 0-.eEtfnu\x00\x1f\x7f\x80\xc3\xe2\xff' + bytes([rnd.randrange(256)]))
            if op < 0.5:
                b[at] = byte
            elif op < 0.75:
                b.insert(at, byte)
            else:
                del b[at]
        yield bytes(b)
    for _ in range(150):  # truncations
        yield doc[:rnd.randrange(len(doc))]
    names = [c.name for c in cloudtrail._RAW_COLUMNS]
    for _ in range(500):  # a field's value swapped for one of another type, or an extra field
        recs = json.loads(doc)["Records"]
        r = rnd.choice(recs)
        key = rnd.choice(names + ["resources", "resources", "extraField"])
        if key == "resources" and isinstance(r.get("resources"), list) and r["resources"] and rnd.random() < 0.7:
            item = rnd.choice(r["resources"])
            if isinstance(item, dict):
                item[rnd.choice(["ARN", "accountId", "type", "other"])] = rnd.choice(_VALUES)
        elif rnd.random() < 0.15:
            r.pop(key, None)
        else:
            r[key] = rnd.choice(_VALUES)
        yield _doc(recs)


@needs_parser
def test_fuzzed_objects_are_either_declined_or_give_the_same_columns(monkeypatch):
    rnd = random.Random(18)
    base = [_rec(70, resources=[{"ARN": "arn:aws:s3:::b", "type": "AWS::S3::Bucket"}], userAgent="é ☃\\"),
            _rec(71, readOnly=None, tlsDetails=None, requestParameters=Replace({"a": [1, 2.5e3, None, "x\u00e9"]})),
            _rec(72, userIdentity=Replace(iam_user("bob")), errorCode="AccessDenied")]
    taken = declined = 0
    for i, text in enumerate(_mutants(rnd, base)):
        parsed = cloudtrail._PARSER.parse(text)
        if parsed is None:
            declined += 1
        else:
            taken += 1
            records = cloudtrail._decode_file(text).Records  # whatever it took, the Structs take too
            try:
                want = cloudtrail._build_columns(records)
            except msgspec.ValidationError:  # a shared struct's member: both builds refuse it
                with pytest.raises(msgspec.ValidationError):
                    cloudtrail._build_parsed([parsed])
                continue
            except msgspec.DecodeError:  # the parser checks UTF-8 everywhere: it cannot have taken this
                raise AssertionError(f"the parser took an object today's build cannot decode: {text!r}") from None
            assert_same_columns(cloudtrail._build_parsed([parsed]), want)
        if i % 25 == 0:  # and the whole outcome, for a sample (slower)
            assert_same_outcome(gzip.compress(text), monkeypatch)
    assert taken > 200 and declined > 500  # both sides exercised


# -- (d) without the extension ---------------------------------------------------------------------
def test_without_the_compiled_parser_msgspec_decodes_with_the_same_outcome(archive_texts, monkeypatch):
    """What a machine without a C compiler runs: the msgspec path, same tables and results."""
    texts = archive_texts[:9]
    objs = [layout.classify(ct_key(uniq=f"w{i}", hhmm="2359"), 1, "e") for i in range(len(texts))]

    def run():
        batch = [cloudtrail.decode(gzip.compress(t), o, f"s3://b/{o.key}", NOW) for t, o in zip(texts, objs)]
        table, outs = cloudtrail.build_many(batch, NOW)
        return batch, table, [(o.rows, o.rejected, o.sha256) for o in outs]

    with_parser = run()
    monkeypatch.setattr(cloudtrail, "_PARSER", None)
    without = run()
    assert all(d.records is not None and d.parsed is None for d in without[0])
    assert without[1].equals(with_parser[1]) and without[2] == with_parser[2]
    for text in list(TAKEN.values())[:5] + [DECLINED["unknown field"], DECLINED["record not an object"]]:
        outcome(gzip.compress(text))  # every path still works without the parser


def test_a_batch_mixing_parsed_and_msgspec_decoded_objects(archive_texts, monkeypatch):
    """An object the parser declined but msgspec took (e.g. a duplicate key) batched with parsed ones."""
    texts = [archive_texts[0], DECLINED["duplicate field"], archive_texts[1]]
    objs = [layout.classify(ct_key(uniq=f"m{i}", hhmm="2359"), 1, "e") for i in range(3)]
    batch = [cloudtrail.decode(gzip.compress(t), o, f"s3://b/{o.key}", NOW) for t, o in zip(texts, objs)]
    table, _ = cloudtrail.build_many(batch, NOW)
    monkeypatch.setattr(cloudtrail, "_PARSER", None)
    old = [cloudtrail.decode(gzip.compress(t), o, f"s3://b/{o.key}", NOW) for t, o in zip(texts, objs)]
    assert table.equals(cloudtrail.build_many(old, NOW)[0])


def test_the_parser_is_built_where_a_c_compiler_is():
    import shutil

    if shutil.which("cc") is None:
        pytest.skip("no C compiler here: msgspec decodes every object")
    assert cloudtrail._PARSER is not None, "pip install did not build pipeline/normalize/_records.pyx"


@pytest.mark.parametrize("parser", [True, False])
def test_invalid_utf8_inside_a_repeated_struct_rejects_that_record_only(parser, monkeypatch):
    """msgspec keeps userIdentity/tlsDetails raw while decoding the file, so their bytes are first
    checked by the distinct build: the record is rejected with the reason, the others are kept."""
    if not parser:
        monkeypatch.setattr(cloudtrail, "_PARSER", None)
    doc = _doc([_rec(1), _rec(2, userIdentity=Replace(iam_user("bob"))),
                _rec(3, tlsDetails=Replace({"tlsVersion": "TLSv1.2"}))])
    doc = doc.replace(b'"bob"', b'"b\xffb"', 1).replace(b"TLSv1.2", b"TLS\xff", 1)
    kind, table, rejected, _ = outcome(gzip.compress(doc))
    assert kind == "ok" and table.num_rows == 1
    assert [i for i, _ in rejected] == [1, 2]
    assert all("not valid JSON" in why and "UTF-8" in why for _, why in rejected)
