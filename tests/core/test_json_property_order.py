"""Objects are written in JavaScript's property order, so TS and Python give the same bytes.

JSON.stringify prints array-index names ("0" .. "4294967294", no leading zeros) first, ascending, then
the other names as inserted. The TS comparison itself is in tests/interop; this needs no Node."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from mooncat_checkpoint import Checkpoint, Status
from mooncat_checkpoint.serialize import encode_result, js_property_order, record_text


def test_array_index_names_come_first_in_numeric_order() -> None:
    value = {"b": 1, "10": "ten", "2": "two", "a": 3, "01": "x", "-1": "y", "4294967294": "z", "4294967295": "w",
             "": "empty", "٣": "arabic digit"}
    assert list(js_property_order(value)) == [
        "2", "10", "4294967294", "b", "a", "01", "-1", "4294967295", "", "٣",
    ]
    assert encode_result(value) == (
        '{"2":"two","10":"ten","4294967294":"z","b":1,"a":3,"01":"x","-1":"y","4294967295":"w","":"empty",'
        '"٣":"arabic digit"}'
    )


def test_nested_objects_are_ordered_and_records_too() -> None:
    result = [{"z": {"3": 3, "1": 1}}, {"k": [{"9": 0, "8": 0}]}]
    assert encode_result(result) == '[{"z":{"1":1,"3":3}},{"k":[{"8":0,"9":0}]}]'
    record = Checkpoint(
        namespace="ns", key="k", status=Status.DONE, owner_run_id=None, lease_token=None, lease_until=None,
        result={"b": 1, "0": 0}, result_ref=None, error=None, attempts=1, created_at=1, updated_at=2,
        extra={"7": "extra"},
    )
    data = json.loads(record_text(record))
    assert list(data) == ["7", "namespace", "key", "status", "ownerRunId", "leaseToken", "leaseUntil", "result",
                          "resultRef", "attempts", "createdAt", "updatedAt"]
    assert list(data["result"]) == ["0", "b"]


def test_values_already_in_order_are_not_copied() -> None:
    value = {"0": [1, {"a": 2}], "x": {"y": []}}
    assert js_property_order(value) is value


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(result=_json_values, extra=st.dictionaries(st.sampled_from(["0", "12", "zeta", "é", "a\nb"]),
                                                  _json_values, max_size=3),
       status=st.sampled_from(list(Status)))
def test_record_text_is_the_indented_encoding_of_the_whole_record(
    result: object, extra: dict[str, object], status: Status
) -> None:
    # The field-by-field writer must give exactly what one indented encoding of the record gives.
    record = Checkpoint(
        namespace="ns", key="k\u2028é", status=status, owner_run_id="run \"1\"", lease_token="t",
        lease_until=5, result=result, result_ref=None, error="boom" if status is Status.FAILED else None,
        attempts=2, created_at=1, updated_at=2, extra=extra,
    )
    reference = json.dumps(js_property_order(record.to_dict()), ensure_ascii=False, indent=2)
    assert record_text(record) == reference


def test_a_record_read_from_a_file_gives_sql_stores_its_result_text() -> None:
    # File records carry no compact result text; a SQL writer handed one must encode it, never store NULL.
    from mooncat_checkpoint.backends.sqlite import record_to_row
    from mooncat_checkpoint.serialize import record_from_text, result_json_of

    record = record_from_text(
        '{"namespace":"ns","key":"k","status":"done","result":{"1":[true,null],"a":"é"},"attempts":1,'
        '"createdAt":1,"updatedAt":2}'.encode(), "k.json")
    assert result_json_of(record) == '{"1":[true,null],"a":"é"}'
    assert record_to_row("k", record)[7] == '{"1":[true,null],"a":"é"}'
