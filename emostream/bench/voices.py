"""`emostream bench voices`: how well Whisper understands each espeak-ng voice, to pick the ASR bench's.

Every candidate voice speaks the same N MELD lines; each clip gets the segmenter's pre-roll and tail
of silence and one Whisper pass (no segmenter, no bus: this ranks voices, it does not time anything).
Run it on the *train* split: the voices `bench asr` uses on dev (``BENCH_VOICES``) were chosen this
way, so the dev figure is not tuned on dev.

espeak-ng ignores a variant it cannot attach (``en-gb+f2`` sounds exactly like ``en-gb``; ``en+f2``
works), so voices whose audio duplicates an earlier candidate's are reported as such and skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import numpy as np

from emostream.bench.speech_data import BENCH_WPM, fix_text, meld_rows, normalize, speak
from emostream.evaluation.scores import edit_distance
from emostream.ingest.audio import SAMPLE_RATE
from emostream.progress import Steps

HELP = "WER per espeak-ng voice on MELD lines (how the ASR bench's voices were chosen; use train lines)."

CANDIDATES = tuple(
    [f"en-us+{v}" for v in ("m1", "m2", "m3", "m5", "m6", "m7", "m8", "f2", "f3", "f5", "edward", "klatt2")]
    + [f"en+{v}" for v in ("m1", "m2", "m5", "m6", "m8", "f2", "f3", "f4", "f5", "edward")]
    + ["en-gb-x-rp+m6", "en-gb-x-rp+f2", "en-us", "en", "en-gb-x-rp", "en-us-nyc", "en-029"]
)
"""English voices and variants surveyed; pass ``--voices`` for others (``espeak-ng --voices=en``)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv", required=True, metavar="FILE", help="MELD CSV (use train_sent_emo.csv)")
    parser.add_argument("--n", type=int, default=80, metavar="N", help="lines per voice (80)")
    parser.add_argument("--skip", type=int, default=0, metavar="K", help="start after K lines (0)")
    parser.add_argument("--voices", default=",".join(CANDIDATES), help="comma list of espeak-ng voices")
    parser.add_argument("--wpm", type=int, default=BENCH_WPM, help=f"speaking rate ({BENCH_WPM})")
    parser.add_argument("--model", default="whisper-tiny.en", help="model store name (whisper-tiny.en)")
    parser.add_argument("--json", action="store_true", help="one JSON line per voice (else a table)")


def run(args: argparse.Namespace) -> int:
    import msgspec

    from emostream.config import load_settings
    from emostream.inference.whisper import WhisperEngine, WhisperOptions

    texts = _texts(args.csv, args.skip, args.n)
    settings = load_settings(getattr(args, "config", None))
    asr = msgspec.structs.replace(settings.asr, model=args.model)
    engine = WhisperEngine.shared(WhisperOptions.from_settings(asr), settings)
    vad = settings.vad
    head = np.zeros(SAMPLE_RATE * vad.preroll_ms // 1000, np.float32)
    tail = np.zeros(SAMPLE_RATE * vad.tail_ms // 1000, np.float32)
    seen: dict[str, str] = {}
    rows: list[dict[str, object]] = []
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    with Steps("bench voices: clips", len(voices) * len(texts)) as bar:
        for voice in voices:
            bar.update(note=voice)
            clips = [speak(t, voice, args.wpm) for t in texts]
            digest = hashlib.sha1(b"".join(c.tobytes() for c in clips)).hexdigest()
            if digest in seen:
                row: dict[str, object] = {"voice": voice, "same_audio_as": seen[digest]}
                bar.advance(len(texts))
            else:
                seen[digest] = voice
                errors = words = 0
                for text, clip in zip(texts, clips, strict=True):
                    ref = normalize(text)
                    hyp = engine.transcribe(np.concatenate([head, clip, tail])).text
                    errors += edit_distance(ref, normalize(hyp))
                    words += len(ref)
                    bar.advance()
                row = {
                    "voice": voice,
                    "wpm": args.wpm,
                    "wer": round(errors / max(1, words), 4),
                    "words": words,
                }
            rows.append(row)
            print(json.dumps(row) if args.json else "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    ranked = sorted((r for r in rows if "wer" in r), key=lambda r: float(r["wer"]))  # type: ignore[arg-type]
    if ranked and not args.json:
        print("best: " + ", ".join(f"{r['voice']} {r['wer']}" for r in ranked[:8]), file=sys.stderr)
    return 0


def _texts(path: str, skip: int, n: int) -> list[str]:
    return [fix_text(r["Utterance"]) for r in meld_rows(path)][skip : skip + n]
