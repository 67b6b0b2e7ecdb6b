"""`emostream serve` (a subprocess: embedded bus, every stage) takes a real aiortc WHIP publisher and its
prompts come back as EmotionEvents over SSE (emostream.client); SIGTERM closes the live session."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import pytest

from emostream.bench.call import publish_token, words
from emostream.bench.call_media import FaceTrack, Program, SpeechTrack, load_prompt
from emostream.bench.netns import Network
from emostream.client import subscribe
from emostream.evaluation.scores import edit_distance
from emostream.schema import EmotionEvent
from emostream.server.whip_client import WhipPublisher
from tests.server.helpers import SECRET, start_serve, token


def _tail(path: str, n: int = 3000) -> str:
    return Path(path).read_text()[-n:]


@pytest.mark.slow
async def test_serve_whip_to_sse(private_net: Network, tmp_path: Path) -> None:
    log = str(tmp_path / "serve.log")
    serve = await asyncio.to_thread(start_serve, None, log, "all", 180)
    try:
        got: list[EmotionEvent] = []

        async def follow() -> None:
            async for ev in subscribe(serve.url, "live", token("live")):
                got.append(ev)

        tail = asyncio.create_task(follow())
        await asyncio.sleep(0.5)
        prompts = [load_prompt("agent-pass"), load_prompt("conf-getpin")]
        speech = SpeechTrack(Program(prompts, pause_s=1.5, lead_s=0.8))
        pub = WhipPublisher(
            f"{serve.url}/whip/live", publish_token("live", "dana", secret=SECRET), [speech, FaceTrack()]
        )
        await pub.start()
        await asyncio.sleep(speech.program.duration + 0.5)
        deadline = time.monotonic() + 60
        while len(got) < len(prompts) and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a list
            await asyncio.sleep(0.2)
        # SIGTERM with the publisher still connected: the drain closes its WHIP session.
        assert await asyncio.to_thread(serve.stop, 60) == 0, await asyncio.to_thread(_tail, log)
        tail.cancel()
        with contextlib.suppress(aiohttp.ClientError):
            await pub.stop()  # the server is gone: only the local peer connection closes
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
    assert [ev.speaker for ev in got] == ["dana", "dana"], got
    errors = sum(
        edit_distance(words(p.text), words(ev.transcript)) for p, ev in zip(prompts, got, strict=True)
    )
    assert errors / sum(len(words(p.text)) for p in prompts) <= 0.15, [ev.transcript for ev in got]
    text = await asyncio.to_thread(_tail, log, 100_000)
    assert "whip session ended" in text and "stopped" in text, text[-3000:]
