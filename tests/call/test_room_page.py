"""The room page in headless Debian Chromium with fake devices (a recorded prompt as the microphone,
a bundled portrait as the camera): it joins over WHIP and its speech becomes the token's Utterances."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import aiohttp
import pytest

from emostream.bench.call_media import PORTRAITS, RATE, Program, load_prompt
from emostream.bench.netns import Network

from .helpers import start_whip, token


def _media(tmp: Path, lead_s: float = 0.5) -> tuple[Path, Path]:
    """Chromium loops the WAV from getUserMedia on; ``lead_s`` of silence covers the call set-up."""
    program = Program([load_prompt("agent-pass"), load_prompt("conf-getpin")], pause_s=1.5, lead_s=lead_s)
    wav = tmp / "speech.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(program.audio.tobytes())
    y4m = tmp / "face.y4m"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-loop",
            "1",
            "-i",
            str(PORTRAITS / "astronaut.jpg"),
            "-t",
            "2",
            "-r",
            "10",
            "-vf",
            "scale=320:320,format=yuv420p",
            "-f",
            "yuv4mpegpipe",
            str(y4m),
        ],
        check=True,
    )
    return wav, y4m


@pytest.mark.slow
async def test_chromium_joins_from_the_room_page(private_net: Network, tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: `make apt` installs it")
    srv = await start_whip(page=True)
    wav, y4m = _media(tmp_path)
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/rooms/r9") as resp:
        page = await resp.text()
        assert resp.status == 200 and "room.js" in page
    url = f"{srv.url}/rooms/r9?join=1&token={token('r9', name='dora')}"
    profile = tempfile.mkdtemp(prefix="emo-chromium-")
    args = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
        f"--use-file-for-fake-audio-capture={wav}",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        url,
    ]
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        utts = await srv.utterances(2, wait_s=40)
    finally:
        proc.terminate()
        await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
        await srv.close()
    assert len(utts) >= 2 and {u.speaker for u in utts} == {"dora"}
    assert all(u.frames for u in utts)  # the camera's frames rode along
