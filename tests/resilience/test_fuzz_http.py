"""Fuzzing the real ``emostream serve`` app (API, WHIP, room page; memory bus and a real redis-server)
with Hypothesis: query parameters of the catch-up/SSE/WebSocket/summary endpoints, token strings, WHIP
offers (mutated real aiortc offers, random bodies and content types, huge bodies) and publish bodies.

Every case must end in a 2xx or a 4xx whose body is one JSON line ``{"error": ...}``, never a 5xx and
never an ERROR log or a traceback on the server; each WHIP refusal is counted in
``emostream_whip_refused``. The cases here go beyond the fixed ones of tests/server and tests/call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import jwt
import msgspec
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from yarl import URL

from emostream.server import whip

from .live_serve import SECRET, LiveServe, live_serve

ROOM = "fuzz-room"
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CHARS = st.characters(exclude_categories=["Cs"])  # any code point a URL can carry
VISIBLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
TRICKY = st.sampled_from(
    [
        "", " ", "0", "-1", "1", "1000", "1001", "0-0", "1-1", "nan", "NaN", "inf", "-inf", "1e309",
        "0.5", "1.5", "-0.0", "00000000000001-0", "99999999999999999999-0", "18446744073709551615-0",
        "18446744073709551616-0", "1-18446744073709551616", "+5-3", "5--3", "-5-3", " 12-0", "1_000-0",
        "１２-0", "١٢٣-0", "²", "١٠", "$", "+", "-", ">", "<", "0-", "-0", "1-2-3", "joy", "joy,anger",
        "JOY", "joy,,", ",", "joy,nope", "\x00", "a" * 5000, "Ω≈ç√", "%ff", "speaker\nx",
    ]
)  # fmt: skip
VALUES = st.one_of(TRICKY, st.text(CHARS, max_size=30))
PARAMS = st.dictionaries(
    st.sampled_from(["since", "limit", "speaker", "min_confidence", "labels", "minutes"]), VALUES, max_size=5
)
ROUTES = st.sampled_from(["catch-up", "sse", "ws", "summary"])
MAX_REQUEST_LINE = 8190 - len("GET  HTTP/1.1")  # aiohttp's max_line_size


@pytest.fixture(scope="module", params=["memory", "redis"])
def app(request: pytest.FixtureRequest) -> Iterator[LiveServe]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"
    if request.param == "redis":
        import redis

        r = redis.Redis.from_url(url)
        r.flushall()
        r.close()
    with live_serve(url) as live:
        live.run(_seed(live))
        live.problems.take()
        yield live
    assert not live.problems.take()


async def _seed(live: LiveServe) -> None:
    """A few events in the room, so filters and cursors run over real entries."""
    from tests.server.helpers import event

    body = msgspec.json.encode([event(ROOM, n, speaker=("ana", "ben")[n % 2]) for n in range(12)])
    headers = {"Authorization": f"Bearer {live.token(ROOM, 'publish')}"}
    async with live.session.post(f"{live.url}/v1/rooms/{ROOM}/events", data=body, headers=headers) as r:
        assert r.status == 200, await r.text()
    for _ in range(100):  # the fan-out files them into the room stream
        if await live.server.state.bus.length(f"events:{ROOM}") >= 12:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the seeded events never reached the room stream")


def _one_line_error(status: int, text: str) -> None:
    assert 400 <= status < 500, (status, text)
    body = json.loads(text)
    assert isinstance(body.get("error"), str) and body["error"] and "\n" not in body["error"], body
    assert "Traceback" not in text


async def _query(live: LiveServe, route: str, params: dict[str, str], last_event_id: str | None) -> int:
    headers = {"Authorization": f"Bearer {live.token(ROOM, 'subscribe')}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    path = f"/v1/rooms/{ROOM}/summary" if route == "summary" else f"/v1/rooms/{ROOM}/events"
    s = live.session
    if len(str(URL(live.url + path).with_query(params))) > MAX_REQUEST_LINE:
        # aiohttp itself refuses a request line over 8 KiB with a 400 before any handler runs (the
        # serve log gets one warning line for it, no traceback)
        async with s.get(live.url + path, params=params, headers=headers) as r:
            assert r.status == 400
            return 400
    if route == "ws":
        try:
            async with s.ws_connect(f"{live.url}{path}/ws", params=params, headers=headers) as ws:
                first = await ws.receive_json(timeout=10)
                assert first["type"] == "ready", first
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            assert 400 <= exc.status < 500, exc
            return exc.status
    if route == "sse":
        headers["Accept"] = "text/event-stream"
    async with s.get(live.url + path, params=params, headers=headers) as r:
        if r.status != 200:
            _one_line_error(r.status, await r.text())
        elif route == "sse":
            first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 10)  # retry: ...
            ready = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 10)
            assert first.startswith(b"retry:") and ready.startswith(b"event: ready"), (first, ready)
        else:
            body = await r.json()
            assert isinstance(body["events"], list if route == "catch-up" else int), body
        return r.status


@FUZZ
@given(route=ROUTES, params=PARAMS, last_event_id=st.none() | st.text(VISIBLE, max_size=25))
@example(route="catch-up", params={"since": "99999999999999999999-0"}, last_event_id=None)
@example(route="sse", params={"since": "+5--3"}, last_event_id=None)
@example(route="catch-up", params={"limit": "²"}, last_event_id=None)
@example(route="sse", params={"min_confidence": "nan"}, last_event_id=None)
def test_query_parameters_get_a_2xx_or_one_line_4xx(
    app: LiveServe, route: str, params: dict[str, str], last_event_id: str | None
) -> None:
    status = app.run(_query(app, route, params, last_event_id))
    event(f"{route} {status}")
    assert status in (101, 200, 400), (route, params, status)
    assert not app.problems.take(), (route, params)


def test_out_of_range_filters_are_refused(app: LiveServe) -> None:
    """Regressions found by the fuzzer: these used to be taken (NaN/5 as a confidence), or reached Redis
    and ended in a 500 with a traceback (ids Redis cannot parse), or named int()'s error (``limit=²``)."""
    cases = {
        "min_confidence=nan": ({"min_confidence": "nan"}, "min_confidence='nan' is not a number in [0, 1]"),
        "min_confidence=5": ({"min_confidence": "5"}, "min_confidence='5' is not a number in [0, 1]"),
        "huge since": ({"since": "99999999999999999999-0"}, "is not a stream id like 1700000000000-0"),
        "signed since": ({"since": "+5--3"}, "is not a stream id like 1700000000000-0"),
        "non-ASCII digits": ({"since": "١٢٣-0"}, "is not a stream id like 1700000000000-0"),
        "limit=²": ({"limit": "²"}, "use a whole number from 1 to 1000"),
    }
    for name, (params, words) in cases.items():
        for route in ("catch-up", "sse", "ws"):
            if route == "catch-up" or "limit" not in params:
                text = app.run(_refusal(app, route, params))
                assert words in text, (name, route, text)
    assert not app.problems.take()


async def _refusal(live: LiveServe, route: str, params: dict[str, str]) -> str:
    headers = {"Authorization": f"Bearer {live.token(ROOM, 'subscribe')}"}
    if route == "sse":
        headers["Accept"] = "text/event-stream"
    path = f"/v1/rooms/{ROOM}/events" + ("/ws" if route == "ws" else "")
    async with live.session.get(live.url + path, params=params, headers=headers) as r:
        text = await r.text()
        _one_line_error(r.status, text)
        return text


# ------------------------------------------------------------------------------------------ tokens
TOKENS = st.one_of(
    st.text(CHARS, max_size=300),
    st.text(PRINTABLE, min_size=1, max_size=300),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", *[st.text(PRINTABLE, max_size=40)] * 3),
    st.sampled_from(["null", "undefined", "Bearer", "eyJhbGciOiJub25lIn0.eyJyb29tIjoiKiJ9.", "a.b.c", "..."]),
)
PROTECTED = [
    ("GET", "/v1/rooms"),
    ("GET", f"/v1/rooms/{ROOM}/events"),
    ("POST", f"/v1/rooms/{ROOM}/events"),
    ("GET", f"/v1/rooms/{ROOM}/events/ws"),
    ("GET", f"/v1/rooms/{ROOM}/summary"),
    ("POST", f"/whip/{ROOM}"),
    ("DELETE", f"/whip/{ROOM}/abc"),
    ("PATCH", f"/whip/{ROOM}/abc"),
]


async def _with_token(live: LiveServe, method: str, path: str, tok: str, in_header: bool) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {tok}"} if in_header else {}
    params = {} if in_header else {"token": tok}
    async with live.session.request(method, live.url + path, headers=headers, params=params) as r:
        return r.status, await r.text()


@FUZZ
@given(tok=TOKENS, route=st.sampled_from(PROTECTED), in_header=st.booleans())
def test_random_token_strings_are_401(
    app: LiveServe, tok: str, route: tuple[str, str], in_header: bool
) -> None:
    if in_header:  # a header carries visible ASCII only; the query string carries anything
        tok = "".join(c for c in tok if 0x21 <= ord(c) <= 0x7E)
    status, text = app.run(_with_token(app, *route, tok, in_header))
    _one_line_error(status, text)
    assert status == 401, (route, tok, text)
    assert not app.problems.take()


@FUZZ
@given(role=st.sampled_from(["subscribe", "publish", "admin"]), at=st.integers(0, 10_000), to=PRINTABLE)
def test_mutated_valid_tokens_are_refused_unless_still_valid(
    app: LiveServe, role: str, at: int, to: str
) -> None:
    good = app.token("*" if role == "admin" else ROOM, role)
    at %= len(good)
    bad = good[:at] + to + good[at + 1 :]
    try:  # base64 padding bits: a few one-character changes still decode to the same signed bytes
        jwt.decode(bad, SECRET, algorithms=["HS256"])
        still_valid = True
    except jwt.InvalidTokenError:
        still_valid = False
    method, path = {"subscribe": PROTECTED[4], "publish": PROTECTED[2], "admin": PROTECTED[0]}[role]
    status, text = app.run(_with_token(app, method, path, bad, True))
    if still_valid:
        assert status in (200, 400), text  # 400: the publish body is empty
    else:
        _one_line_error(status, text)
        assert status == 401
    assert not app.problems.take()


# -------------------------------------------------------------------------------------- WHIP bodies
@pytest.fixture(scope="module")
def real_offer(app: LiveServe) -> str:
    """A real aiortc offer (Opus audio + VP8/H.264 video), the seed the mutations start from."""

    async def make() -> str:
        from aiortc import RTCConfiguration, RTCPeerConnection

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        await pc.close()
        return sdp

    return app.run(make())


CODECS = ["opus", "OPUS", "PCMU", "G722", "speex", "VP8", "vp8", "H264", "VP9", "AV1", "x", "", "ü"]
LINE = st.one_of(
    st.text(VISIBLE, max_size=60),
    st.sampled_from(
        [
            "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 9 UDP/TLS/RTP/SAVPF 96", "m=application 9 x 1",
            "m=audio", "m=audio 9", "m=audio x y z", "m=text 9 RTP/AVP 98", "a=sendrecv", "a=recvonly",
            "a=inactive", "a=sendonly", "a=rtpmap:111", "a=rtpmap:x opus/48000", "a=fingerprint:sha-256 00",
            "a=setup:actpass", "a=ice-ufrag:", "a=ice-pwd:", "a=mid:", "a=group:BUNDLE 0 1 2 3", "c=IN IP4 x",
            "b=AS:-1", "a=ssrc:1 cname:x", "a=rtcp-mux", "a=extmap:1 urn:x", "v=0", "v=1", "o=", "s=", "t=x",
        ]
    ),
)  # fmt: skip


@st.composite
def mutated_offers(draw: st.DrawFn, seed: str) -> str:
    lines = seed.replace("\r\n", "\n").strip().split("\n")
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["drop", "dup", "insert", "codec", "swap", "truncate"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "drop" and lines:
            del lines[i]
        elif op == "dup" and lines:
            lines.insert(i, lines[i])
        elif op == "insert":
            lines.insert(i, draw(LINE))
        elif op == "codec":
            old = draw(st.sampled_from(["opus", "VP8", "H264"]))
            lines = [ln.replace(old, draw(st.sampled_from(CODECS))) for ln in lines]
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "truncate" and lines:
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
    return draw(st.sampled_from(["\r\n", "\n", "\r"])).join(lines) + "\r\n"


async def _post_offer(live: LiveServe, body: bytes, ctype: str | None, name: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {live.token(ROOM, 'publish', name=name)}"}
    if ctype is not None:
        headers["Content-Type"] = ctype
    async with live.session.post(f"{live.url}/whip/{ROOM}", data=body, headers=headers) as r:
        text = await r.text()
        if r.status == 201:  # a mutation that is still a good offer: end that session again
            async with live.session.delete(live.url + r.headers["Location"], headers=headers) as d:
                assert d.status == 200
        return r.status, text


def _refused(status: int) -> float:
    return float(whip.REFUSED.labels(str(status))._value.get())


def _check_whip(live: LiveServe, body: bytes, ctype: str | None) -> int:
    counts = {s: _refused(s) for s in (400, 413, 415, 422)}
    status, text = live.run(_post_offer(live, body, ctype, "fuzzer"))
    with contextlib.suppress(InvalidArgument):  # outside a Hypothesis test
        event(f"WHIP {status}")
    if status != 201:
        _one_line_error(status, text)
        assert status in counts, (status, text)
        assert _refused(status) == counts[status] + 1, "every WHIP refusal is counted"
    assert not live.problems.take(), text
    return status


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_real_offers_get_an_answer_or_one_line_4xx(
    app: LiveServe, real_offer: str, data: st.DataObject
) -> None:
    _check_whip(app, data.draw(mutated_offers(real_offer)).encode(), "application/sdp")


@FUZZ
@given(
    body=st.one_of(st.binary(max_size=2000), st.text(CHARS, max_size=2000).map(str.encode)),
    ctype=st.one_of(
        st.just("application/sdp"),  # most bodies reach the SDP checks
        st.none(),
        st.sampled_from(["application/SDP; charset=utf-8", "text/plain", "application/json", ""]),
        st.text(VISIBLE, max_size=40),
    ),
)
def test_random_whip_bodies_and_content_types(app: LiveServe, body: bytes, ctype: str | None) -> None:
    status = _check_whip(app, body, ctype)
    assert status in (400, 413, 415, 422)


def test_huge_whip_bodies_are_413_without_being_read(app: LiveServe, real_offer: str) -> None:
    limit = app.server.state.settings.call.max_sdp_bytes
    padded = real_offer + "a=x:" + "y" * limit + "\r\n"
    assert _check_whip(app, padded.encode(), "application/sdp") == 413

    async def chunked() -> tuple[int, str]:  # no Content-Length: the server reads limit + 1 bytes, no more
        async def gen() -> Any:
            yield real_offer.encode()
            for _ in range(64):
                yield b"a=x:" + b"y" * 16_000 + b"\r\n"

        headers = {"Authorization": f"Bearer {app.token(ROOM, 'publish')}", "Content-Type": "application/sdp"}
        async with app.session.post(f"{app.url}/whip/{ROOM}", data=gen(), headers=headers) as r:
            return r.status, await r.text()

    status, text = app.run(chunked())
    _one_line_error(status, text)
    assert status == 413 and "max_sdp_bytes" in text
    assert not app.problems.take()


# ---------------------------------------------------------------------------------- publish bodies
ODD = {
    "room": st.sampled_from([ROOM, "elsewhere", 5, None]),
    "speaker": st.text(max_size=5) | st.integers(),
    "utterance": st.integers(-(2**70), 2**70) | st.text(max_size=3),
    "id": st.text(max_size=10) | st.none(),
    "start": st.floats() | st.text(max_size=3),
    "end": st.floats(),
    "label": st.sampled_from(["joy", "nope", "", 3]),
    "probabilities": st.dictionaries(st.text(max_size=8), st.floats(), max_size=3),
    "confidence": st.floats() | st.none(),
    "modalities": st.lists(st.text(max_size=5), max_size=3),
    "transcript": st.text(max_size=30),
    "v": st.integers(-3, 99),
    "trace": st.dictionaries(st.text(max_size=4), st.floats(), max_size=2) | st.just([]),
}


@st.composite
def odd_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with a few fields replaced, dropped or added."""
    from tests.server.helpers import event as make

    body: dict[str, Any] = msgspec.to_builtins(make(ROOM, draw(st.integers(0, 50))))
    for key in draw(st.lists(st.sampled_from(sorted(ODD)), max_size=3, unique=True)):
        if draw(st.booleans()):
            body[key] = draw(ODD[key])
        else:
            body.pop(key, None)
    return body


def _an_event() -> Any:
    from tests.server.helpers import event as make

    return make(ROOM, 1)


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=300),
        odd_events().map(_json),
        st.lists(odd_events(), min_size=1, max_size=3).map(_json),
    )
)
@example(body=msgspec.json.encode([{**msgspec.to_builtins(_an_event()), "v": 99}]))
@example(body=b"[]")
def test_publish_bodies_are_delivered_or_one_line_400(app: LiveServe, body: bytes) -> None:
    """Accepted means delivered: every event of a 200 reaches the room stream (none is dead-lettered
    later by the fan-out), everything else is a one-line 400."""
    bus = app.server.state.bus

    async def post() -> tuple[int, str, int]:
        before = await bus.length(f"events:{ROOM}")
        headers = {"Authorization": f"Bearer {app.token(ROOM, 'publish')}"}
        async with app.session.post(f"{app.url}/v1/rooms/{ROOM}/events", data=body, headers=headers) as r:
            status, text = r.status, await r.text()
        if status == 200:
            want = before + json.loads(text)["accepted"]
            for _ in range(100):
                if await bus.length(f"events:{ROOM}") >= want:
                    break
                await asyncio.sleep(0.02)
        return status, text, await bus.length(f"events:{ROOM}") - before

    status, text, filed = app.run(post())
    event(f"publish {status}")
    if status == 200:
        assert filed == json.loads(text)["accepted"], (text, filed)
    else:
        _one_line_error(status, text)
        assert status == 400
    assert not app.problems.take()


def test_a_newer_schema_event_is_refused_not_accepted_then_dead_lettered(app: LiveServe) -> None:
    """Regression found by the fuzzer: POST answered 200 ``accepted: 1`` for an event of a newer schema
    version, which the fan-out then dead-lettered, so no subscriber ever saw it."""
    body = msgspec.json.encode([{**msgspec.to_builtins(_an_event()), "v": 99}])

    async def post() -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {app.token(ROOM, 'publish')}"}
        async with app.session.post(f"{app.url}/v1/rooms/{ROOM}/events", data=body, headers=headers) as r:
            return r.status, await r.text()

    status, text = app.run(post())
    _one_line_error(status, text)
    assert status == 400 and "schema version 99" in text and "upgrade it first" in text
