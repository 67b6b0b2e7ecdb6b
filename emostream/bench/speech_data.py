"""Speech test data for the ASR bench and tests: espeak-ng speech, and the text normalizer behind WER.

The normalizer is deliberately small: lowercase, no punctuation, MELD's mis-decoded quotes repaired,
fillers (uh, um, hmm) dropped, a few spellings unified (ok/okay, mr/mister, gonna/going to, y'know),
numbers below 21 spelled out. Everything else counts as an error.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from emostream.errors import UserError
from emostream.ingest.audio import Audio, to_16k_mono

BENCH_WPM = 150
"""Speaking rate of the bench's voices: conversational English pace (espeak-ng's own default is 175)."""
BENCH_VOICES = ("en+m6", "en-us+f2", "en-gb-x-rp+m6", "en-gb-x-rp+f2", "en+m5", "en-us+edward")
"""One per speaker in order of appearance. Picked with `emostream bench voices` on MELD *train* lines
(never dev): the four male and two female variants tiny.en understands best at 150 wpm (espeak-ng's
female variants all score worse; docs/speech.md has the survey)."""

_MOJIBAKE = {
    "\u0092": "'",
    "\u0091": "'",
    "\u0093": '"',
    "\u0094": '"',
    "\u0085": " ",
    "\u0097": " ",
    "\u0096": " ",
    "â€™": "'",
    "â€˜": "'",
    "â€œ": '"',
    "â€\x9d": '"',
    "â€¦": " ",
    "â€”": " ",
    "â€“": " ",
    "’": "'",
    "‘": "'",
    "“": '"',
    "”": '"',
    "…": " ",
    "—": " ",
    "–": " ",
}
_FILLERS = {"uh", "um", "umm", "uhh", "hmm", "mm", "mmm", "hm", "er", "ah", "ahh", "huh", "uhm"}
_SPELLING = {
    "ok": "okay",
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
    "yknow": "you know",
    "ya": "you",
    "gotta": "got to",
    "gonna": "going to",
    "wanna": "want to",
    "cause": "because",
    "alright": "all right",
    "til": "until",
    "em": "them",
}
_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()


def fix_text(text: str) -> str:
    """MELD's CSV has Windows-1252 quotes decoded as Latin-1 (and some UTF-8 mojibake): repair them."""
    for bad, good in _MOJIBAKE.items():
        text = text.replace(bad, good)
    return text


def normalize(text: str) -> list[str]:
    """Words for WER: lowercase, no punctuation or fillers, unified spellings, small numbers spelled."""
    text = fix_text(text).lower().replace("'", "")
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    words: list[str] = []
    for w in text.split():
        if w in _FILLERS:
            continue
        if w.isdigit() and int(w) < len(_NUMBERS):
            w = _NUMBERS[int(w)]
        words.extend(_SPELLING.get(w, w).split())
    return words


def speak(text: str, voice: str = "en-us", speed: int = 175) -> Audio:
    """espeak-ng speech of ``text`` at ``speed`` words per minute, as 16 kHz mono float32."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise UserError("espeak-ng is not installed: `apt-get install espeak-ng` (or `make apt`)")
    cmd = [exe, "-v", voice, "-s", str(speed), "--stdout", "--stdin"]  # stdin: "-leg?" is text, not a flag
    proc = subprocess.run(cmd, input=text.encode(), capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        raise UserError(f"espeak-ng failed for voice {voice}: {proc.stderr.decode().strip()[:200]}")
    with wave.open(io.BytesIO(proc.stdout)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        rate = w.getframerate()
    return to_16k_mono(pcm, rate)


def meld_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of a MELD ``*_sent_emo.csv`` whose Utterance has words (what the speech benches speak)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"MELD CSV {p} not found: pass --csv PATH to a MELD *_sent_emo.csv")
    with p.open(encoding="utf-8", errors="replace", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if normalize(r.get("Utterance", ""))]
    if not rows:
        raise UserError(f"{p} has no rows with an Utterance column: pass a MELD *_sent_emo.csv")
    return rows
