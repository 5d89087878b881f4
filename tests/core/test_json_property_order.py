"""Objects are written in JavaScript's property order, so TS and Python give the same bytes.

JSON.stringify prints array-index names ("0" .. "4294967294", no leading zeros) first, ascending, then
the other names as inserted. The TS comparison itself is in tests/interop; this needs no Node."""

from __future__ import annotations

import json

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
