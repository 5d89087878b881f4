"""Namespaces, storage segments and key templates."""

from __future__ import annotations

import enum
import hashlib
import inspect
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InvalidArgumentError

_NAMESPACE = re.compile(r"[A-Za-z0-9_-]+")
_SAFE_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_SAFE_KEY_MAX_LEN = 128
# Segments of keys that are not safe file names; a safe key may spell one too, so only these can collide.
HASHED_PREFIX = "sha256-"

KeySpec = str | Callable[[dict[str, Any]], str]


# The file store keeps a namespace as a folder name, which filesystems cap at 255 bytes. Other stores,
# like the TypeScript package, take longer ones.
MAX_FOLDER_NAMESPACE_LENGTH = 255


def check_folder_namespace(namespace: str) -> str:
    if len(namespace) > MAX_FOLDER_NAMESPACE_LENGTH:
        raise InvalidArgumentError(
            f"namespace is {len(namespace)} characters long; the file store keeps namespaces as folder names "
            f"of at most {MAX_FOLDER_NAMESPACE_LENGTH} (use a shorter one, or a SQLite or PostgreSQL store)"
        )
    return namespace


# Namespaces that passed the check; a process uses few, and every call names one.
_CHECKED_NAMESPACES: set[str] = set()
_CHECKED_NAMESPACES_MAX = 1024


def check_namespace(namespace: object) -> str:
    if namespace.__class__ is str and namespace in _CHECKED_NAMESPACES:
        return namespace
    if not isinstance(namespace, str) or not namespace:
        raise InvalidArgumentError(f"namespace must be a non-empty string, got {namespace!r}")
    # fullmatch: a trailing newline must not slip through as `$` would let it.
    if not _NAMESPACE.fullmatch(namespace):
        raise InvalidArgumentError(
            f"namespace {namespace!r} may contain only letters, digits, '_' and '-'"
        )
    if namespace.__class__ is str and len(_CHECKED_NAMESPACES) < _CHECKED_NAMESPACES_MAX:
        _CHECKED_NAMESPACES.add(namespace)
    return namespace


def check_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidArgumentError(f"key must be a string, got {type(key).__name__}")
    if key.isascii():  # ASCII always encodes; only other text can hold a lone surrogate
        return key
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"key {key!r} cannot be encoded as UTF-8 (lone surrogate at index {exc.start})"
        ) from None
    return key


def storage_segment(key: str) -> str:
    """The file name stem / SQLite storage_key of a key; the same string TypeScript computes."""
    if len(key) <= _SAFE_KEY_MAX_LEN and key not in (".", "..") and _SAFE_KEY.fullmatch(key):
        return key
    return HASHED_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


_PLAIN_TYPES = (str, int, float, bool)


def render_key(spec: KeySpec, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """Build a key from a template over a call's bound arguments, or from a callable receiving them.

    A template field that is missing, or whose value is not a plain value, is an error: a key must
    never silently become shorter or embed an object's repr, which differs between processes.
    """
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidArgumentError(f"cannot bind arguments of {getattr(func, '__name__', func)!r}: {exc}") from None
    bound.apply_defaults()
    values = dict(bound.arguments)
    if callable(spec):
        key = spec(values)
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"key callable must return a non-empty string, got {key!r}")
        return check_key(key)
    if not isinstance(spec, str) or not spec:
        raise InvalidArgumentError(f"key must be a non-empty template string or a callable, got {spec!r}")
    return check_key(format_template(spec, values))


def template_fields(template: str) -> list[str]:
    """The field names of a key template; a template that cannot be formatted is an error here, so that
    a decorator can refuse it when it is applied instead of at the first call."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # an unclosed '{' or a lone '}'
        raise InvalidArgumentError(
            f"key template {template!r} is malformed ({exc}); write a literal brace as '{{{{' or '}}}}'"
        ) from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name == "" or not name.isidentifier():
            raise InvalidArgumentError(
                f"key template {template!r} has field {{{name}}}: use named fields such as {{day}}"
            )
        if conversion not in (None, "s", "r", "a"):
            raise InvalidArgumentError(
                f"key template {template!r} has field {{{name}!{conversion}}}: the conversion must be !s, !r or !a"
            )
        if spec and ("{" in spec or "}" in spec):
            # A nested field takes its format from another argument: the key's shape would change per call.
            raise InvalidArgumentError(
                f"key template {template!r} has a field inside the format of {{{name}}}; "
                "write the format out, e.g. {n:05d}"
            )
        names.append(name)
    return names


def check_key_spec(spec: object, func: Callable[..., Any] | None = None) -> None:
    """Refuse a key spec that can never give a key, when it is declared rather than at the first call.

    With `func`, a template field that names none of its parameters is refused too (unless the function
    takes **kwargs); field values are still checked per call."""
    if callable(spec):
        return
    if not isinstance(spec, str) or not spec:
        raise InvalidArgumentError(f"key must be a non-empty template string or a callable, got {spec!r}")
    fields = template_fields(spec)
    if func is None:
        return
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):  # a builtin without a signature: left to the call
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    usable = [n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = [name for name in fields if name not in usable]
    if unknown:
        raise InvalidArgumentError(
            f"key template {spec!r} uses {{{unknown[0]}}}, which is not a parameter of "
            f"{getattr(func, '__name__', func)!r} (parameters: {', '.join(usable) or 'none'})"
        )


def format_template(template: str, values: Mapping[str, Any]) -> str:
    plain: dict[str, Any] = {}
    for name in template_fields(template):
        if name not in values:
            raise InvalidArgumentError(
                f"key template {template!r} uses {{{name}}}, which is not an argument "
                f"(arguments: {', '.join(values) or 'none'})"
            )
        plain[name] = plain_value(name, values[name])
    try:
        return template.format_map(plain)
    except (ValueError, KeyError, IndexError) as exc:
        raise InvalidArgumentError(f"key template {template!r} cannot be formatted: {exc}") from None


def plain_value(name: str, value: Any) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, _PLAIN_TYPES):
        return value
    raise InvalidArgumentError(
        f"key field {{{name}}} is a {type(value).__name__}, not a plain str/int/float/bool; "
        "pass a key callable to build a stable key from it"
    )
