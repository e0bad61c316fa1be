"""Payload codecs: what a handler receives is what the producer passed, and a wrong
payload fails in the producer with the path of the bad field."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, TypedDict

import pytest

from gorelay_kombu.compat.relay_errors import PayloadError
from gorelay_kombu.compat.relay_payloads import codec_for, payload_type_of


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Line:
    sku: str
    qty: int = 1
    price: Decimal = Decimal("0")


@dataclass
class Order:
    id: uuid.UUID
    lines: list[Line]
    placed_at: dt.datetime
    note: str | None = None
    color: Color = Color.RED
    tags: set[str] = field(default_factory=set)
    kind: Literal["web", "shop"] = "web"
    extra: dict[str, Any] = field(default_factory=dict)


class Welcome(TypedDict):
    to: str
    user_id: int


def roundtrip(tp: Any, value: Any) -> Any:
    codec = codec_for(tp)
    import json

    return codec.decode(json.loads(json.dumps(codec.encode(value))))


def test_nested_dataclass_round_trip() -> None:
    order = Order(uuid.uuid4(), [Line("a", 2, Decimal("9.99")), Line("b")],
                  dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc), tags={"x", "y"},
                  extra={"n": [1, 2.5, None, True]})
    assert roundtrip(Order, order) == order


def test_typeddict_dict_and_json_values() -> None:
    assert roundtrip(Welcome, {"to": "a@b.c", "user_id": 4}) == {"to": "a@b.c", "user_id": 4}
    assert roundtrip(dict, {"a": [1, {"b": None}]}) == {"a": [1, {"b": None}]}
    assert roundtrip(Any, [1, "two"]) == [1, "two"]
    assert roundtrip(list[int], [1, 2]) == [1, 2]


@pytest.mark.parametrize(("tp", "value", "message"), [
    (Order, {"id": "x"}, "payload must be an instance of Order"),
    (Order, Order("nope", [], dt.datetime.now()), "payload.id must be a UUID"),  # type: ignore[arg-type]
    (Order, Order(uuid.uuid4(), [Line("a", "2")], dt.datetime.now()),  # type: ignore[arg-type]
     "payload.lines[0].qty must be an int, got str '2'"),
    (Order, Order(uuid.uuid4(), [Line("a", True)], dt.datetime.now()),  # type: ignore[arg-type]
     "payload.lines[0].qty must be an int, got bool"),
    (Order, Order(uuid.uuid4(), [], dt.datetime.now(), kind="mail"),  # type: ignore[arg-type]
     "payload.kind must be one of ['web', 'shop']"),
    (Order, Order(uuid.uuid4(), [], dt.datetime.now(), extra={"f": object()}),
     "payload.extra['f'] cannot be encoded as JSON"),
    (Welcome, {"to": "a"}, "payload is missing key(s) ['user_id'] of Welcome"),
    (Welcome, {"to": "a", "user_id": 1, "x": 0}, "has key(s) ['x'] that Welcome does not"),
    (dict, ["not", "a", "dict"], "payload must be a dict"),
    (dict, {1: "int key"}, "payload key must be a str"),
    (float, float("nan"), "payload must be a finite float"),
    (Any, {"when": dt.datetime.now()}, "cannot be encoded as JSON"),
])
def test_wrong_payloads_name_the_field(tp: Any, value: Any, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        codec_for(tp).encode(value)
    assert message in str(info.value)


def test_unsupported_types_are_refused_when_compiled() -> None:
    class Plain:
        pass

    with pytest.raises(PayloadError, match="not supported"):
        codec_for(Plain)
    with pytest.raises(PayloadError, match="dict\\[str"):
        codec_for(dict[int, str])


def test_payload_type_comes_from_the_first_parameter() -> None:
    def handler(p: Order, *, flag: bool = False) -> None: ...

    def untyped(p): ...  # noqa: ANN001

    def nothing() -> None: ...

    assert payload_type_of(handler) is Order
    assert payload_type_of(untyped) is Any
    with pytest.raises(PayloadError, match="takes no payload"):
        payload_type_of(nothing)


def test_pydantic_models() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Signup(pydantic.BaseModel):
        email: str
        at: dt.datetime
        plan: Literal["free", "pro"] = "free"

    value = Signup(email="a@b.c", at=dt.datetime(2024, 1, 1))
    assert roundtrip(Signup, value) == value
    with pytest.raises(PayloadError, match="model_validate"):
        codec_for(Signup).encode({"email": "a@b.c"})
    broken = Signup.model_construct(email=3, at="never")
    with pytest.raises(PayloadError, match="fails validation"):
        codec_for(Signup).encode(broken)
    with pytest.raises(PayloadError, match="fails validation"):
        codec_for(Signup).decode({"email": "x"})
