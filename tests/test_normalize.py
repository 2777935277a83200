"""The normalisers on records shaped as AWS writes them (built with the synth factories)."""

import datetime as dt
import gzip

import orjson
import pyarrow as pa
import pytest

from pipeline import layout, schema
from pipeline.errors import ObjectError
from pipeline.normalize import normalize
from pipeline.synth.records import (
    Replace,
    assumed_role,
    aws_service,
    iam_user,
    make_cloudtrail_record,
    make_guardduty_finding,
    root,
)
from tests.archive import ct_bytes, ct_key, gd_bytes, gd_key

NOW = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
CT = layout.classify(ct_key(), 1, "e")
GD = layout.classify(gd_key(), 1, "e")


def rows(records):
    return normalize(ct_bytes(records), CT, "s3://b/k", NOW).to_pylist()


def test_cloudtrail_keeps_aws_names_and_nesting_and_derives_snake_case():
    rec = make_cloudtrail_record(
        eventName="CreateUser", eventSource="iam.amazonaws.com", readOnly=False,
        userIdentity=Replace(assumed_role("Admin", "bob", "222222222222", mfa=True)),
        requestParameters=Replace({"userName": "mallory", "tags": [{"key": "k", "value": "v"}]}),
        eventTime="2026-11-01T23:59:59Z",
    )
    table = normalize(ct_bytes([rec]), CT, "s3://b/k", NOW)
    assert table.schema == schema.arrow_schema("cloudtrail")
    r = table.to_pylist()[0]
    assert r["eventName"] == "CreateUser" and r["readOnly"] is False
    assert r["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"] == "Admin"
    assert r["userIdentity"]["sessionContext"]["attributes"]["mfaAuthenticated"] == "true"
    assert orjson.loads(r["requestParameters"]) == {"userName": "mallory", "tags": [{"key": "k", "value": "v"}]}
    assert r["event_time"] == dt.datetime(2026, 11, 1, 23, 59, 59, tzinfo=dt.UTC)
    assert r["event_date"] == dt.date(2026, 11, 1)
    assert r["account_id"] == "222222222222" and r["region"] == "us-east-1"
    assert r["actor"] == rec["userIdentity"]["arn"]
    assert (r["source_object"], r["source_index"], r["ingested_at"]) == ("s3://b/k", 0, NOW)
    assert r["unmapped"] is None


@pytest.mark.parametrize(
    "identity, actor",
    [
        (root("333333333333"), "arn:aws:iam::333333333333:root"),
        (aws_service("lambda.amazonaws.com"), "lambda.amazonaws.com"),
        (iam_user("carol", "111111111111"), "arn:aws:iam::111111111111:user/carol"),
    ],
)
def test_actor_is_one_principal_string(identity, actor):
    assert rows([make_cloudtrail_record(userIdentity=Replace(identity))])[0]["actor"] == actor


def test_unknown_and_mistyped_fields_go_to_unmapped_not_dropped():
    plain = make_cloudtrail_record(eventID="a")
    new_top = make_cloudtrail_record(eventID="b", brandNewField={"x": 1})
    new_nested = make_cloudtrail_record(eventID="c", userIdentity={"futureAttr": "y"})
    mistyped = make_cloudtrail_record(eventID="d", readOnly="true")
    nested_mistyped = make_cloudtrail_record(eventID="e", tlsDetails={"tlsVersion": 1.3})
    got = {r["eventID"]: r for r in rows([plain, new_top, new_nested, mistyped, nested_mistyped])}
    assert got["a"]["unmapped"] is None
    assert orjson.loads(got["b"]["unmapped"]) == {"brandNewField": {"x": 1}}
    assert orjson.loads(got["c"]["unmapped"]) == {"userIdentity.futureAttr": "y"}
    assert got["c"]["userIdentity"]["userName"] == "alice"  # the rest of the struct still maps
    assert orjson.loads(got["d"]["unmapped"]) == {"readOnly": "true"} and got["d"]["readOnly"] is None
    assert orjson.loads(got["e"]["unmapped"])["tlsDetails"]["tlsVersion"] == 1.3 and got["e"]["tlsDetails"] is None
    assert got["a"]["tlsDetails"] == plain["tlsDetails"]  # shared values decode like any other


def test_null_and_absent_free_form_objects_are_null():
    r = rows([make_cloudtrail_record(responseElements=None, requestParameters=Replace({}))])[0]
    assert r["responseElements"] is None and r["requestParameters"] == "{}"


def test_empty_records_array_is_zero_rows_not_an_error():
    assert normalize(ct_bytes([]), CT, "u", NOW).num_rows == 0


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty object"),
        (b"plain text", "not gzip"),
        (gzip.compress(b'{"Records": [{"eventTime": "2026-11-01T00:00:00Z"}]}', mtime=0)[:-12], "corrupt gzip"),
        (gzip.compress(b'{"Records": [{"eventTime": "2026-11-01T00:00:00Z", "eventName": "X"', mtime=0), "invalid JSON"),
        (gzip.compress(b'{"configurationItems": []}', mtime=0), "not a CloudTrail log file"),
        (ct_bytes([make_cloudtrail_record(eventID="e1"), make_cloudtrail_record(eventID="e2", eventTime=None)]), r"record 1 \(eventID e2\) has no eventTime"),
        (ct_bytes([make_cloudtrail_record(eventTime="yesterday")]), "not an ISO-8601"),
        (ct_bytes([make_cloudtrail_record(eventTime=12)]), "eventTime"),
    ],
)
def test_bad_cloudtrail_objects_raise_the_quarantine_reason(data, reason):
    with pytest.raises(ObjectError, match=reason):
        normalize(data, CT, "u", NOW)


def test_guardduty_pivots_severity_label_and_full_objects():
    f = make_guardduty_finding(severity=8.0, updatedAt="2026-11-01T10:30:00.123Z", futureKey=1)
    t = normalize(gd_bytes([f]), GD, "s3://b/g", NOW)
    assert t.schema == schema.arrow_schema("guardduty")
    r = t.to_pylist()[0]
    key = f["resource"]["accessKeyDetails"]
    assert (r["id"], r["type"], r["severity_label"]) == (f["id"], f["type"], "High")
    assert (r["access_key_id"], r["user_name"], r["resource_type"]) == (key["accessKeyId"], key["userName"], "AccessKey")
    assert r["action_type"] == f["service"]["action"]["actionType"]
    assert r["remote_ip"] == f["service"]["action"]["awsApiCallAction"]["remoteIpDetails"]["ipAddressV4"]
    assert r["archived"] is False and r["sample"] is False
    assert orjson.loads(r["service"]) == f["service"] and orjson.loads(r["resource"]) == f["resource"]
    assert r["event_time"] == dt.datetime(2026, 11, 1, 10, 30, 0, 123000, tzinfo=dt.UTC)
    assert orjson.loads(r["unmapped"]) == {"futureKey": 1}
    assert r["region"] == f["region"] and r["account_id"] == f["accountId"]


@pytest.mark.parametrize("sev, label", [(2.0, "Low"), (5.5, "Medium"), (7.0, "High"), (9.1, "Critical")])
def test_guardduty_severity_bands(sev, label):
    t = normalize(gd_bytes([make_guardduty_finding(severity=sev)]), GD, "u", NOW)
    assert t.column("severity_label").to_pylist() == [label]


def test_guardduty_bad_line_names_the_line():
    data = gzip.compress(orjson.dumps(make_guardduty_finding()) + b"\n{truncated")
    with pytest.raises(ObjectError, match="line 2: invalid JSON"):
        normalize(data, GD, "u", NOW)
    with pytest.raises(ObjectError, match="not a GuardDuty finding"):
        normalize(gzip.compress(b'{"hello": 1}\n'), GD, "u", NOW)


def test_arrow_schema_is_derived_from_the_yaml():
    s = schema.load("cloudtrail")
    names = [c.name for c in s.columns]
    assert schema.arrow_schema("cloudtrail").names == names
    assert "event_date" not in schema.arrow_schema("cloudtrail", with_partitions=False).names
    assert isinstance(schema.arrow_schema("cloudtrail").field("requestParameters").type, pa.JsonType)


# -- the compiled column builder and its pure-Python fallback -----------------------------------
def _mixed_records():
    recs = [make_cloudtrail_record(eventName=f"Op{i}", userAgent="é ünïcode ☃" if i % 3 == 0 else "",
                                   errorCode="AccessDenied" if i % 4 == 0 else None,
                                   userIdentity=Replace(iam_user(f"user{i % 2}")),
                                   resources=[{"ARN": f"arn:aws:s3:::b{i}", "type": "AWS::S3::Bucket"}] if i % 2 else None)
            for i in range(40)]
    recs[5].pop("userAgent")  # absent, not only null
    return recs


def _edge_records():
    """Every shape a column can take: absent, null, empty, repeated and distinct nested values."""
    recs = _mixed_records()
    for i, r in enumerate(recs):
        if i % 5 == 1:
            r["userIdentity"] = None  # the literal null
        if i % 5 == 2:
            r.pop("userIdentity")  # absent
        if i % 3 == 1:
            r["readOnly"] = None
        if i % 7 == 3:
            r["managementEvent"] = False
        if i % 6 == 0:
            r["resources"] = []
        if i % 4 == 2:
            r["tlsDetails"] = {"tlsVersion": f"TLSv1.{i % 3}", "cipherSuite": "X", "clientProvidedHostHeader": None}
        if i % 8 == 5:
            r["tlsDetails"] = None
        if i % 9 == 4:
            r["additionalEventData"] = None
        if i % 10 == 7:
            r["requestParameters"] = {}
        if i % 11 == 6:
            r["userIdentity"] = {"type": "AWSService", "invokedBy": f"svc{i}.amazonaws.com"}
    return recs


def _pure_python(monkeypatch):
    from pipeline.normalize import cloudtrail, common

    monkeypatch.setattr(common, "utf8_buffers", None)
    monkeypatch.setattr(common, "json_buffers", None)
    monkeypatch.setattr(cloudtrail, "_DIRECT", None)
    monkeypatch.setattr(cloudtrail, "_PARSER", None)


@pytest.mark.parametrize("records", [_mixed_records, _edge_records])
def test_compiled_and_pure_python_builders_give_the_same_table(monkeypatch, records):
    data = ct_bytes(records())
    compiled = normalize(data, CT, "s3://b/k", NOW)
    _pure_python(monkeypatch)
    pure = normalize(data, CT, "s3://b/k", NOW)
    compiled.validate(full=True)
    assert compiled.equals(pure) and compiled.schema == pure.schema
    got = compiled.to_pylist()
    assert got[0]["userAgent"] == "é ünïcode ☃" and got[1]["userAgent"] == "" and got[5]["userAgent"] is None
    assert [r["errorCode"] for r in got[:5]] == ["AccessDenied", None, None, None, "AccessDenied"]


def test_compiled_and_pure_python_agree_on_the_slow_path(monkeypatch):
    """Records the strict Structs refuse (unknown fields, wrong types) go through LenientRecord: same columns."""
    recs = _edge_records()
    recs[3]["brandNewField"] = {"x": 1}
    recs[8]["readOnly"] = "yes"  # wrong type: kept in unmapped
    recs[9]["userIdentity"] = {"type": "IAMUser", "extra": 1}
    data = ct_bytes(recs)
    compiled = normalize(data, CT, "s3://b/k", NOW)
    _pure_python(monkeypatch)
    pure = normalize(data, CT, "s3://b/k", NOW)
    assert compiled.equals(pure)
    assert compiled.column("unmapped")[3].as_py() is not None


def test_compiled_column_build_matches_on_the_bench_archive_shapes(monkeypatch):
    """Many objects, many distinct principals (the C hash table's probing), one record and none."""
    import random

    from pipeline.normalize import cloudtrail

    if cloudtrail._DIRECT is None:
        pytest.skip("not compiled")
    rnd = random.Random(7)
    many = [make_cloudtrail_record(userIdentity=Replace(iam_user(f"u{rnd.randrange(3000)}")),
                                   readOnly=rnd.choice([True, False, None])) for _ in range(2500)]
    for recs in (many, many[:1], []):
        decoded = cloudtrail._decode_file(orjson.dumps({"Records": recs})).Records
        a, b = cloudtrail._build_columns(decoded), cloudtrail._build_columns_python(decoded)
        assert list(a) == list(b)
        for name in a:
            assert a[name].equals(b[name]) and a[name].type == b[name].type, name
            a[name].validate(full=True)


def test_compiled_build_declines_records_of_mixed_types():
    from pipeline.normalize import cloudtrail

    if cloudtrail._DIRECT is None:
        pytest.skip("not compiled")
    good = cloudtrail._decode_file(orjson.dumps({"Records": [make_cloudtrail_record()]})).Records
    mixed = good + [cloudtrail.LenientRecord(eventTime="2026-11-01T00:00:00Z")]
    assert cloudtrail._DIRECT(good) is not None and cloudtrail._DIRECT(mixed) is None  # the pure-Python path takes it
    assert cloudtrail._build_columns(mixed)["eventTime"].to_pylist() == [good[0].eventTime, "2026-11-01T00:00:00Z"]


def test_the_compiled_builder_is_built_where_a_c_compiler_is():
    import shutil

    from pipeline.normalize import common

    if shutil.which("cc") is None:
        pytest.skip("no C compiler here: the pure-Python builder is used")
    from pipeline.normalize import cloudtrail

    assert common.utf8_buffers is not None and common.json_buffers is not None, \
        "pip install did not build pipeline/normalize/_columns.pyx"
    assert cloudtrail._DIRECT is not None  # the compiled column build is the one ingest uses


def test_utf8_buffers_match_arrows_own_conversion():
    from pipeline.normalize import common

    if common.utf8_buffers is None:
        pytest.skip("not compiled")
    for values in (["a", None, "", "ünï", None, "x" * 300] * 5, ("a", "b"), [None, "z"], ["only"]):
        assert common.build_strings(values).equals(pa.array(list(values), pa.string()))
    with pytest.raises(TypeError, match="expected str or None, got int"):
        common.utf8_buffers(["a", 1])


def test_json_buffers_match_the_pure_python_json_column(monkeypatch):
    import msgspec

    from pipeline.normalize import common

    if common.json_buffers is None:
        pytest.skip("not compiled")
    raws = [msgspec.Raw(b'{"a":1}'), msgspec.Raw(), msgspec.Raw(b"null"), msgspec.Raw(b'"null"'), msgspec.Raw(b"[]")] * 3
    compiled = common.json_array(raws)
    monkeypatch.setattr(common, "json_buffers", None)
    pure = common.json_array(raws)
    assert compiled.equals(pure) and compiled.type == common.JSON
    assert compiled.storage.to_pylist()[:5] == ['{"a":1}', None, None, '"null"', "[]"]
    assert common.json_array([msgspec.Raw(), msgspec.Raw(b"null")]).null_count == 2


# -- several objects' rows built as one table (the workers' batches) ----------------------------
def _batch_objects():
    """Objects as a worker meets them: other accounts and regions, a record with a bad time or a
    malformed account (the key's is used), one late record, one empty object."""
    from tests.archive import records_for

    objs = []
    for n, (acct, region, hhmm) in enumerate([("111111111111", "us-east-1", "1000"), ("222222222222", "eu-west-1", "1010"),
                                              ("111111111111", "us-east-1", "1020"), ("333333333333", "us-east-1", "1030")]):
        recs = records_for(20 + n, account=acct, region=region, tag=f"b{n}")
        if n == 1:
            recs[3]["eventTime"] = "not a time"
            recs[4]["recipientAccountId"] = "../evil"
        if n == 2:
            recs[7]["eventTime"] = "2026-11-03T10:00:00Z"  # over a day after its delivery
        objs.append((layout.classify(ct_key(account=acct, region=region, hhmm=hhmm, uniq=f"o{n}"), 1, "e"),
                     ct_bytes(recs)))
    objs.append((layout.classify(ct_key(hhmm="1040", uniq="empty"), 1, "e"), ct_bytes([])))
    return objs


@pytest.mark.parametrize("compiled", [True, False])
def test_a_batch_gives_the_rows_each_object_gives_alone(monkeypatch, compiled):
    import pyarrow.compute as pc

    from pipeline.normalize import Decoded, build_decoded, decode_object, finish_decoded

    if not compiled:
        _pure_python(monkeypatch)
    batch = [decode_object(data, obj, f"s3://b/{obj.key}", NOW) for obj, data in _batch_objects()]
    assert all(isinstance(d, Decoded) for d in batch)
    alone = [finish_decoded(d, NOW) for d in batch]
    table, outs = build_decoded(batch, NOW)
    table.validate(full=True)
    assert table.equals(pa.concat_tables([a.table for a in alone]).combine_chunks())
    assert [(o.rows, o.rejected, o.sha256) for o in outs] == [(a.table.num_rows, a.rejected, a.sha256) for a in alone]
    assert [len(o.rejected) for o in outs] == [0, 1, 1, 0, 0]
    assert pc.unique(table.column("account_id")).to_pylist() == ["111111111111", "222222222222", "333333333333"]


def test_a_worker_builds_objects_in_batches_and_answers_for_each(tmp_path):
    from pipeline.ingest.workers import ObjectProcessor
    from pipeline.lake import LocalStore

    proc = ObjectProcessor(LocalStore(tmp_path / "lake"), "part-t-w0", 64 << 20, batch_rows=50)
    got = []
    for obj, data in _batch_objects():
        got += proc.process(data, obj, f"s3://b/{obj.key}", NOW)
    assert len(got) == 3 and proc.pending == 2  # 20 + 21 + 22 rows reach the batch size; 23 + 0 wait
    got += proc.finish()
    files = proc.flush()
    assert [r.rows for r in got] == [20, 20, 21, 23, 0] and [len(r.rejected) for r in got] == [0, 1, 1, 0, 0]
    assert got[0].partitions == ("cloudtrail/event_date=2026-11-01/account_id=111111111111/region=us-east-1",)
    assert got[1].partitions == ("cloudtrail/event_date=2026-11-01/account_id=222222222222/region=eu-west-1",)
    assert got[4].partitions == () and sum(f.rows for f in files) == 84


def test_a_mistyped_nested_value_sends_only_its_object_to_the_slow_path(tmp_path):
    from pipeline.ingest.workers import ObjectProcessor
    from pipeline.lake import LocalStore
    from tests.archive import records_for

    bad = records_for(3, tag="bad")
    bad[1]["userIdentity"] = {"type": "IAMUser", "userName": 42}  # a number where the schema has a string
    objs = [(layout.classify(ct_key(uniq="ok"), 1, "e"), ct_bytes(records_for(4, tag="ok"))),
            (layout.classify(ct_key(hhmm="1010", uniq="bad"), 1, "e"), ct_bytes(bad))]
    proc = ObjectProcessor(LocalStore(tmp_path / "lake"), "part-t-w0", 64 << 20, batch_rows=1000)
    got = [r for obj, data in objs for r in proc.process(data, obj, f"s3://b/{obj.key}", NOW)] + proc.finish()
    proc.flush()
    assert [(r.rows, r.error) for r in got] == [(4, None), (3, None)]
    assert got[1].sha256 and not got[1].rejected


@pytest.mark.parametrize("resources", [[], None, [{"ARN": "arn:aws:s3:::b", "type": "AWS::S3::Bucket"}]])
def test_compiled_list_column_when_every_list_is_alike(resources):
    from pipeline.normalize import cloudtrail

    decoded = cloudtrail._decode_file(orjson.dumps({"Records": [make_cloudtrail_record(resources=resources)] * 5})).Records
    a, b = cloudtrail._build_columns(decoded), cloudtrail._build_columns_python(decoded)
    assert a["resources"].equals(b["resources"]) and a["resources"].type == b["resources"].type
    a["resources"].validate(full=True)
