"""What the call bench and tests publish: real recorded speech with pauses, and a face, at wall-clock pace.

Speech: Asterisk's English prompts (Debian ``asterisk-core-sounds-en-g722``, CC-BY-SA-3.0, installed by
``make``; never committed), decoded from G.722 with PyAV, their transcripts from the package's
``core-sounds-en.txt``. A :class:`Program` is prompts separated by pauses; for each prompt it knows the
sample of its **last voiced** 10 ms (energy above a fraction of the prompt's peak), and
:class:`SpeechTrack` sends it at wall-clock pace, so the wall time of that sample is known exactly:
the latency origin of ``emostream bench call``. Video: :class:`FaceTrack` repeats a bundled portrait.
"""

from __future__ import annotations

import asyncio
import fractions
import gzip
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from emostream.errors import UserError

SOUNDS = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
PORTRAITS = Path(__file__).resolve().parent.parent / "replay" / "assets"
RATE = 48_000
PTIME = 0.02
DEFAULT_PROMPTS = (
    "conf-onlyperson",
    "agent-pass",
    "conf-getpin",
    "vm-rec-name",
    "queue-thankyou",
    "conf-unmuted",
)
"""One sentence each, no pause inside longer than the VAD hangover (one utterance per prompt)."""


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    audio: npt.NDArray[np.int16]
    """48 kHz mono."""
    voiced_end: int
    """Sample index just after the last voiced 10 ms."""


def transcripts(path: Path = TRANSCRIPTS) -> dict[str, str]:
    if not path.exists():
        raise UserError(f"{path} not found: install asterisk-core-sounds-en (make apt)")
    out = {}
    for line in gzip.open(path, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        if sep and not line.startswith(";"):
            out[name.strip()] = text.strip()
    return out


def load_prompt(name: str, texts: dict[str, str] | None = None, sounds: Path = SOUNDS) -> Prompt:
    path = sounds / f"{name}.g722"
    if not path.exists():
        raise UserError(f"{path} not found: install asterisk-core-sounds-en-g722 (make apt)")
    chunks = []
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with av.open(str(path), format="g722") as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks).astype(np.int16)
    text = (texts if texts is not None else transcripts()).get(name, "")
    return Prompt(name, text, audio, voiced_end(audio))


def voiced_end(audio: npt.NDArray[np.int16], rel: float = 0.05) -> int:
    """End of the last 10 ms whose RMS is above ``rel`` of the loudest 10 ms."""
    hop = RATE // 100
    n = audio.size // hop
    rms = np.sqrt(np.mean(audio[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))
    loud = np.nonzero(rms >= rel * float(rms.max(initial=1.0)))[0]
    return int((loud[-1] + 1) * hop) if loud.size else audio.size


@dataclass
class Program:
    """Prompts back to back with ``pause_s`` of silence between (and ``lead_s`` before the first)."""

    prompts: list[Prompt]
    pause_s: float = 1.5
    lead_s: float = 1.0

    def __post_init__(self) -> None:
        pieces: list[npt.NDArray[np.int16]] = [np.zeros(int(self.lead_s * RATE), np.int16)]
        self.offsets: list[int] = []
        at = pieces[0].size
        for p in self.prompts:
            self.offsets.append(at)
            pieces += [p.audio, np.zeros(int(self.pause_s * RATE), np.int16)]
            at += p.audio.size + int(self.pause_s * RATE)
        frame = int(RATE * PTIME)
        pieces.append(np.zeros(-at % frame, np.int16))  # whole 20 ms frames: a loop is whole packets
        self.audio = np.concatenate(pieces)

    @property
    def duration(self) -> float:
        return self.audio.size / RATE

    def voiced_ends(self) -> list[float]:
        """Seconds from the program start to each prompt's last voiced sample."""
        return [(o + p.voiced_end) / RATE for o, p in zip(self.offsets, self.prompts, strict=True)]


def _tracks_base() -> type:
    from aiortc.mediastreams import MediaStreamTrack

    return MediaStreamTrack


class SpeechTrack(_tracks_base()):  # type: ignore[misc]
    """Audio track playing a Program in 20 ms frames at wall-clock pace, then silence (or, with
    ``loop``, the Program again and again: a soak's endless talk from one Program's memory)."""

    kind = "audio"

    def __init__(self, program: Program, loop: bool = False, encoded: bool = False) -> None:
        super().__init__()
        self.program = program
        self.loop = loop
        self.started: float | None = None
        """Wall-clock second of the program's sample 0 (set by the first recv)."""
        self._sent = 0
        self._sent_at: list[float] = []
        """Wall-clock second each 20 ms frame was actually handed to the encoder."""
        self._packets = opus_packets(program.audio) if encoded else None
        """With ``encoded``, the program's Opus packets, encoded once here: the benches' publishers
        then send what a remote client's encoder would, without spending the server's CPU on it."""

    async def recv(self) -> av.AudioFrame | av.Packet:
        n = int(RATE * PTIME)
        if self.started is None:
            self.started = time.time()
        else:
            delay = self.started + self._sent / RATE - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        if self._packets is not None:
            return self._next_packet(n)
        if self.loop:
            chunk = np.take(self.program.audio, np.arange(self._sent, self._sent + n), mode="wrap")
        else:
            chunk = self.program.audio[self._sent : self._sent + n]
        if chunk.size < n:
            chunk = np.concatenate([chunk, np.zeros(n - chunk.size, np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, RATE)
        self._sent += n
        self._sent_at.append(time.time())
        return frame

    def _next_packet(self, n: int) -> av.Packet:
        assert self._packets is not None
        k = self._sent // n
        data = self._packets[k % len(self._packets)] if self.loop or k < len(self._packets) else SILENT_OPUS
        packet = av.Packet(data)
        packet.pts = self._sent
        packet.time_base = fractions.Fraction(1, RATE)
        self._sent += n
        self._sent_at.append(time.time())
        return packet

    @property
    def finished(self) -> bool:
        """Whether the whole program has been handed to the encoder."""
        return self._sent >= self.program.audio.size

    def voiced_end_walls(self) -> list[float]:
        start = self.started or 0.0
        return [start + t for t in self.program.voiced_ends()]

    def send_lags(self) -> list[float]:
        """Per prompt, seconds its last voiced frame left later than its wall-clock slot (the publisher's
        own lag on a busy machine: a real microphone is never late)."""
        start = self.started or 0.0
        n = int(RATE * PTIME)
        out = []
        for t in self.program.voiced_ends():
            i = int(t * RATE) // n
            out.append(self._sent_at[i] - (start + i * n / RATE) if i < len(self._sent_at) else 0.0)
        return out

    def spoken(self) -> list[tuple[Prompt, float, float]]:
        """Each prompt whose last voiced sample has been sent so far (looping: every pass over the
        Program): its wall-clock slot on the sender's timeline (what the server's pts-following clock
        stamps it with) and how late its frame actually left (a publisher starved of CPU sends late, and
        the speaker's wait starts when the speech really ends, not when it was scheduled)."""
        if self.started is None:
            return []
        sent_s, dur, n = self._sent / RATE, self.program.duration, int(RATE * PTIME)
        out = []
        for k in range(int(sent_s // dur) + 1):
            for p, t in zip(self.program.prompts, self.program.voiced_ends(), strict=True):
                if k * dur + t <= sent_s:
                    slot = self.started + k * dur + t
                    i = min(int((k * dur + t) * RATE) // n, len(self._sent_at) - 1)
                    out.append((p, slot, self._sent_at[i] - slot))
        return out


class FaceTrack(_tracks_base()):  # type: ignore[misc]
    """Video track of a portrait at ``fps`` (a face for the visual branch) that sways a few pixels, as
    a head does: every frame differs, so nothing downstream can treat the video as a still (a face
    stage memo hit on a repeated frame would make a static bench cheaper than a real call)."""

    kind = "video"

    def __init__(
        self, image: str | Path = PORTRAITS / "astronaut.jpg", fps: float = 15.0, encoded: bool = False
    ) -> None:
        super().__init__()
        import cv2

        bgr = cv2.imread(str(image))
        if bgr is None:
            raise UserError(f"cannot read portrait {image}")
        h, w = bgr.shape[:2]
        bgr = bgr[: h - h % 2, : w - w % 2]
        self._img: npt.NDArray[np.uint8] = np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.uint8)
        self.fps = fps
        self._start: float | None = None
        self._n = 0
        self._loop = max(1, round(fps * LOOP_S))
        self._packets = (
            vp8_loop([self.image(i) for i in range(self._loop)], round(fps * GOP_S)) if encoded else None
        )
        """With ``encoded``: the ``LOOP_S`` of video, VP8-encoded once and sent in a loop."""

    def image(self, n: int) -> npt.NDArray[np.uint8]:
        """Frame ``n``: the portrait moved by up to 3 px on a slow ellipse (period ``LOOP_S``), at
        sub-pixel steps, so no two frames of a period are alike."""
        import cv2

        t = 2 * np.pi * (n % self._loop) / self._loop
        h, w = self._img.shape[:2]
        move = np.array([[1, 0, 3 * np.sin(t)], [0, 1, 2 * np.cos(t)]], np.float32)
        out = cv2.warpAffine(self._img, move, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(out)

    async def recv(self) -> av.VideoFrame | av.Packet:
        if self._start is None:
            self._start = time.time()
        else:
            delay = self._start + self._n / self.fps - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        if self._packets is not None:
            packet = av.Packet(self._packets[self._n % len(self._packets)])
            packet.pts = int(self._n * 90_000 / self.fps)
            packet.time_base = fractions.Fraction(1, 90_000)
            self._n += 1
            return packet
        frame = av.VideoFrame.from_ndarray(self.image(self._n), format="rgb24")
        frame.pts = int(self._n * 90_000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90_000)
        self._n += 1
        return frame


GOP_S = 2.0
"""Seconds between key frames of a pre-encoded face video (a receiver that lost one waits this long)."""
LOOP_S = 20.0
"""Seconds of distinct face video before it repeats."""
SILENT_OPUS = b"\xf8\xff\xfe"
"""One 20 ms Opus packet of digital silence (CELT, TOC 0xf8 + the silence frame)."""


def opus_packets(audio: npt.NDArray[np.int16]) -> list[bytes]:
    """``audio`` (48 kHz mono, whole 20 ms frames) as 20 ms Opus packets, encoded the way aiortc's own
    sender does (stereo, 96 kbit/s, ``voip``), one packet per frame."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = 96_000
    codec.format = "s16"
    codec.layout = "stereo"
    codec.sample_rate = RATE
    codec.time_base = fractions.Fraction(1, RATE)
    codec.options = {"application": "voip"}
    n = int(RATE * PTIME)
    stereo = np.repeat(audio.reshape(-1, 1), 2, axis=1).reshape(-1)
    out: list[bytes] = []
    for i in range(audio.size // n):
        frame = av.AudioFrame.from_ndarray(
            stereo[2 * i * n : 2 * (i + 1) * n].reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = RATE
        frame.pts = i * n
        frame.time_base = fractions.Fraction(1, RATE)
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    frames = audio.size // n
    return (out + [SILENT_OPUS] * frames)[:frames]


def vp8_loop(images: list[npt.NDArray[np.uint8]], gop: int) -> list[bytes]:
    """``images`` (RGB) as VP8 frames, a key frame every ``gop``: aiortc's real-time encoder settings
    (500 kbit/s CBR), so the receiver decodes what a live aiortc client would send."""
    h, w = images[0].shape[:2]
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = w, h
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = 500_000
    codec.gop_size = max(1, gop)
    codec.time_base = fractions.Fraction(1, 90_000)
    codec.options = {"deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0", "static-thresh": "1"}
    out: list[bytes] = []
    for i, rgb in enumerate(images):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * 6000
        frame.time_base = fractions.Fraction(1, 90_000)
        if i % max(1, gop) == 0:
            frame.pict_type = av.video.frame.PictureType.I
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out[: len(images)]
