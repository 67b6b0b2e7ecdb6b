"""Janus end to end: a real Debian ``janus`` (own config, in this module's private network), two aiortc
publishers in a VideoRoom speaking real Asterisk prompts with a face, and ``emostream join janus``
(the real CLI, embedded pipeline, real models) attached as a listener: events for both display names,
with their transcripts, and both leaves followed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emostream.bench.netns import Network
from emostream.errors import UserError
from emostream.evaluation.scores import edit_distance
from emostream.server.janus import JanusOptions, JanusSession

LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
ROOM, PIN = 4242, "letmein"
SPEAKERS = {"alice": ("agent-pass", "conf-getpin"), "bob": ("vm-rec-name", "queue-thankyou")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, ws_port: int) -> None:
    """The three files Janus needs: core (only the VideoRoom and WebSockets), transport, one room."""
    plugins = sorted(p.name for p in (LIB / "plugins").glob("*.so") if "videoroom" not in p.name)
    transports = sorted(p.name for p in (LIB / "transports").glob("*.so") if "websockets" not in p.name)
    events = sorted(p.name for p in (LIB / "events").glob("*.so"))
    loggers = sorted(p.name for p in (LIB / "loggers").glob("*.so"))
    (folder / "janus.jcfg").write_text(
        f"""general: {{
  configs_folder = "{folder}"
  plugins_folder = "{LIB}/plugins"
  transports_folder = "{LIB}/transports"
  events_folder = "{LIB}/events"
  loggers_folder = "{LIB}/loggers"
  debug_level = 4
  session_timeout = 60
}}
media: {{ rtp_port_range = "20000-20200" }}
nat: {{ ice_enforce_list = "v0" ignore_mdns = true }}
plugins: {{ disable = "{",".join(plugins)}" }}
transports: {{ disable = "{",".join(transports)}" }}
events: {{ broadcast = false disable = "{",".join(events)}" }}
loggers: {{ disable = "{",".join(loggers)}" }}
"""
    )
    (folder / "janus.transport.websockets.jcfg").write_text(
        f"""general: {{ json = "compact" ws = true ws_port = {ws_port} ws_ip = "127.0.0.1" wss = false }}
admin: {{ admin_ws = false admin_wss = false }}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text(
        f"""general: {{ }}
room-{ROOM}: {{
  description = "emostream test"
  pin = "{PIN}"
  publishers = 6
  audiocodec = "opus"
  videocodec = "vp8"
}}
"""
    )


@dataclass
class Janus:
    folder: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.folder / "janus.log"
        self.proc = subprocess.Popen(
            [
                "janus",
                "-F",
                str(self.folder),
                "-C",
                str(self.folder / "janus.jcfg"),
                "-o",
                "-N",
                "-L",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                pytest.fail(f"janus did not start (rc {self.proc.poll()}):\n{tail}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def janus_server(private_net: Network, tmp_path: Path) -> Iterator[Janus]:
    if shutil.which("janus") is None:
        pytest.fail("janus is not installed: run `make apt` (Debian package janus)")
    server = Janus(tmp_path, _free_port())
    write_config(tmp_path, server.port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def janus(janus_server: Janus) -> str:
    return janus_server.url


@contextlib.asynccontextmanager
async def publisher(
    url: str, display: str, prompts: tuple[str, ...], texts: dict[str, str]
) -> AsyncIterator[Any]:
    """An aiortc participant publishing speech and a face into the room (what a call client does)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from emostream.bench.call_media import FaceTrack, Program, SpeechTrack, load_prompt

    speech = SpeechTrack(Program([load_prompt(n, texts) for n in prompts], pause_s=1.2, lead_s=3.0))
    async with JanusSession.open(JanusOptions(url, ROOM)) as janus:
        handle = await janus.attach()
        joined = await janus.message(
            handle, {"request": "join", "ptype": "publisher", "room": ROOM, "display": display, "pin": PIN}
        )
        assert joined["plugindata"]["data"]["videoroom"] == "joined", joined
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(speech)
        pc.addTrack(FaceTrack())
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp}
        reply = await janus.message(handle, {"request": "publish"}, jsep=offer)
        assert "jsep" in reply, reply
        await pc.setRemoteDescription(RTCSessionDescription(**reply["jsep"]))
        try:
            yield speech
        finally:
            with contextlib.suppress(Exception):
                await janus.message(handle, {"request": "leave"}, wait_s=3)
            await pc.close()


async def _lines(stream: asyncio.StreamReader, out: list[str], at: list[float] | None = None) -> None:
    while line := await stream.readline():
        out.append(line.decode(errors="replace").rstrip())
        if at is not None:
            at.append(time.time())


@pytest.mark.slow
async def test_join_janus_gets_events_of_both_publishers(janus: str) -> None:
    from emostream.bench.call_media import transcripts

    try:
        texts = transcripts()
    except UserError as exc:
        pytest.fail(str(exc))
    cmd = [sys.executable, "-m", "emostream", "join", "janus", "--url", janus, "--room", str(ROOM)]
    cmd += ["--room-secret", PIN, "--analyzer-room", "standup", "--json", "--drain", "6"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ)
    )
    assert proc.stdout is not None and proc.stderr is not None
    out: list[str] = []
    err: list[str] = []
    arrived: list[float] = []
    readers = [
        asyncio.create_task(_lines(proc.stdout, out, arrived)),
        asyncio.create_task(_lines(proc.stderr, err)),
    ]
    try:
        deadline = time.monotonic() + 60
        while not any("joined janus room" in line for line in err):
            assert proc.returncode is None and time.monotonic() < deadline, "\n".join(err)
            await asyncio.sleep(0.2)
        async with (
            publisher(janus, "alice", SPEAKERS["alice"], texts) as a,
            publisher(janus, "bob", SPEAKERS["bob"], texts) as b,
        ):
            await _spoken(a, b)
            ends = {"alice": a.voiced_end_walls(), "bob": b.voiced_end_walls()}
        deadline = time.monotonic() + 10
        while sum("left" in line for line in err) < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(proc.wait(), 30)
        await asyncio.gather(*readers)
    assert rc == 0, "\n".join(err)
    assert any("subscribed to alice" in line for line in err) and any(
        "subscribed to bob" in line for line in err
    )
    assert any("alice left" in line for line in err) and any("bob left" in line for line in err), err
    events = [json.loads(line) for line in out if line.startswith("{")]
    lat = sorted(  # informative (speed targets live in `emostream bench call`): last voiced sample -> printed
        round((t - min((e for e in ends[ev["speaker"]] if e <= t), key=lambda e: t - e)) * 1000)
        for line, t in zip(out, arrived, strict=True)
        if line.startswith("{") and (ev := json.loads(line))["speaker"] in ends
    )
    print(f"speech end -> event printed, ms: {lat}")
    assert {e["speaker"] for e in events} == set(SPEAKERS), (events, err)
    assert all(e["room"] == "standup" for e in events)
    for speaker, prompts in SPEAKERS.items():
        said = [e["transcript"] for e in events if e["speaker"] == speaker]
        for name in prompts:  # every prompt came through as one event with its words
            ref = _words(texts[name])
            best = min(edit_distance(ref, _words(t)) / len(ref) for t in said)
            assert best <= 0.15, (speaker, texts[name], said)


async def _spoken(*tracks: Any) -> None:
    """Until every publisher has sent its last voiced sample, plus time for it to cross Janus."""
    while any(t.started is None for t in tracks):  # noqa: ASYNC110 - set by aiortc's sender
        await asyncio.sleep(0.1)
    end = max(t.voiced_end_walls()[-1] for t in tracks)
    await asyncio.sleep(max(0.0, end - time.time()) + 1.5)


def _words(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


async def test_listener_follows_joins_and_reconnects(janus_server: Janus) -> None:
    """In process, no models: a publisher's media reaches its participant ingest; after Janus restarts
    the listener joins the room again by itself and subscribes to the next publisher."""
    from emostream.bench.call_media import transcripts
    from emostream.bus import open_bus
    from emostream.config import load_settings
    from emostream.server.janus import JanusListener
    from emostream.server.tracks import TrackPump, call_sink

    try:
        texts = transcripts()
    except UserError as exc:
        pytest.fail(str(exc))
    settings = load_settings(env={})
    bus = open_bus("memory://", settings.bus)
    make = call_sink(bus, settings)
    pumps: dict[str, TrackPump] = {}

    def sink(room: str, participant: str) -> TrackPump:
        pumps[participant] = make(room, participant)
        return pumps[participant]

    status: list[str] = []
    options = JanusOptions(janus_server.url, ROOM, pin=PIN, reconnect_s=0.3, keepalive_s=1.0)
    listener = JanusListener(options, bus, "r", sink, status.append)
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))

    async def until(text: str, n: int = 1, wait_s: float = 15) -> None:
        deadline = time.monotonic() + wait_s
        while sum(text in line for line in status) < n:  # noqa: ASYNC110 - status is a callback's list
            assert time.monotonic() < deadline and not task.done(), status
            await asyncio.sleep(0.1)

    try:
        await until("joined janus room")
        async with publisher(janus_server.url, "carol", ("agent-pass",), texts):
            await until("subscribed to carol")
            await asyncio.sleep(3.0)  # > 2 keepalives: the session stays up
            assert pumps["carol"].stats.audio_frames > 50, pumps["carol"].stats
            janus_server.stop()
            await until("connection lost")
        await until("carol left")
        janus_server.start()
        await until("joined janus room", n=2)
        async with publisher(janus_server.url, "dave", ("conf-getpin",), texts):
            await until("subscribed to dave")
        await until("dave left")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await bus.close()
    assert listener.connects == 2


@pytest.mark.parametrize(("room", "pin", "why"), [(ROOM, "wrong", "pin"), (999, PIN, "No such room")])
async def test_listener_refuses_wrong_room_or_pin(janus_server: Janus, room: int, pin: str, why: str) -> None:
    from emostream.bus import open_bus
    from emostream.config import load_settings
    from emostream.server.janus import JanusListener
    from emostream.server.tracks import call_sink

    settings = load_settings(env={})
    bus = open_bus("memory://", settings.bus)
    listener = JanusListener(
        JanusOptions(janus_server.url, room, pin=pin), bus, "r", call_sink(bus, settings)
    )
    with pytest.raises(UserError, match=why):
        await asyncio.wait_for(listener.run(asyncio.Event()), 15)
    await bus.close()


def test_cli_refuses_a_non_websocket_url(capsys: pytest.CaptureFixture[str]) -> None:
    from emostream.cli import main

    rc = main(["join", "janus", "--url", "http://127.0.0.1:8088", "--room", "1", "--analyzer-room", "r"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "emostream join: error: --url http://127.0.0.1:8088: expected a Janus WebSocket URL (ws://HOST:8188)"
    ]


async def test_listener_feeds_a_redis_topology(janus_server: Janus) -> None:
    """``--redis``: the subscribed feed's speech becomes an Utterance of its display name on Redis
    Streams, where `emostream worker` stages read it (no stages run here)."""
    from emostream.bench.call_media import transcripts
    from emostream.bus import open_bus
    from emostream.config import load_settings
    from emostream.schema import Utterance, decode
    from emostream.server.janus import JanusListener
    from emostream.server.tracks import call_sink
    from emostream.testing.redis_server import redis_server

    try:
        texts = transcripts()
    except UserError as exc:
        pytest.fail(str(exc))
    settings = load_settings(env={})
    with redis_server() as url:
        bus = open_bus(url, settings.bus)
        status: list[str] = []
        listener = JanusListener(
            JanusOptions(janus_server.url, ROOM, pin=PIN), bus, "r", call_sink(bus, settings), status.append
        )
        stop = asyncio.Event()
        task = asyncio.create_task(listener.run(stop))
        try:
            while not any("joined" in line for line in status):  # noqa: ASYNC110 - a callback's list
                assert not task.done()
                await asyncio.sleep(0.1)
            async with publisher(janus_server.url, "erin", ("conf-getpin",), texts) as speech:
                await _spoken(speech)
            stop.set()
            await asyncio.wait_for(task, 15)
            got = [decode(e.data, Utterance) for e in await bus.tail({Utterance.stream: "0"}, 100, 10)]
        finally:
            stop.set()
            await bus.close()
    assert [(u.room, u.speaker) for u in got] == [("r", "erin")], (got, status)
