"""WHIP (RFC 9725) with a real aiortc publisher inside a private network: status codes and headers,
DELETE/PATCH, malformed and oversized offers, missing audio, the token matrix, limits, and real speech
and video flowing into Utterance messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from multidict import CIMultiDict

from emostream.bench.call_media import FaceTrack, Program, SpeechTrack, load_prompt, transcripts
from emostream.bench.netns import Network
from emostream.config import CallSettings
from emostream.schema import PartialAudio, decode
from emostream.server.receiver import audio_prefetch
from emostream.server.whip import link_headers, parse_offer
from emostream.server.whip_client import WhipError, WhipPublisher

from .helpers import WhipServer, start_whip, token

pytestmark = pytest.mark.usefixtures("private_net")


@pytest.fixture
async def server(private_net: Network) -> AsyncIterator[WhipServer]:
    srv = await start_whip(max_participants_room=2, max_sdp_bytes=12_000)
    yield srv
    await srv.close()


async def _offer(*tracks: object) -> tuple[object, str]:
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for t in tracks:
        pc.addTransceiver(t, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def _post(
    url: str, body: str | bytes, tok: str | None, ctype: str = "application/sdp"
) -> tuple[int, CIMultiDict[str], str]:
    headers = {"Content-Type": ctype, "Origin": "http://page.test"}
    if tok is not None:
        headers["Authorization"] = f"Bearer {tok}"
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        return resp.status, CIMultiDict(resp.headers), await resp.text()


async def test_speech_and_video_become_utterances(server: WhipServer) -> None:
    texts = transcripts()
    program = Program(
        [load_prompt(n, texts) for n in ("conf-onlyperson", "agent-pass")], pause_s=1.2, lead_s=0.5
    )
    speech = SpeechTrack(program)
    pub = WhipPublisher(server.whip("r1"), token("r1", name="alice"), [speech, FaceTrack()])
    await pub.start()
    assert pub.location.startswith(server.whip("r1") + "/") and pub.etag.startswith('"')
    (session,) = server.endpoint.sessions.values()  # aiortc holds 1 Opus packet back, not 4 (80 ms)
    audio = [t.receiver for t in session.pc.getTransceivers() if t.kind == "audio"]
    assert [audio_prefetch(r) for r in audio] == [server.settings.call.audio_jitter_packets] == [1]
    await asyncio.sleep(program.duration + 0.3)
    utts = await server.utterances(2, wait_s=5)
    assert [u.speaker for u in utts] == ["alice", "alice"]
    assert [u.room for u in utts] == ["r1", "r1"]
    ends = speech.voiced_end_walls()
    for u, end in zip(utts, ends, strict=True):
        assert u.start < end <= u.end + 0.1, (u.start, u.end, end)  # media time is the wall clock
        # eos_at follows the speech end on the same clock (its size is `bench call`'s figure, not a test)
        assert 0 < u.eos_at - end < 10.0
        assert len(u.frames) >= 3 and all(f.blob for f in u.frames)
        assert u.audio and await server.bus.get_blob(u.audio)
    partials = [decode(e.data, PartialAudio) for e in await server.bus.tail({"partials": "0"}, 1000, 10)]
    early = [p for p in partials if p.frames]  # the pause partials bring the face's frames so far
    assert len(early) >= 2
    assert all([await server.bus.get_blob(f.blob) for p in early for f in p.frames])
    pump = server.pumps[0]
    assert pump.stats.audio_frames > 100 and pump.stats.video_frames > 10 and pump.stats.errors == 0
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {token('r1', name='alice')}"}
        async with http.patch(
            pub.location,
            data="a=candidate:1",
            headers={**auth, "Content-Type": "application/trickle-ice-sdpfrag"},
        ) as resp:
            assert resp.status == 405 and "DELETE" in resp.headers["Allow"]
        other = {"Authorization": f"Bearer {token('r1', name='mallory')}"}
        async with http.delete(pub.location, headers=other) as resp:
            assert resp.status == 403
    assert await pub.stop() == 200
    async with aiohttp.ClientSession() as http, http.delete(pub.location, headers=auth) as resp:
        assert resp.status == 404 and "no WHIP session" in (await resp.json())["error"]
    assert server.endpoint.sessions == {}


async def test_201_headers_and_cors(server: WhipServer) -> None:
    pc, sdp = await _offer(SpeechTrack(Program([])))
    status, headers, body = await _post(server.whip("r2"), sdp, token("r2", name="bob"))
    await pc.close()  # type: ignore[attr-defined]
    assert status == 201, body
    assert headers["Content-Type"] == "application/sdp" and body.startswith("v=0")
    assert "a=candidate:" in body and "opus/48000" in body.lower()
    assert "pcmu" not in body.lower()  # the answer keeps Opus only
    assert headers["Location"].startswith("/whip/r2/") and headers["ETag"].startswith('"')
    assert headers["Access-Control-Allow-Origin"] == "http://page.test"
    assert "Location" in headers["Access-Control-Expose-Headers"]
    async with aiohttp.ClientSession() as http:
        async with http.options(
            server.whip("r2"), headers={"Origin": "http://page.test", "Access-Control-Request-Method": "POST"}
        ) as resp:
            assert resp.status == 204 and resp.headers["Accept-Post"] == "application/sdp"
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        async with http.delete(
            server.url + headers["Location"], headers={"Authorization": f"Bearer {token('r2', name='bob')}"}
        ) as resp:
            assert resp.status == 200


async def test_bad_offers_are_clear_4xx(server: WhipServer) -> None:
    tok = token("r3", name="carol")
    pc, sdp = await _offer(SpeechTrack(Program([])), FaceTrack())
    cases = [
        (sdp, "text/plain", 415, "application/sdp"),
        ("hello", "application/sdp", 400, "v=0"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "application/sdp", 400, "no media"),
        (
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n",
            "application/sdp",
            400,
            "rejected",
        ),
        (sdp + "a=x:" + "y" * 12_000 + "\r\n", "application/sdp", 413, "max_sdp_bytes"),
        (sdp.replace("opus/48000/2", "speex/48000/2"), "application/sdp", 422, "Opus"),
        (
            sdp.replace("VP8/90000", "VP9/90000").replace("H264/90000", "AV1/90000"),
            "application/sdp",
            422,
            "VP8",
        ),
        (b"v=0\r\n\xff\xfe", "application/sdp", 400, "UTF-8"),
    ]
    for body, ctype, status, words in cases:
        got, headers, text = await _post(server.whip("r3"), body, tok, ctype)
        assert got == status, (status, text)
        assert words in text and headers["Content-Type"].startswith("application/json")
    await pc.close()  # type: ignore[attr-defined]
    # no audio track at all: aiortc offer with video only
    pc, video_only = await _offer(FaceTrack())
    got, _, text = await _post(server.whip("r3"), video_only, tok)
    await pc.close()  # type: ignore[attr-defined]
    assert got == 422 and "no audio" in text
    # nothing crashed: a good offer still works
    pub = WhipPublisher(server.whip("r3"), tok, [SpeechTrack(Program([]))])
    await pub.start()
    assert await pub.stop() == 200


async def test_token_matrix(server: WhipServer) -> None:
    expired = token("r4", ttl_s=-10)
    cases = [
        (None, 401, "missing token"),
        ("not-a-jwt", 401, "invalid token"),
        (token("r4", secret="another-secret-of-at-least-thirty-two-b"), 401, "signature does not match"),
        (expired, 401, "token expired"),
        (token("r4", role="subscribe"), 403, "needs publish"),
        (token("other-room"), 403, "not room 'r4'"),
        (token("r4", name=""), 403, "names no participant"),
    ]
    pc, sdp = await _offer(SpeechTrack(Program([])))
    for tok, status, words in cases:
        got, headers, text = await _post(server.whip("r4"), sdp, tok)
        assert got == status and words in text, (tok, got, text)
        if status == 401:
            assert headers["WWW-Authenticate"].startswith("Bearer")
    await pc.close()  # type: ignore[attr-defined]
    admin = WhipPublisher(
        server.whip("r4"), token("*", role="admin", name="operator"), [SpeechTrack(Program([]))]
    )
    await admin.start()
    assert (
        server.endpoint.sessions and next(iter(server.endpoint.sessions.values())).participant == "operator"
    )
    await admin.stop()


async def test_limits(server: WhipServer) -> None:
    """max_participants_room=2 here: a third publisher gets 429; the same participant twice gets 409."""
    pubs = [
        WhipPublisher(server.whip("r5"), token("r5", name=n), [SpeechTrack(Program([]))]) for n in ("a", "b")
    ]
    for p in pubs:
        await p.start()
    for name, status in (("a", 409), ("c", 429)):
        with pytest.raises(WhipError) as err:
            await WhipPublisher(server.whip("r5"), token("r5", name=name), [SpeechTrack(Program([]))]).start()
        assert err.value.status == status
    other_room = WhipPublisher(server.whip("r6"), token("r6", name="c"), [SpeechTrack(Program([]))])
    await other_room.start()  # the limit is per room
    for p in [*pubs, other_room]:
        assert await p.stop() == 200
    # freed: the room takes a publisher again
    again = WhipPublisher(server.whip("r5"), token("r5", name="c"), [SpeechTrack(Program([]))])
    await again.start()
    await again.stop()


def test_offer_parsing_and_links() -> None:
    offer = parse_offer(
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\na=inactive\r\n"
    )
    assert offer.media == {"audio": ["opus", "pcmu"]}  # an inactive video section sends nothing
    links = link_headers(
        CallSettings(
            ice_servers="stun:stun.test:3478, turn:turn.test:3478?transport=udp",
            turn_username="u",
            turn_credential="p",
        )
    )
    assert links[0] == '<stun:stun.test:3478>; rel="ice-server"'
    assert links[1].startswith(
        '<turn:turn.test:3478?transport=udp>; rel="ice-server"; username="u"; credential="p"'
    )
