"""Regenerate docs/img/room.png: the room page ``GET /rooms/demo`` with a live timeline of real events.

What runs (all real, nothing staged): a throwaway redis-server, ``emostream serve --redis URL`` with
every stage in it, headless Chromium watching ``/rooms/demo`` (subscribe token), and ``emostream
analyze --redis URL --room demo`` feeding the two-speaker Asterisk-prompt recording of ``make demo``
through the participant ingest. The page receives the events over SSE as they are made; once every
event is drawn the page is captured over the DevTools protocol.

    python scripts/screenshot_room.py [--out docs/img/room.png]      # or: make screenshots

Needs what ``make demo`` installs (redis-server, chromium, the Asterisk prompts, the demo models).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emostream.bench.prompts import two_speaker_recording  # noqa: E402
from emostream.server import auth  # noqa: E402
from emostream.testing.redis_server import free_port, start_redis  # noqa: E402

ROOM = "demo"
ROWS = "document.querySelectorAll('.event').length"
STAGES = "asr,fec,vlm,context,fusion"


def say(line: str) -> None:
    print(f"screenshot_room: {line}", file=sys.stderr, flush=True)


def spawn(cmd: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    if log is None:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


async def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url + "/readyz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"screenshot_room: emostream serve did not become ready: see {log}")
            await asyncio.sleep(0.3)


class Page:
    """One page target of a headless Chromium, driven over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.n = ws, 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.n += 1
        await self.ws.send_json({"id": self.n, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg["result"])

    async def eval(self, expression: str) -> Any:
        out = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return out["result"].get("value")


async def devtools_page(profile: Path, http: aiohttp.ClientSession, wait_s: float = 30) -> str:
    deadline = time.monotonic() + wait_s
    marker = profile / "DevToolsActivePort"
    while not marker.is_file() or not marker.read_text().strip():
        if time.monotonic() > deadline:
            sys.exit("screenshot_room: chromium did not open its DevTools port")
        await asyncio.sleep(0.2)
    port = marker.read_text().split()[0]
    while True:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            pages = [t for t in await r.json() if t["type"] == "page"]
        if pages:
            return str(pages[0]["webSocketDebuggerUrl"])
        await asyncio.sleep(0.2)


def shrink(png: bytes, out: Path, max_bytes: int) -> None:
    """Save as a palette PNG (flat page colours survive 256 colours), well under ``max_bytes``."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    if buf.tell() > max_bytes:
        sys.exit(f"screenshot_room: {buf.tell()} bytes is over {max_bytes}: use a smaller --size")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())


async def main(args: argparse.Namespace) -> int:
    if shutil.which("chromium") is None:
        sys.exit("screenshot_room: chromium is not installed: `make apt` installs it")
    work = Path(tempfile.mkdtemp(prefix="emo-shot-"))
    tracks = two_speaker_recording(work / "talk", per_speaker=args.prompts)
    secret = secrets.token_hex(32)
    redis_port, port = free_port(), free_port()
    redis_proc = start_redis(redis_port, "--requirepass", "shot", workdir=str(work))
    bus = f"redis://:shot@127.0.0.1:{redis_port}/0"
    env = {**os.environ, "EMOSTREAM_API_SECRET": secret, "PYTHONPATH": str(ROOT)}
    serve_log = work / "serve.log"
    serve_cmd = [sys.executable, "-m", "emostream", "serve", "--port", str(port), "--redis", bus]
    serve_cmd += ["--stages", STAGES]
    serve = spawn(serve_cmd, env, serve_log)
    url = f"http://127.0.0.1:{port}"
    chromium: subprocess.Popen[bytes] | None = None
    try:
        say(f"emostream serve on {url} (bus on redis :{redis_port}), waiting for its stages")
        await wait_ready(url, serve, serve_log, 240)
        watch = auth.create(secret, ROOM, "subscribe", name="viewer", ttl_s=3600)
        width, height = args.size
        cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        cmd += [f"--window-size={width},{height}", f"--user-data-dir={work / 'profile'}"]
        cmd += ["--remote-debugging-port=0", "--no-first-run", "--disable-background-networking"]
        cmd += ["--disable-component-update", "--disable-sync", f"{url}/rooms/{ROOM}?token={watch}"]
        chromium = spawn(cmd, env, None)
        async with aiohttp.ClientSession() as http:
            ws_url = await devtools_page(work / "profile", http)
            async with http.ws_connect(ws_url, max_msg_size=0) as ws:
                page = Page(ws)
                # "watching" once the page's SSE subscription is ready (room.js), so no event is missed
                while await page.eval("document.getElementById('status').textContent") != "watching":  # noqa: ASYNC110 - polling the page
                    await asyncio.sleep(0.2)
                say("room page open; emostream analyze feeds alice.wav and bob.wav into room demo")
                analyze = [sys.executable, "-m", "emostream", "analyze", "--redis", bus, "--room", ROOM]
                analyze += ["--json", *(str(t.path) for t in tracks)]
                done = await asyncio.to_thread(
                    subprocess.run, analyze, env=env, capture_output=True, timeout=600
                )
                if done.returncode != 0:
                    sys.exit(f"screenshot_room: emostream analyze failed: {done.stderr.decode()[-1500:]}")
                events = [json.loads(x) for x in done.stdout.decode().splitlines() if '"label"' in x]
                deadline = time.monotonic() + 30
                while (drawn := await page.eval(ROWS)) < len(events):
                    if time.monotonic() > deadline:
                        sys.exit(f"screenshot_room: the page drew {drawn} of {len(events)} events")
                    await asyncio.sleep(0.3)
                shot = await page.call("Page.captureScreenshot", format="png")
        shrink(base64.b64decode(shot["data"]), args.out, args.max_bytes)
        say(f"{args.out}: {len(events)} events of {len(tracks)} speakers ({args.out.stat().st_size} bytes)")
        return 0
    finally:
        for proc in (chromium, serve, redis_proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "room.png", help="the PNG to write")
    p.add_argument(
        "--prompts", type=int, default=4, help="recorded prompts per speaker (default 4, as `make demo`)"
    )
    p.add_argument("--size", type=int, nargs=2, default=(1000, 600), metavar=("W", "H"), help="viewport")
    p.add_argument("--max-bytes", type=int, default=300_000, help="fail above this PNG size")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
