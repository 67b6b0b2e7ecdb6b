"""One soak participant in its own process: a WHIP publisher that talks until told to leave.

Eight aiortc peers in one Python process share one event loop with the SSE subscriber; on two cores
that loop woke seconds late, ICE consent checks went unanswered and the *bench* dropped calls. Each
participant therefore runs here, as ``python -m emostream.bench.soak_participant``, driven over
stdin/stdout by :class:`ParticipantProc`: one command per line (``drop``: the network goes for 5 s and
the same participant rejoins; ``leave``), one JSON reply per line (``{"joined": ...}``, then the
:class:`Account` of what it said and how its call went).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from emostream.bench.call import Spoken, publish_token
from emostream.bench.call_media import (
    DEFAULT_PROMPTS,
    FaceTrack,
    Program,
    SpeechTrack,
    load_prompt,
    transcripts,
)
from emostream.server.whip_client import WhipError, WhipPublisher

REJOIN_AFTER_S = 5.0
"""How long a planned network drop lasts before the same participant comes back."""
REPLY_LIMIT = 64 * 1024 * 1024
"""Longest reply line: a 10-minute Account (loop lag every 0.1 s, RTP every second) is ~200 KB, over
asyncio's 64 KiB default."""


@dataclass
class Account:
    """What one participant said and how its call went (wall-clock seconds)."""

    spoken: list[Spoken]
    log: list[tuple[float, str]]
    """Connection states, planned drops, unplanned losses of the call."""
    rtp: list[tuple[float, str, int, int]]
    """(wall second, kind, packets sent, packets the server reported lost), from RTCP receiver reports."""
    loop_lag_ms: list[float]
    errors: list[str]


@dataclass
class Participant:
    """A WHIP publisher that speaks a looped Program and shows a moving face."""

    name: str
    program: Program
    portrait: Path
    url: str
    token: str
    fps: float = 15.0
    tracks: list[SpeechTrack] = field(default_factory=list)
    pub: WhipPublisher | None = None
    log: list[tuple[float, str]] = field(default_factory=list)
    rtp: list[tuple[float, str, int, int]] = field(default_factory=list)
    rejoining: asyncio.Task[None] | None = None

    async def join(self, timeout_s: float = 60) -> None:
        """A new WHIP session (a 409/429 while the server still closes the old one is retried)."""
        deadline = time.monotonic() + timeout_s
        while True:
            speech = SpeechTrack(self.program, loop=True, encoded=True)
            face = FaceTrack(self.portrait, self.fps, encoded=True)
            pub = WhipPublisher(self.url, self.token, [speech, face])
            try:
                await pub.start()
            except WhipError as exc:
                await pub.stop()  # its HTTP session
                if exc.status not in (409, 429) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
                continue
            self.tracks.append(speech)
            self.pub = pub
            pub.pc.on(
                "connectionstatechange", lambda pc=pub.pc: self.log.append((time.time(), pc.connectionState))
            )
            return

    async def rejoin(self) -> None:
        try:
            await self.drop(planned=False)
            await self.join()
        finally:
            self.rejoining = None

    async def poll_rtp(self) -> None:
        if self.pub is None or self.pub.pc is None or self.pub.pc.connectionState != "connected":
            return
        sent: dict[str, int] = {}
        lost: dict[str, int] = {}
        for st in (await self.pub.pc.getStats()).values():
            if st.type == "outbound-rtp":
                sent[st.kind] = st.packetsSent
            elif st.type == "remote-inbound-rtp":
                lost[st.kind] = st.packetsLost
        now = time.time()
        for kind, n in sent.items():
            self.rtp.append((now, kind, n, lost.get(kind, 0)))

    def lost_call(self) -> bool:
        """Whether the call ended without this participant leaving (what a person would notice)."""
        return self.pub is not None and self.pub.pc.connectionState in ("failed", "closed")

    async def drop(self, planned: bool = True) -> None:
        """The network goes: the peer connection closes without a WHIP DELETE."""
        if planned:
            self.log.append((time.time(), "dropped (planned)"))
        if self.pub is not None:
            if self.pub.pc is not None:
                await self.pub.pc.close()
            if self.pub._http is not None:
                await self.pub._http.close()
            self.pub = None

    async def leave(self) -> None:
        if self.pub is not None:
            with contextlib.suppress(Exception):
                await self.pub.stop()
            self.pub = None

    def spoken(self) -> list[Spoken]:
        return [Spoken(self.name, p.name, p.text, t, lag) for tr in self.tracks for p, t, lag in tr.spoken()]

    async def watch(self) -> None:
        """Every second: RTP counters, and a redial when the call ended unasked (logged)."""
        while True:
            with contextlib.suppress(Exception):
                await self.poll_rtp()
            if self.lost_call() and self.rejoining is None:
                self.log.append((time.time(), "call lost (unplanned): rejoining"))
                self.rejoining = asyncio.create_task(self.rejoin())
            await asyncio.sleep(1.0)


def program_for(index: int, pause_s: float) -> Program:
    """Participant ``index``'s prompts: the [call] set rotated by ``index``, lead staggered."""
    texts = transcripts()
    prompts = [load_prompt(n, texts) for n in DEFAULT_PROMPTS]
    k = index % len(prompts)
    return Program(prompts[k:] + prompts[:k], pause_s=pause_s, lead_s=1.0 + 0.37 * index)


async def _loop_lag(out: list[float], every_s: float = 0.1) -> None:
    """How late this process's event loop wakes: a lag near aioice's consent timeout would make the
    *bench* drop calls, not the server."""
    while True:
        t = time.monotonic()
        await asyncio.sleep(every_s)
        out.append((time.monotonic() - t - every_s) * 1000)


def _reply(obj: object) -> None:
    sys.stdout.buffer.write(msgspec.json.encode(obj) + b"\n")
    sys.stdout.buffer.flush()


async def _serve(p: Participant) -> Account:
    errors: list[str] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda _, ctx: errors.append(str(ctx.get("exception") or ctx["message"]))
    )
    lag: list[float] = []
    background = [asyncio.create_task(_loop_lag(lag))]
    await p.join()
    _reply({"joined": time.time()})
    background.append(asyncio.create_task(p.watch()))
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).strip():
        if line == b"drop":
            if p.rejoining is not None:
                await p.rejoining
            await p.drop()
            await asyncio.sleep(REJOIN_AFTER_S)
            await p.join()
            _reply({"joined": time.time()})
        elif line == b"leave":
            break
    for t in background:
        t.cancel()
    if p.rejoining is not None:
        p.rejoining.cancel()
    await p.leave()
    return Account(p.spoken(), p.log, p.rtp, lag, errors)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emostream.bench.soak_participant")
    ap.add_argument("--url", required=True, help="the WHIP endpoint")
    ap.add_argument("--name", required=True)
    ap.add_argument("--index", type=int, required=True, help="rotates the prompts, staggers the lead")
    ap.add_argument("--portrait", required=True)
    ap.add_argument("--pause", type=float, default=1.5)
    ap.add_argument("--fps", type=float, default=15.0)
    args = ap.parse_args(argv)
    logging.basicConfig(format=f"%(asctime)s {args.name} %(name)s %(levelname)s %(message)s")
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(logging.INFO)
    token = sys.stdin.readline().strip()  # not on the command line, where `ps` would show it
    p = Participant(
        args.name, program_for(args.index, args.pause), Path(args.portrait), args.url, token, args.fps
    )
    _reply(asyncio.run(_serve(p)))
    return 0


class ParticipantProc:
    """The soak's handle on one participant process (same verbs as :class:`Participant`)."""

    def __init__(self, name: str, index: int, portrait: Path, url: str, pause_s: float, fps: float) -> None:
        self.name, self.index, self.portrait, self.url = name, index, portrait, url
        self.pause_s, self.fps = pause_s, fps
        self.proc: asyncio.subprocess.Process | None = None
        self.account: Account | None = None

    async def join(self, room: str, log: Path) -> None:
        cmd = [sys.executable, "-m", "emostream.bench.soak_participant", "--url", self.url]
        cmd += ["--name", self.name, "--index", str(self.index), "--portrait", str(self.portrait)]
        cmd += ["--pause", str(self.pause_s), "--fps", str(self.fps)]
        with log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=REPLY_LIMIT,
            )
        await self._send(publish_token(room, self.name))
        await self._expect("joined")

    async def drop(self) -> None:
        """The planned network drop: gone for :data:`REJOIN_AFTER_S`, then back (returns when back)."""
        await self._send("drop")
        await self._expect("joined")

    async def leave(self) -> Account:
        await self._send("leave")
        self.account = msgspec.json.decode(await self._line(), type=Account)
        assert self.proc is not None
        await self.proc.wait()
        return self.account

    async def _send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def _line(self) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"participant {self.name} exited ({await self.proc.wait()}): see bench.log")
        return line

    async def _expect(self, key: str) -> None:
        reply = msgspec.json.decode(await self._line())
        if key not in reply:
            raise RuntimeError(f"participant {self.name}: expected {key!r}, got {reply!r}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
