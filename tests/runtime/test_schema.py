"""Message contracts: every stream message round-trips (property tests) and garbage is rejected with a
clear one-line SchemaError, never another exception."""

from __future__ import annotations

import types
import typing
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from emostream import schema
from emostream.schema import (
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    EmotionEvent,
    SchemaError,
    Transcript,
    decode,
    decode_checked,
    encode,
    event_id,
    to_json,
)

FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)
TEXT = st.text(max_size=20)


def strategy(tp: Any) -> st.SearchStrategy[Any]:
    """A Hypothesis strategy for a msgspec field type (the subset the contracts use)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is int:
        return st.integers(-(2**63), 2**63 - 1)
    if tp is float:
        return FLOATS
    if tp is str:
        return TEXT
    if tp is bool:
        return st.booleans()
    if tp is bytes:
        return st.binary(max_size=64)
    if tp is type(None):
        return st.none()
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[strategy(a) for a in args])
    if origin is list:
        return st.lists(strategy(args[0]), max_size=4)
    if origin is dict:
        return st.dictionaries(strategy(args[0]), strategy(args[1]), max_size=4)
    if origin is tuple:
        return st.tuples(*[strategy(a) for a in args])
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return struct_strategy(tp)
    raise NotImplementedError(f"no strategy for {tp!r}")


def struct_strategy(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, vars(schema))
    fields = {}
    for f in msgspec.structs.fields(cls):
        s = strategy(hints[f.name])
        if f.name == "v":
            s = st.integers(1, SCHEMA_VERSION)
        fields[f.name] = s
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


ANY_MESSAGE = st.one_of(*[struct_strategy(t) for t in MESSAGE_TYPES])


@settings(max_examples=120, deadline=None)
@given(ANY_MESSAGE)
def test_every_message_round_trips_msgpack_and_json(msg: Any) -> None:
    kind = type(msg)
    assert decode_checked(encode(msg), kind) == msg
    assert msgspec.json.decode(to_json(msg), type=kind) == msg


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(MESSAGE_TYPES))
@example(b"\xde\x00\x01\xa4\x00\x00\x00\x80", schema.RoomControl)  # invalid UTF-8 key (was a crash)
def test_garbage_is_rejected_with_a_schema_error(data: bytes, kind: Any) -> None:
    try:
        decode_checked(data, kind)
    except SchemaError as exc:
        text = str(exc)
        assert "\n" not in text and text.startswith((f"not a valid {kind.__name__}", f"{kind.__name__} has"))


def test_rejections_say_what_is_wrong() -> None:
    with pytest.raises(SchemaError, match=r"^not a valid Transcript: Object missing required field `text`"):
        decode(
            msgspec.msgpack.encode({"room": "r", "speaker": "s", "utterance": 1, "start": 0, "end": 1}),
            Transcript,
        )
    with pytest.raises(SchemaError, match=r"^not a valid EmotionEvent: Expected `str`, got `int`"):
        decode(msgspec.msgpack.encode({"room": 5}), EmotionEvent)
    with pytest.raises(SchemaError, match="^not a valid Transcript"):
        decode(encode(_transcript())[:-3], Transcript)
    newer = msgspec.structs.replace(_transcript(), v=SCHEMA_VERSION + 1)
    with pytest.raises(SchemaError, match=rf"schema version {SCHEMA_VERSION + 1}.*upgrade the consumer"):
        decode_checked(encode(newer), Transcript)


def test_schema_evolution_old_and_new_producers_stay_readable() -> None:
    old = {"room": "r", "speaker": "s", "utterance": 3, "start": 0.5, "end": 1.5, "text": "hi"}
    msg = decode(msgspec.msgpack.encode(old), Transcript)  # written before v/trace/words existed
    assert msg.v == SCHEMA_VERSION and msg.trace == {} and msg.words == [] and msg.language == "en"
    assert msg.hypotheses == []  # one transcript, as before Transcript.hypotheses
    newer = {**old, "v": SCHEMA_VERSION, "field_added_later": [1, 2]}  # unknown fields are ignored
    assert decode_checked(msgspec.msgpack.encode(newer), Transcript).text == "hi"


def test_event_ids_are_deterministic_per_utterance() -> None:
    assert event_id("room", "alice", 7) == event_id("room", "alice", 7)
    assert len({event_id("room", "alice", 7), event_id("room", "alice", 8), event_id("room", "bob", 7)}) == 3


def _transcript() -> Transcript:
    return Transcript(room="r", speaker="s", utterance=1, start=0.0, end=1.0, text="hello there")
