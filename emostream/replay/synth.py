"""`replay synth`: a MELD-layout folder of real mp4 clips spoken and "acted" from MELD text.

MELD's own clips cannot be had here, yet the replay must exercise the real media path (PyAV decode,
resampling, VAD, ASR, face analysis). So each CSV row becomes ``{split}_splits.../dia{D}_utt{U}.mp4``:
espeak-ng speaks the cleaned text with a voice, pitch and speed fixed per speaker, and the video shows a
face image fixed per speaker (bundled public-domain portraits, mirrored/tinted/on different backgrounds
for more speakers) with a slow head drift. Audio is 48 kHz stereo AAC and video 15 fps H.264, as in
MELD's clips, with a short silence before and after the speech so the VAD sees the utterance end.
The folder also gets ``{split}_sent_emo.csv`` with the chosen rows copied unchanged (defects included).
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from emostream.errors import UserError
from emostream.evaluation.meld import Utterance, read_meld
from emostream.replay.layout import CLIP_DIRS

ASSETS = Path(__file__).parent / "assets"
FACES: tuple[str, ...] = ("astronaut.jpg", "grace_hopper.jpg")
SAMPLE_RATE = 48_000
FPS = 15
SIZE = 320
LEAD_S = 0.3
TAIL_S = 0.7
"""Silence before and after the speech (the tail is longer than the VAD hangover)."""


@dataclass(frozen=True)
class Voice:
    """espeak-ng voice name (with variant), pitch (0-99) and speed (words per minute)."""

    name: str
    pitch: int
    speed: int


@dataclass(frozen=True)
class Look:
    """How a speaker's face appears: which image, mirrored or not, colour tint and background (BGR)."""

    face: str
    mirror: bool
    tint: tuple[float, float, float]
    background: tuple[int, int, int]


VOICES: tuple[Voice, ...] = (
    Voice("en-us", 50, 165),
    Voice("en-us+f3", 70, 170),
    Voice("en-gb", 35, 155),
    Voice("en+f4", 80, 175),
    Voice("en-gb-scotland", 45, 160),
    Voice("en-us+m3", 25, 150),
    Voice("en-029", 55, 165),
    Voice("en-gb-x-rp+f2", 65, 160),
)
LOOKS: tuple[Look, ...] = (
    Look("astronaut.jpg", False, (1.0, 1.0, 1.0), (90, 70, 40)),
    Look("grace_hopper.jpg", False, (1.0, 1.0, 1.0), (40, 80, 40)),
    Look("astronaut.jpg", True, (1.15, 1.0, 0.85), (40, 40, 90)),
    Look("grace_hopper.jpg", True, (0.85, 1.0, 1.15), (80, 80, 80)),
    Look("astronaut.jpg", False, (0.9, 1.1, 1.0), (20, 20, 20)),
    Look("grace_hopper.jpg", False, (1.1, 0.95, 0.95), (120, 90, 60)),
)


@dataclass(frozen=True)
class Cast:
    """Voice and look of one speaker (the same in every dialogue of the folder)."""

    voice: Voice
    look: Look


def clip_folder(split: str) -> str:
    """Folder name MELD.Raw uses for a split's clips."""
    return CLIP_DIRS[split][0]


def speak(text: str, voice: Voice) -> np.ndarray:
    """espeak-ng speech for ``text`` as float32 stereo [2, n] at 48 kHz."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        cmd = ["espeak-ng", "-v", voice.name, "-p", str(voice.pitch), "-s", str(voice.speed)]
        try:
            subprocess.run(
                [*cmd, "-w", wav.name, "--stdin"], input=text.encode(), check=True, capture_output=True
            )
        except FileNotFoundError:
            raise UserError("espeak-ng is not installed: apt-get install espeak-ng (or `make apt`)") from None
        except subprocess.CalledProcessError as exc:
            raise UserError(
                f"espeak-ng failed for voice {voice.name}: {exc.stderr.decode().strip()}"
            ) from None
        return _decode_audio(wav.name)


def _decode_audio(path: str) -> np.ndarray:
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    with av.open(path) as container:
        for frame in container.decode(audio=0):
            chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray() for f in resampler.resample(None))
    if not chunks:
        return np.zeros((2, 0), np.float32)
    return np.concatenate(chunks, axis=1).astype(np.float32)


def face_canvas(look: Look) -> np.ndarray:
    """The speaker's face image (BGR) after mirroring and tint, on its background colour."""
    face = cv2.imread(str(ASSETS / look.face))
    if face is None:
        raise UserError(f"bundled face image {ASSETS / look.face} is missing: reinstall emostream")
    if look.mirror:
        face = face[:, ::-1]
    face = np.clip(face.astype(np.float32) * np.array(look.tint, np.float32), 0, 255).astype(np.uint8)
    canvas = np.empty((SIZE + 32, SIZE + 32, 3), np.uint8)
    canvas[:] = look.background
    side = SIZE - 40
    face = cv2.resize(face, (side, side))
    off = (canvas.shape[0] - side) // 2
    canvas[off : off + side, off : off + side] = face
    return canvas


def write_clip(path: Path, audio: np.ndarray, canvas: np.ndarray) -> float:
    """Mux ``audio`` (padded with silence) and a drifting view of ``canvas`` into an mp4; return seconds."""
    lead, tail = int(LEAD_S * SAMPLE_RATE), int(TAIL_S * SAMPLE_RATE)
    audio = np.pad(audio, ((0, 0), (lead, tail)))
    seconds = audio.shape[1] / SAMPLE_RATE
    tmp = path.with_suffix(".part")
    with av.open(str(tmp), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = SIZE, SIZE, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "26"}
        sound = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        for i in range(max(1, math.ceil(seconds * FPS))):
            t = i / FPS
            dx = int(12 + 10 * math.sin(2 * math.pi * t / 3.0))
            dy = int(12 + 6 * math.sin(2 * math.pi * t / 2.2))
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(canvas[dy : dy + SIZE, dx : dx + SIZE]), format="bgr24"
            )
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        step = 1024
        for start in range(0, audio.shape[1], step):
            chunk = np.ascontiguousarray(audio[:, start : start + step])
            if chunk.shape[1] < step:
                chunk = np.pad(chunk, ((0, 0), (0, step - chunk.shape[1])))
            aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            aframe.sample_rate = SAMPLE_RATE
            aframe.pts = start
            out.mux(sound.encode(aframe))
        out.mux(sound.encode(None))
    tmp.replace(path)
    return seconds


def _copy_rows(src: Path, dst: Path, dialogues: set[int]) -> int:
    """Copy the header and the rows of ``dialogues`` verbatim (mis-decoded text included)."""
    raw = src.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    rows = list(csv.reader(io.StringIO(raw, newline="")))
    header, body = rows[0], rows[1:]
    col = header.index("Dialogue_ID")
    kept = [r for r in body if len(r) > col and r[col].strip().isdigit() and int(r[col]) in dialogues]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(kept)
    dst.write_bytes(buf.getvalue().encode("utf-8", errors="surrogateescape"))
    return len(kept)


def split_of(csv_path: Path) -> str:
    """``dev_sent_emo.csv`` -> ``dev`` (default ``dev`` when the name says nothing)."""
    for split in CLIP_DIRS:
        if csv_path.name.lower().startswith(split):
            return split
    return "dev"


def synth(
    csv_path: str | Path,
    out: str | Path,
    dialogues: int,
    split: str = "",
    workers: int = 2,
    on_clip: Callable[[Utterance], None] | None = None,
) -> dict[str, object]:
    """Build the folder; returns its manifest (also written to ``synth.json``)."""
    csv_path, out = Path(csv_path), Path(out)
    meld = read_meld(csv_path)
    if dialogues < 1:
        raise UserError("--dialogues must be at least 1")
    chosen = list(meld.dialogues)[:dialogues]
    if not chosen:
        raise UserError(f"{csv_path} has no usable rows to synthesize")
    split = split or split_of(csv_path)
    folder = out / clip_folder(split)
    folder.mkdir(parents=True, exist_ok=True)
    rows_copied = _copy_rows(csv_path, out / f"{split}_sent_emo.csv", set(chosen))
    cast: dict[str, Cast] = {}
    for d in chosen:
        for row in meld.dialogues[d]:
            if row.speaker not in cast:
                n = len(cast)
                cast[row.speaker] = Cast(VOICES[n % len(VOICES)], LOOKS[n % len(LOOKS)])
    canvases = {name: face_canvas(c.look) for name, c in cast.items()}
    jobs = [row for d in chosen for row in meld.dialogues[d]]

    def make(row: Utterance) -> float:
        path = folder / f"dia{row.dialogue}_utt{row.index}.mp4"
        seconds = 0.0
        if not path.is_file():
            seconds = write_clip(path, speak(row.text, cast[row.speaker].voice), canvases[row.speaker])
        if on_clip is not None:
            on_clip(row)
        return seconds

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        seconds = sum(pool.map(make, jobs))
    manifest: dict[str, object] = {
        "source_csv": str(csv_path),
        "split": split,
        "dialogues": chosen,
        "clips": len(jobs),
        "rows_copied": rows_copied,
        "seconds_synthesized": round(seconds, 2),
        "cast": {name: asdict(c) for name, c in cast.items()},
    }
    (out / "synth.json").write_text(json.dumps(manifest, indent=2))
    return manifest
