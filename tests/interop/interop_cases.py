"""Inputs shared by the interop tests: keys that stress the storage segment, results without floats."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mooncat_checkpoint import storage_segment

NS = "interop"

# Every kind of key: kept as is, and hashed for each reason TS hashes (unsafe characters, length,
# "." and "..", a trailing newline that a prefix match would let through).
KEYS: list[str] = [
    "plain-key_1.txt",
    "with/slash",
    "with space",
    "ünïcødé",
    "日本語のキー",
    "emoji-😀",
    "k" * 128,
    "k" * 129,
    "é" * 200,
    "ends-with-newline\n",
    ".",
    "..",
    "...",
    "",
    "back\\slash",
    "tab\tkey",
    "C:/windows/path",
    "../../escape",
    "sha256-0123456789abcdef0123456789abcdef",
]

# Results as JSON values without floats (floats print differently in the two languages).
RESULTS: list[Any] = [
    {"n": 1, "s": "é", "nested": {"list": [1, "2", None, True, False], "empty": {}, "none": []}},
    "just a string with \"quotes\", \\ and /",
    0,
    -42,
    2**53,
    -(2**53),
    [],
    {},
    True,
    "\u2028\u2029 \x7f \x00\x01\x1f \b\f\n\r\t",
    {"日本": "語", "emoji": "😀", "combining": "e\u0301"},
    # JavaScript prints integer-like property names first, in numeric order.
    {"b": 1, "10": "ten", "2": "two", "a": 3, "01": "not an index", "-1": "neither", "4294967294": "last index",
     "4294967295": "not an index either"},
    [{"z": 1, "y": {"3": 3, "1": 1}}, [[]], ""],
]


def record_path(file_url: str, namespace: str, key: str) -> Path:
    """Where both languages keep the record of (namespace, key) in a file store."""
    return Path(file_url.removeprefix("file://")) / namespace / (storage_segment(key) + ".json")


def wait_past(epoch_ms: int) -> None:
    """Let the wall clock pass a lease end; only ordering matters, never how long it took."""
    while time.time() * 1000 <= epoch_ms:
        time.sleep(0.002)
