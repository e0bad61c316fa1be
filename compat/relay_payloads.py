"""Payload codecs: a registered payload type <-> the JSON a task message carries.

``codec_for(tp)`` compiles a :class:`Codec` once, at ``register`` time (an
annotation it cannot encode is refused there).  ``encode`` runs in the
caller at ``enqueue`` time and checks the value against the type, field by
field, so a payload of the wrong type fails in the caller with the path of
the bad field, never later in a worker; ``decode`` runs in the worker and
rebuilds the registered type.

Supported types: dataclasses (nested too), ``TypedDict``, pydantic models
(when pydantic is installed: ``model_dump(mode="json")`` / ``model_validate``),
``dict`` / ``Mapping`` with ``str`` keys, ``list`` / ``tuple`` / ``set`` /
``Sequence``, ``Optional`` / unions, ``Literal``, ``Enum`` (by value),
``str`` / ``int`` / ``float`` / ``bool`` / ``None``, and ``datetime`` /
``date`` / ``time`` (ISO 8601), ``UUID``, ``Decimal`` (as strings).  ``Any``
(or no annotation) accepts any JSON value.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import json
import math
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any

from .relay_errors import PayloadError

Encode = Callable[[Any, str], Any]
Decode = Callable[[Any, str], Any]

_JSON_SCALARS = (str, int, float, bool, type(None))


class Codec:
    """Encodes values of one payload type to JSON-ready data and back."""

    def __init__(self, tp: Any, encode: Encode, decode: Decode) -> None:
        self.type = tp
        self._encode, self._decode = encode, decode
        self.name = _type_name(tp)

    def encode(self, value: Any) -> Any:
        """JSON-ready data for ``value``; :class:`PayloadError` if it is not a ``self.type``."""
        data = self._encode(value, "payload")
        try:
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as exc:  # pragma: no cover - the converters check first
            raise PayloadError(f"payload cannot be encoded as JSON: {exc}") from exc
        return data

    def decode(self, data: Any) -> Any:
        """The ``self.type`` value encoded as ``data``."""
        return self._decode(data, "payload")


def payload_type_of(handler: Callable[..., Any]) -> Any:
    """The annotation of ``handler``'s first parameter (``Any`` when there is none)."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return Any
    params = [p for p in signature.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not params:
        raise PayloadError(
            f"The handler {_callable_name(handler)} takes no payload argument; a Relay handler "
            "is called with one argument, the payload: def handler(payload: MyPayload): ..."
        )
    first = params[0]
    if first.annotation is inspect.Parameter.empty:
        return Any
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # noqa: BLE001 - unresolvable forward reference: use the raw one
        hints = {}
    return hints.get(first.name, first.annotation)


def codec_for(tp: Any) -> Codec:
    """Compile the codec of ``tp``; :class:`PayloadError` if it cannot be encoded."""
    encode, decode = _Compiler().compile(tp)
    return Codec(tp, encode, decode)


# -- the compiler ----------------------------------------------------------------
def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__qualname__
    return str(tp).replace("typing.", "")


def _callable_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _wrong(path: str, expected: str, value: Any) -> PayloadError:
    return PayloadError(f"{path} must be {expected}, got {_describe(value)}")


def _pydantic_base() -> type | None:
    try:
        from pydantic import BaseModel
    except ImportError:
        return None
    return BaseModel


class _Compiler:
    def __init__(self) -> None:
        self._memo: dict[Any, tuple[Encode, Decode]] = {}

    def compile(self, tp: Any) -> tuple[Encode, Decode]:
        key = tp if _hashable(tp) else id(tp)
        if key in self._memo:
            return self._memo[key]
        # A placeholder first: a recursive dataclass refers back to itself.
        cell: list[tuple[Encode, Decode]] = []
        self._memo[key] = (lambda v, p: cell[0][0](v, p), lambda d, p: cell[0][1](d, p))
        cell.append(self._build(tp))
        self._memo[key] = cell[0]
        return cell[0]

    def _build(self, tp: Any) -> tuple[Encode, Decode]:  # noqa: C901 - one dispatch table
        if tp is Any or tp is object or tp is inspect.Parameter.empty:
            return _any, _identity
        if tp is None or tp is type(None):
            return _exact_none, _exact_none
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            return self.compile(typing.get_args(tp)[0])
        if origin is typing.Union or (hasattr(types, "UnionType")
                                      and isinstance(tp, types.UnionType)):
            return self._union(tp)
        if origin is typing.Literal:
            return self._literal(tp)
        if origin in (list, set, frozenset, tuple, cabc.Sequence, cabc.MutableSequence,
                      cabc.Set, cabc.MutableSet, cabc.Iterable, cabc.Collection):
            return self._sequence(tp, origin)
        if origin in (dict, cabc.Mapping, cabc.MutableMapping):
            return self._mapping(tp)
        if isinstance(tp, type):
            return self._class(tp)
        raise PayloadError(
            f"The payload type {_type_name(tp)} is not supported. Use a dataclass, a "
            "TypedDict, a pydantic model, a dict or a JSON type (str, int, float, bool, "
            "list, dict)."
        )

    def _class(self, tp: type) -> tuple[Encode, Decode]:  # noqa: C901
        base_model = _pydantic_base()
        if base_model is not None and issubclass(tp, base_model):
            return _pydantic(tp)
        if dataclasses.is_dataclass(tp):
            return self._dataclass(tp)
        if typing.is_typeddict(tp):
            return self._typeddict(tp)
        if issubclass(tp, enum.Enum):
            return _enum(tp)
        if tp is bool:
            return _scalar(bool, "a bool"), _scalar(bool, "a bool")
        if tp is int:
            return _scalar(int, "an int"), _scalar(int, "an int")
        if tp is float:
            return _float, _float
        if tp is str:
            return _scalar(str, "a str"), _scalar(str, "a str")
        for special, (enc, dec) in _TEXT_TYPES.items():
            if tp is special:
                return enc, dec
        if tp in (list, tuple, set, frozenset):
            return self._sequence(tp, tp)
        if tp in (dict,) or tp is cabc.Mapping:
            return self._mapping(tp)
        raise PayloadError(
            f"The payload type {tp.__qualname__} is not supported: it is not a dataclass, "
            "TypedDict, pydantic model or JSON type. Make it a @dataclass, or register the "
            "topic with payload type dict and convert it yourself."
        )

    def _dataclass(self, tp: type) -> tuple[Encode, Decode]:
        hints = _hints(tp)
        fields = [f for f in dataclasses.fields(tp)]
        compiled = {f.name: self.compile(hints.get(f.name, Any)) for f in fields}
        init_names = {f.name for f in fields if f.init}
        name = tp.__qualname__

        def encode(value: Any, path: str) -> Any:
            if not isinstance(value, tp):
                raise _wrong(path, f"an instance of {name}", value)
            return {f: enc(getattr(value, f), f"{path}.{f}")
                    for f, (enc, _dec) in compiled.items()}

        def decode(data: Any, path: str) -> Any:
            if not isinstance(data, dict):
                raise _wrong(path, f"an object for {name}", data)
            kwargs = {f: compiled[f][1](data[f], f"{path}.{f}")
                      for f in init_names if f in data}
            return tp(**kwargs)

        return encode, decode

    def _typeddict(self, tp: type) -> tuple[Encode, Decode]:
        hints = _hints(tp)
        compiled = {k: self.compile(v) for k, v in hints.items()}
        required = frozenset(getattr(tp, "__required_keys__", hints.keys()))
        name = tp.__qualname__

        def convert(value: Any, path: str, which: int) -> Any:
            if not isinstance(value, cabc.Mapping):
                raise _wrong(path, f"a mapping for {name}", value)
            missing = sorted(required - set(value))
            if missing:
                raise PayloadError(f"{path} is missing key(s) {missing} of {name}")
            unknown = sorted(str(k) for k in set(value) - set(compiled))
            if unknown:
                raise PayloadError(f"{path} has key(s) {unknown} that {name} does not declare")
            return {k: compiled[k][which](v, f"{path}[{k!r}]") for k, v in value.items()}

        return (lambda v, p: convert(v, p, 0)), (lambda d, p: convert(d, p, 1))

    def _union(self, tp: Any) -> tuple[Encode, Decode]:
        members = [self.compile(arg) for arg in typing.get_args(tp)]
        args = typing.get_args(tp)
        # None first: Optional[X] with None must not be tried as an X.
        order = sorted(range(len(args)), key=lambda i: args[i] is not type(None))
        expected = " or ".join(_type_name(a) for a in args)

        def pick(value: Any, path: str, which: int) -> Any:
            for i in order:
                try:
                    return members[i][which](value, path)
                except PayloadError:
                    continue
            raise _wrong(path, expected, value)

        return (lambda v, p: pick(v, p, 0)), (lambda d, p: pick(d, p, 1))

    def _literal(self, tp: Any) -> tuple[Encode, Decode]:
        allowed = typing.get_args(tp)
        for item in allowed:
            if not isinstance(item, _JSON_SCALARS):
                raise PayloadError(f"Literal values must be JSON scalars; {item!r} is not")

        def check(value: Any, path: str) -> Any:
            if not any(value == a and type(value) is type(a) for a in allowed):
                raise _wrong(path, f"one of {list(allowed)!r}", value)
            return value

        return check, check

    def _sequence(self, tp: Any, origin: Any) -> tuple[Encode, Decode]:
        args = typing.get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return self._fixed_tuple(args)
        item_enc, item_dec = self.compile(args[0] if args else Any)
        build: Callable[[list[Any]], Any] = {
            tuple: tuple, set: set, frozenset: frozenset, cabc.Set: frozenset,
            cabc.MutableSet: set,
        }.get(origin, list)

        def encode(value: Any, path: str) -> Any:
            if isinstance(value, (str, bytes, bytearray, cabc.Mapping)) or \
                    not isinstance(value, (list, tuple, set, frozenset, cabc.Sequence)):
                raise _wrong(path, f"a {_type_name(tp)}", value)
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            return [item_enc(item, f"{path}[{i}]") for i, item in enumerate(items)]

        def decode(data: Any, path: str) -> Any:
            if not isinstance(data, list):
                raise _wrong(path, "a JSON array", data)
            return build([item_dec(item, f"{path}[{i}]") for i, item in enumerate(data)])

        return encode, decode

    def _fixed_tuple(self, args: tuple[Any, ...]) -> tuple[Encode, Decode]:
        members = [self.compile(a) for a in args]

        def convert(value: Any, path: str, which: int) -> Any:
            if not isinstance(value, (list, tuple)) or len(value) != len(members):
                raise _wrong(path, f"a tuple of {len(members)}", value)
            pairs = enumerate(zip(members, value, strict=True))
            out = [m[which](v, f"{path}[{i}]") for i, (m, v) in pairs]
            return out if which == 0 else tuple(out)

        return (lambda v, p: convert(v, p, 0)), (lambda d, p: convert(d, p, 1))

    def _mapping(self, tp: Any) -> tuple[Encode, Decode]:
        args = typing.get_args(tp)
        if args and args[0] not in (str, Any):
            raise PayloadError(
                f"{_type_name(tp)}: JSON object keys are strings; use dict[str, ...]"
            )
        value_enc, value_dec = self.compile(args[1] if len(args) == 2 else Any)

        def convert(value: Any, path: str, which: int) -> Any:
            if not isinstance(value, cabc.Mapping):
                raise _wrong(path, "a dict", value)
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise _wrong(f"{path} key", "a str (JSON object keys are strings)", k)
                out[k] = (value_enc if which == 0 else value_dec)(v, f"{path}[{k!r}]")
            return out

        return (lambda v, p: convert(v, p, 0)), (lambda d, p: convert(d, p, 1))


def _hashable(tp: Any) -> bool:
    try:
        hash(tp)
    except TypeError:
        return False
    return True


def _hints(tp: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(tp)
    except Exception as exc:  # noqa: BLE001 - NameError from a forward reference, mostly
        raise PayloadError(
            f"The annotations of {tp.__qualname__} cannot be resolved ({exc}); define the "
            "types it refers to at module level before registering the topic."
        ) from exc


# -- leaf converters ---------------------------------------------------------------
def _identity(data: Any, path: str) -> Any:
    return data


def _any(value: Any, path: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(
            f"{path} cannot be encoded as JSON ({exc}); pass JSON types (str, int, float, "
            "bool, None, list, dict) or register the topic with a dataclass payload type."
        ) from exc
    return value


def _exact_none(value: Any, path: str) -> Any:
    if value is not None:
        raise _wrong(path, "None", value)
    return None


def _scalar(kind: type, expected: str) -> Encode:
    def check(value: Any, path: str) -> Any:
        # bool is an int in Python but not in a payload: True is no count.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise _wrong(path, expected, value)
        return value

    return check


def _float(value: Any, path: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(path, "a float", value)
    if not math.isfinite(value):
        raise _wrong(path, "a finite float (JSON has no NaN or infinity)", value)
    return float(value)


def _enum(tp: type[enum.Enum]) -> tuple[Encode, Decode]:
    def encode(value: Any, path: str) -> Any:
        if not isinstance(value, tp):
            raise _wrong(path, f"a member of {tp.__qualname__}", value)
        return _any(value.value, path)

    def decode(data: Any, path: str) -> Any:
        try:
            return tp(data)
        except ValueError as exc:
            raise _wrong(path, f"a value of {tp.__qualname__}", data) from exc

    return encode, decode


def _text(kind: type, parse: Callable[[str], Any], render: Callable[[Any], str],
          expected: str) -> tuple[Encode, Decode]:
    def encode(value: Any, path: str) -> Any:
        # datetime is a date: a date field must not silently take a datetime
        if not isinstance(value, kind) or (kind is dt.date and isinstance(value, dt.datetime)):
            raise _wrong(path, expected, value)
        return render(value)

    def decode(data: Any, path: str) -> Any:
        if not isinstance(data, str):
            raise _wrong(path, f"{expected} as text", data)
        try:
            return parse(data)
        except (ValueError, decimal.InvalidOperation) as exc:
            raise _wrong(path, expected, data) from exc

    return encode, decode


def _decimal_text(value: decimal.Decimal) -> str:
    if not value.is_finite():
        raise PayloadError(f"Decimal {value} is not finite")
    return str(value)


_TEXT_TYPES: dict[type, tuple[Encode, Decode]] = {
    dt.datetime: _text(dt.datetime, dt.datetime.fromisoformat, dt.datetime.isoformat,
                       "a datetime"),
    dt.date: _text(dt.date, dt.date.fromisoformat, dt.date.isoformat, "a date"),
    dt.time: _text(dt.time, dt.time.fromisoformat, dt.time.isoformat, "a time"),
    uuid.UUID: _text(uuid.UUID, uuid.UUID, str, "a UUID"),
    decimal.Decimal: _text(decimal.Decimal, decimal.Decimal, _decimal_text, "a Decimal"),
}


def _pydantic(tp: type) -> tuple[Encode, Decode]:
    from pydantic import ValidationError

    def encode(value: Any, path: str) -> Any:
        if not isinstance(value, tp):
            raise _wrong(path, f"a {tp.__qualname__} (build it with {tp.__qualname__}(...) or "
                         f"{tp.__qualname__}.model_validate(data))", value)
        try:
            value = tp.model_validate(value.model_dump(warnings=False))  # type: ignore[attr-defined]
        except ValidationError as exc:  # built with model_construct, or mutated
            raise PayloadError(f"{path} fails validation as {tp.__qualname__}: {exc}") from exc
        return value.model_dump(mode="json")

    def decode(data: Any, path: str) -> Any:
        try:
            return tp.model_validate(data)  # type: ignore[attr-defined]
        except ValidationError as exc:
            raise PayloadError(f"{path} fails validation as {tp.__qualname__}: {exc}") from exc

    return encode, decode


__all__ = ["Codec", "codec_for", "payload_type_of"]
