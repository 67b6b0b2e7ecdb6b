"""Real recorded speech for tests, demos and benches: Debian's Asterisk core prompts (studio English,
16 kHz G.722, CC-BY-SA-3.0, with their texts). Installed by `make` (apt ``asterisk-core-sounds-en-g722``
and ``asterisk-core-sounds-en``), converted with ffmpeg at run time, never committed.

:func:`two_speaker_recording` builds one WAV per speaker of several prompts separated by pauses, with
the texts in speaking order: the shared fixture of `analyze`, the call bench and the demo.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emostream.errors import UserError

SOUNDS = Path("/usr/share/asterisk/sounds")
TEXTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
INSTALL = "apt-get install asterisk-core-sounds-en-g722 asterisk-core-sounds-en ffmpeg (or `make install`)"
RATE = 16000


@dataclass(frozen=True)
class Track:
    """One speaker's recording and the prompts in it, in order."""

    path: Path
    speaker: str
    texts: list[str]


def prompt_texts() -> dict[str, str]:
    """Prompt name -> its text, from core-sounds-en.txt."""
    if not TEXTS.is_file():
        raise UserError(f"{TEXTS} is missing: {INSTALL}")
    out: dict[str, str] = {}
    for line in gzip.open(TEXTS, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        if sep and not line.startswith(";") and "/" not in name:
            out[name.strip()] = text.strip()
    return out


def g722_file(name: str) -> Path:
    hits = sorted(SOUNDS.glob(f"*/{name}.g722"))
    if not hits:
        raise UserError(f"prompt {name}.g722 not found under {SOUNDS}: {INSTALL}")
    return hits[0]


def speech_prompts(count: int) -> list[tuple[str, str]]:
    """``count`` plain-word prompts (4-14 words, no digits, no [sound] notes), a fixed choice."""
    good = [
        (name, text)
        for name, text in sorted(prompt_texts().items())
        if re.fullmatch(r"[A-Za-z ,.'?!-]+", text) and 4 <= len(text.split()) <= 14
    ]
    if len(good) < count:
        raise UserError(f"only {len(good)} usable prompts in {TEXTS}: reinstall asterisk-core-sounds-en")
    step = len(good) // count
    return [good[i * step] for i in range(count)]


def decode(path: Path) -> np.ndarray:
    """G.722 -> 16 kHz mono float32 with ffmpeg."""
    if shutil.which("ffmpeg") is None:
        raise UserError(f"ffmpeg is not installed: {INSTALL}")
    out = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "g722",
            "-i",
            str(path),
            "-ar",
            str(RATE),
            "-ac",
            "1",
            "-f",
            "s16le",
            "-",
        ],
        capture_output=True,
        check=False,
    )
    if out.returncode != 0:
        raise UserError(f"ffmpeg could not decode {path}: {out.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(out.stdout, dtype=np.int16).astype(np.float32) / 32768.0


def write_wav(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())


def two_speaker_recording(out_dir: Path, per_speaker: int = 4, pause_s: float = 1.2) -> list[Track]:
    """Two WAVs (``alice.wav``, ``bob.wav``) of ``per_speaker`` prompts each with ``pause_s`` between."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts = speech_prompts(2 * per_speaker)
    pause = np.zeros(int(pause_s * RATE), dtype=np.float32)
    tracks = []
    for k, speaker in enumerate(("alice", "bob")):
        mine = prompts[k::2]
        parts = [pause]
        for name, _ in mine:
            parts += [decode(g722_file(name)), pause]
        path = out_dir / f"{speaker}.wav"
        write_wav(path, np.concatenate(parts))
        tracks.append(Track(path, speaker, [t for _, t in mine]))
    return tracks
