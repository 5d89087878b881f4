"""JSON encoding of results and records, in the exact forms the TypeScript package reads and writes."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from .errors import CheckpointResultSerializationError, CorruptRecordError, InvalidArgumentError
from .protocol import MAX_INLINE_RESULT_BYTES, Checkpoint, Status

# JavaScript numbers are doubles: a larger integer would come back rounded, so it is refused.
MAX_SAFE_INTEGER = 2**53

_compact = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False)
_pretty = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=2, check_circular=False)


def encode_result(result: Any) -> str | None:
    """Compact JSON text of a result (None for no result), or a clear error; nothing is written before this."""
    if result is None:
        return None
    _check_json_value(result, "result", set(), 0)
    text = _compact.encode(js_property_order(result))
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_INLINE_RESULT_BYTES:
        raise CheckpointResultSerializationError(
            f"result is {size} bytes of JSON, over the inline limit of {MAX_INLINE_RESULT_BYTES} bytes; "
            "store the artifact elsewhere and pass result_ref instead"
        )
    return text


# JavaScript orders an object's own property names: array indices ("0" .. "4294967294", written
# without leading zeros) first, ascending, then the other names as inserted. JSON.stringify prints them
# in that order, so we must too, or the same content would give other bytes than TS writes.
_MAX_ARRAY_INDEX = 2**32 - 2


def _array_index(name: str) -> int | None:
    if not (name.isascii() and name.isdigit()) or (name[0] == "0" and name != "0"):
        return None
    index = int(name)
    return index if index <= _MAX_ARRAY_INDEX else None


def js_property_order(value: Any) -> Any:
    """`value` with every dict's keys in JavaScript's property order; unchanged parts are not copied."""
    if isinstance(value, dict):
        items = [(name, js_property_order(item)) for name, item in value.items()]
        indexed = sorted(
            ((index, name, item) for name, item in items if (index := _array_index(name)) is not None),
            key=lambda entry: entry[0],
        )
        if indexed:
            rest = [(name, item) for name, item in items if _array_index(name) is None]
            items = [(name, item) for _, name, item in indexed] + rest
        if [name for name, _ in items] == list(value) and all(
            new is old for (_, new), old in zip(items, value.values(), strict=True)
        ):
            return value
        return dict(items)
    if isinstance(value, (list, tuple)):
        converted = [js_property_order(item) for item in value]
        return value if all(new is old for new, old in zip(converted, value, strict=True)) else converted
    return value


# Deeper results are refused: reading one back would exhaust Python's recursion limit.
MAX_RESULT_DEPTH = 256


def _check_json_value(value: Any, path: str, seen: set[int], depth: int) -> None:
    if value is None or value is True or value is False or (isinstance(value, str) and _check_str(value, path)):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CheckpointResultSerializationError(
                f"{path} is the integer {value}, beyond 2**53: JavaScript would round it; store it as a string"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CheckpointResultSerializationError(f"{path} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, (dict, list, tuple)):
        if depth >= MAX_RESULT_DEPTH:
            raise CheckpointResultSerializationError(
                f"result is nested more than {MAX_RESULT_DEPTH} levels deep (at {path[:200]}...); flatten it "
                "or store it elsewhere and pass result_ref"
            )
        if id(value) in seen:
            raise CheckpointResultSerializationError(f"{path} contains itself (a reference cycle)")
        seen.add(id(value))
        if isinstance(value, dict):
            for name, item in value.items():
                if not isinstance(name, str):
                    raise CheckpointResultSerializationError(
                        f"{path} has the key {name!r} of type {type(name).__name__}; JSON object keys must be "
                        "strings (converting them could merge two keys)"
                    )
                _check_str(name, f"{path} key {name!r}")
                _check_json_value(item, f"{path}[{name!r}]", seen, depth + 1)
        else:
            for index, item in enumerate(value):
                _check_json_value(item, f"{path}[{index}]", seen, depth + 1)
        seen.discard(id(value))
        return
    raise CheckpointResultSerializationError(
        f"{path} is a {type(value).__name__}, which is not JSON (use dict, list, str, int, float, bool, None)"
    )


def _check_str(text: str, path: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CheckpointResultSerializationError(
            f"{path} has a lone surrogate at index {exc.start}, which is not valid UTF-8"
        ) from None
    return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JavaScript's JSON.parse rejects it)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond the range of a double (JavaScript reads it as Infinity)")
    return value


# Python's parser accepts NaN and Infinity, and reads numbers past the double range (1e400) as infinity;
# stored text holding them is unreadable for TypeScript or could not be written back, so every stored JSON
# text is read with a decoder that refuses them.
_strict_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
# The decoder's C scanner is set per instance and not declared in the type stubs.
_scan_value: Callable[[str, int], tuple[Any, int]] = _strict_decoder.scan_once  # type: ignore[attr-defined]


def loads_stored(text: str) -> Any:
    """`json.loads` of stored JSON text, through the C scanner directly when the text is exactly one value:
    that skips the per-call overhead which dominates for the small results a rerun reads by the thousand.
    Anything else (surrounding whitespace, trailing text, invalid JSON) is left to the full decoder to accept
    or reject, so the answer and the error are the same."""
    try:
        value, end = _scan_value(text, 0)
    except (StopIteration, ValueError):
        return _strict_decoder.decode(text)
    if end != len(text):
        return _strict_decoder.decode(text)
    return value


def decode_result(text: str | None, location: str) -> Any:
    if text is None:
        return None
    try:
        return _strict_decoder.decode(text)
    except ValueError as exc:
        raise CorruptRecordError(location, f"result is not JSON ({exc})") from None
    except RecursionError:
        raise CorruptRecordError(location, "result nested too deeply to read") from None


def check_optional_str(value: object, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a string or None, got {type(value).__name__}")
    return value


# ---- whole records (file backend, export/import) ----

_KNOWN = {
    "namespace", "key", "status", "ownerRunId", "leaseToken", "leaseUntil", "result", "resultRef",
    "error", "attempts", "createdAt", "updatedAt",
}


def record_text(record: Checkpoint) -> str:
    """The file form: two-space indent, TypeScript key order, non-ASCII as is, no trailing newline.

    Written field by field: the fields are flat, so only the result and unknown fields need the (slow,
    pure-Python) indenting encoder. A value's own text indented by one level is its text with every line
    break followed by two more spaces: JSON text has no raw line breaks inside strings."""
    fields = record.to_dict()
    if record.extra:  # an unknown field could be named like an array index, which JavaScript puts first
        fields = js_property_order(fields)
    lines = []
    for name, value in fields.items():
        text = _scalar_json(value)
        if text is None:
            text = _pretty.encode(js_property_order(value)).replace("\n", "\n  ")
        lines.append(f"  {_encode_str(name)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}"


_encode_str: Callable[[str], str] = json.encoder.encode_basestring


def _scalar_json(value: Any) -> str | None:
    """JSON text of the flat values records are made of, as the encoder writes them; None for others."""
    if value is None:
        return "null"
    kind = value.__class__
    if kind is str:
        return _encode_str(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    return None


def result_json_of(record: Checkpoint) -> str | None:
    """The compact JSON text of a record's result, for stores that keep it as a column: the text read
    with the record where there is one, else encoded now (records read from files carry none)."""
    if record.result_json is not None or record.result is None:
        return record.result_json
    return encode_result(record.result)


def record_from_dict(data: Any, location: str) -> Checkpoint:
    """Validate a decoded record; anything off is a CorruptRecordError naming the location."""
    if not isinstance(data, dict):
        raise CorruptRecordError(location, f"expected a JSON object, found {type(data).__name__}")
    raw_status = data.get("status")
    status = _STATUSES.get(raw_status) if isinstance(raw_status, str) else None
    if status is None:
        raise CorruptRecordError(location, f"unknown status {raw_status!r}")
    namespace = data.get("namespace")
    key = data.get("key")
    if not isinstance(namespace, str) or not isinstance(key, str):
        raise CorruptRecordError(location, "namespace or key missing or not a string")
    lease_until = _opt_int(data, "leaseUntil", location)
    lease_token = _opt_str(data, "leaseToken", location)
    if status is Status.CLAIMED and lease_token is None:
        raise CorruptRecordError(location, "claimed record without leaseToken")
    record = Checkpoint.stored(
        namespace, key, status, _opt_str(data, "ownerRunId", location), lease_token, lease_until,
        data.get("result"), _opt_str(data, "resultRef", location), _opt_str(data, "error", location),
        _opt_int(data, "attempts", location) or 0, _opt_int(data, "createdAt", location) or 0,
        _opt_int(data, "updatedAt", location) or 0, None,
    )
    if len(data) > len(_KNOWN) or not _KNOWN.issuperset(data):
        record.extra.update((name, value) for name, value in data.items() if name not in _KNOWN)
    return record


_STATUSES = {status.value: status for status in Status}


# One decoder for every record: `json.loads` with an option builds a new one per call.
_record_decoder = _strict_decoder


def record_from_text(text: str | bytes, location: str) -> Checkpoint:
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8-sig")  # as json.loads reads bytes
        # Python's parser accepts NaN and Infinity; such a file is unreadable for TypeScript and
        # could not be written back, so it is reported like any other unparsable record.
        data = _record_decoder.decode(text)
    except ValueError as exc:  # UnicodeDecodeError included
        raise CorruptRecordError(location, f"not valid JSON ({exc})") from None
    except RecursionError:
        raise CorruptRecordError(location, "nested too deeply to read") from None
    return record_from_dict(data, location)


def _opt_str(data: dict[str, Any], name: str, location: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise CorruptRecordError(location, f"{name} is not a string")
    return value


def _opt_int(data: dict[str, Any], name: str, location: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if value.__class__ is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    # A whole float is the same JavaScript number; anything else would be changed by rewriting it as an
    # integer, or (beyond 2**53) is a number no SQL store and no JavaScript reader keeps exactly.
    if value.__class__ is float and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    raise CorruptRecordError(location, f"{name} is {_short(value)}, not a whole number of at most 2**53")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def row_problem(
    key: object, status: object, owner: object, token: object, until: object, result: object,
    ref: object, error: object, attempts: object, created: object, updated: object,
) -> str | None:
    """What is wrong with a SQL row's columns, or None: SQLite keeps any type in any column, and a text
    lease end or a number as key would otherwise fail far from the row, or not at all. The common case is
    one chain of cheap tests; the message is worked out only for a bad row."""
    limit = MAX_SAFE_INTEGER
    if (
        key.__class__ is str and attempts.__class__ is int and created.__class__ is int
        and updated.__class__ is int and (until is None or until.__class__ is int)
        and (owner is None or owner.__class__ is str) and (token is None or token.__class__ is str)
        and (result is None or result.__class__ is str) and (ref is None or ref.__class__ is str)
        and (error is None or error.__class__ is str)
        and -limit <= attempts <= limit and -limit <= created <= limit
        and -limit <= updated <= limit and (until is None or -limit <= until <= limit)
        and (token is not None or status != "claimed")
    ):
        return None
    for name, value in (("key", key), ("owner_run_id", owner), ("lease_token", token), ("result", result),
                        ("result_ref", ref), ("error", error)):
        if (value is not None or name == "key") and value.__class__ is not str:
            return f"{name} is {_short(value)}, not text"
    for name, value in (("lease_until", until), ("attempts", attempts), ("created_at", created),
                        ("updated_at", updated)):
        if (value is not None or name != "lease_until") and not (
            value.__class__ is int and -limit <= value <= limit
        ):
            return f"{name} is {_short(value)}, not a whole number of at most 2**53"
    return "claimed record without lease_token"
