"""The room page served by a real `emostream serve` (subprocess, every stage) in headless Chromium with
fake devices: it joins over WHIP, and the timeline it draws (read from its DOM over the DevTools
protocol) matches the events an SSE subscriber gets: the right speaker, transcripts within 15 % WER."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from emostream.bench.call import words
from emostream.bench.call_media import load_prompt
from emostream.bench.netns import Network
from emostream.client import subscribe
from emostream.evaluation.scores import edit_distance
from emostream.schema import EmotionEvent
from tests.server.helpers import start_serve, token

from .test_room_page import _media

PROMPTS = ("agent-pass", "conf-getpin")
TIMELINE = (
    "JSON.stringify([...document.querySelectorAll('.event')].reverse().map(r => ({speaker: r.dataset.speaker,"
    " label: r.dataset.label, driver: r.dataset.driver, transcript: r.querySelector('.transcript').textContent})))"
)


def _wer(refs: list[str], hyps: list[str]) -> float:
    errors = sum(edit_distance(words(r), words(h)) for r, h in zip(refs, hyps, strict=True))
    return errors / sum(len(words(r)) for r in refs)


async def _timeline(profile: str) -> list[dict[str, Any]]:
    """The page's timeline rows, oldest first, via Runtime.evaluate on the page target."""
    port = (await asyncio.to_thread(Path(profile, "DevToolsActivePort").read_text)).split()[0]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json()
        page = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            await ws.send_json(
                {
                    "id": 1,
                    "method": "Runtime.evaluate",
                    "params": {"expression": TIMELINE, "returnByValue": True},
                }
            )
            while True:
                msg = await ws.receive_json()
                if msg.get("id") == 1:
                    return json.loads(msg["result"]["result"]["value"])  # type: ignore[no-any-return]


@pytest.mark.slow
async def test_room_page_on_serve_draws_the_events(private_net: Network, tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: `make apt` installs it")
    log = str(tmp_path / "serve.log")
    serve = await asyncio.to_thread(start_serve, None, log, "all", 180)
    # The fake microphone starts at getUserMedia, before WHIP and ICE are done: 3 s of lead silence
    # keep the first prompt's opening words from being spoken into a call that is not up yet.
    wav, y4m = _media(tmp_path, lead_s=3.0)
    got: list[EmotionEvent] = []

    async def follow() -> None:
        async for ev in subscribe(serve.url, "r10", token("r10")):
            got.append(ev)

    tail = asyncio.create_task(follow())
    url = f"{serve.url}/rooms/r10?join=1&token={token('r10', 'publish')}&watch={token('r10')}"
    profile = tempfile.mkdtemp(prefix="emo-chromium-")
    args = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream"]
    args += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={y4m}"]
    args += [f"--use-file-for-fake-audio-capture={wav}", "--disable-background-networking"]
    args += ["--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
    args += ["--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}"]
    args += ["--remote-debugging-port=0", url]
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            if len(got) >= len(PROMPTS):
                rows = await _timeline(profile)
                if len(rows) >= len(PROMPTS):
                    break
    finally:
        proc.terminate()
        await proc.wait()
        tail.cancel()
        shutil.rmtree(profile, ignore_errors=True)
        assert await asyncio.to_thread(serve.stop, 60) == 0
    refs = [load_prompt(n).text for n in PROMPTS]
    heard = [ev.transcript for ev in got]
    assert len(got) >= 2 and {ev.speaker for ev in got} == {"tester"}, (got, serve.tail())
    assert _wer(refs, heard[:2]) <= 0.15, (heard, serve.tail())
    assert len(rows) >= 2 and {r["speaker"] for r in rows} == {"tester"}, rows
    assert _wer(refs, [r["transcript"] for r in rows[:2]]) <= 0.15, rows
    sse = [(ev.speaker, ev.label, ev.driver, ev.transcript) for ev in got[:2]]
    assert [(r["speaker"], r["label"], r["driver"], r["transcript"]) for r in rows[:2]] == sse
    assert all(ev.driver in ("text", "face", "both", "fused") for ev in got)
