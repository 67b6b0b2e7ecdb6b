"""`emostream bench asr`: WER, real-time factor and end-of-speech -> transcript latency per Whisper model.

N MELD utterances are spoken by espeak-ng at 150 wpm, one voice per speaker from ``BENCH_VOICES``
(chosen on train lines with `emostream bench voices`), framed by silence, and run through
the live speech path: segmenter (Silero VAD, pause partials) -> blobs on the in-memory bus -> the ASR
stage's handler. Latency is measured the way a call sees it: the segmenter declares end of speech after
the hangover (``eos_at``), and the clock stops when the Transcript exists. The hangover after the final
pause partial runs in real time, so speculative work overlaps it exactly as it would live; earlier
pause partials of an utterance are awaited first (assumes the ASR is idle when the last pause begins:
one speaker, no backlog). Each utterance is also transcribed fresh after end of speech (what latency
would be without early partials). WER uses a small normalizer (lowercase, no punctuation, MELD's
mis-decoded quotes fixed, fillers dropped, a few spellings unified); it is also reported per voice.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from emostream.bench.speech_data import (
    BENCH_VOICES,
    BENCH_WPM,
    fix_text,
    meld_rows,
    normalize,
    speak,
)
from emostream.config import AsrSettings, Settings, VadSettings
from emostream.errors import UserError
from emostream.evaluation.scores import edit_distance
from emostream.ingest.audio import SAMPLE_RATE, Audio

HELP = "ASR: WER, RTF and end-of-speech -> transcript latency on MELD lines spoken by espeak-ng."

MODELS = {"tiny.en": "whisper-tiny.en", "base": "whisper-base"}
DEFAULT_CSV = "tests/fixtures/meld/dev_sample.csv"
MAX_LATENCY_S = 8.0
"""Latency percentiles cover utterances up to this long (the target's scope)."""

__all__ = ["edit_distance", "fix_text", "normalize", "speak"]


@dataclass
class Line:
    speaker: str
    text: str
    voice: str
    audio: Audio


def load_lines(
    path: str | Path, n: int, voices: tuple[str, ...] = BENCH_VOICES, wpm: int = BENCH_WPM
) -> list[Line]:
    """The first ``n`` MELD rows with words, spoken with one voice per speaker."""
    rows = meld_rows(path)
    by_speaker: dict[str, str] = {}
    out: list[Line] = []
    for r in rows[:n]:
        voice = by_speaker.setdefault(r["Speaker"], voices[len(by_speaker) % len(voices)])
        text = fix_text(r["Utterance"])
        out.append(Line(r["Speaker"], text, voice, speak(text, voice, wpm)))
    return out


# ----------------------------------------------------------------------------------------- the run
@dataclass
class Result:
    model: str
    voice: str
    text: str
    hyp: str
    seconds: float
    errors: int
    words: int
    eos_to_text_s: float
    fresh_s: float
    compute_s: float
    speculative: bool
    utterances: int


async def run_line(
    stage: object, line: Line, settings: Settings, fresh: bool, index: int = 0, realtime: bool = False
) -> Result:
    """One utterance through segmenter -> bus blobs -> ASR handler, with the hangover in real time."""
    from emostream.bus.memory import MemoryBus
    from emostream.ingest.participant import SpeechIngest
    from emostream.runtime.stage import StageContext
    from emostream.schema import PartialAudio, Transcript, Utterance
    from emostream.workers.asr import AsrStage

    assert isinstance(stage, AsrStage)
    bus = MemoryBus()
    vad = settings.vad
    ctx = StageContext(bus=bus, settings=settings, stage="asr", consumer="bench")
    silence = np.zeros(SAMPLE_RATE // 2, np.float32)
    audio = np.concatenate([silence, line.audio, silence, silence, silence])
    ingest = SpeechIngest(bus, settings, f"bench-{index}", line.speaker, t0=0.0)
    step = int(0.02 * SAMPLE_RATE)
    hyps: list[str] = []
    latencies: list[float] = []
    fresh_s: list[float] = []
    compute = 0.0
    spec = False
    n_utt = 0
    wait_s = max(0.0, (vad.hangover_ms - max(vad.tail_ms, vad.pause_partial_ms)) / 1000)
    pending: list[asyncio.Future[object]] = []
    paused_at = time.perf_counter()
    started = time.perf_counter()
    for i in range(0, audio.size, step):
        if realtime:  # the whole clip at the pace of a live call: nothing assumed about the ASR
            ahead = started + i / SAMPLE_RATE - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
        for msg in await ingest.push_audio(audio[i : i + step]):
            if isinstance(msg, PartialAudio):
                if not realtime:
                    await asyncio.gather(*pending, return_exceptions=True)  # ASR idle at this pause
                await stage.handle(msg, ctx)
                spec_entry = stage._spec.get(msg.key)
                pending = [spec_entry[1]] if spec_entry else []  # type: ignore[list-item]
                paused_at = time.perf_counter()
            elif isinstance(msg, Utterance):
                # the hangover after the last pause partial runs in real time
                left = wait_s - (time.perf_counter() - paused_at) if pending and not realtime else 0.0
                if left > 0:
                    await asyncio.sleep(left)
                t0 = time.perf_counter()
                emits = await stage.handle(msg, ctx)
                latencies.append(time.perf_counter() - t0)
                transcript = emits[0].message
                assert isinstance(transcript, Transcript)
                hyps.append(transcript.text)
                spec = spec or bool(pending)
                n_utt += 1
                entry = pending[0] if pending else None
                if entry is not None and entry.done() and not entry.cancelled():
                    compute += entry.result().compute_s  # type: ignore[attr-defined]
                pending = []
                if fresh:
                    blob = await bus.get_blob(msg.audio)
                    assert blob is not None
                    assert stage.scheduler is not None
                    t1 = time.perf_counter()
                    r = await stage.scheduler.submit(np.frombuffer(blob, np.float32), final=True)
                    fresh_s.append(time.perf_counter() - t1)
                    compute = compute if entry is not None else compute + r.compute_s
    ingest.close()
    await bus.close()
    hyp = " ".join(hyps)
    ref = normalize(line.text)
    return Result(
        model=stage.opts.model,
        voice=line.voice,
        text=line.text,
        hyp=hyp,
        seconds=line.audio.size / SAMPLE_RATE,
        errors=edit_distance(ref, normalize(hyp)),
        words=len(ref),
        eos_to_text_s=max(latencies) if latencies else float("nan"),
        fresh_s=max(fresh_s) if fresh_s else float("nan"),
        compute_s=compute,
        speculative=spec,
        utterances=n_utt,
    )


def summarize(name: str, results: list[Result], vad: VadSettings | None = None) -> dict[str, object]:
    errors = sum(r.errors for r in results)
    words = sum(r.words for r in results)
    audio_s = sum(r.seconds for r in results)
    short = [r for r in results if r.seconds <= MAX_LATENCY_S and r.utterances]
    lat = np.array([r.eos_to_text_s for r in short], dtype=np.float64) * 1000
    fresh = np.array([r.fresh_s for r in short if r.fresh_s == r.fresh_s], dtype=np.float64) * 1000

    def pct(a: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(a, q)), 1) if a.size else None

    hangover = (vad or VadSettings()).hangover_ms
    return {
        "model": name,
        "wer": round(errors / max(1, words), 4),
        "rtf": round(sum(r.compute_s for r in results) / max(audio_s, 1e-9), 4),
        "eos_to_text_p50_ms": pct(lat, 50),
        "eos_to_text_p95_ms": pct(lat, 95),
        "fresh_eos_to_text_p50_ms": pct(fresh, 50),
        "fresh_eos_to_text_p95_ms": pct(fresh, 95),
        "speech_end_to_text_p50_ms": None
        if not lat.size
        else round(float(np.percentile(lat, 50)) + hangover, 1),
        "speculative_share": round(sum(r.speculative for r in short) / max(1, len(short)), 3),
        "wer_by_voice": _by_voice(results),
        "n": len(results),
        "n_latency": len(short),
        "audio_s": round(audio_s, 1),
    }


async def bench_model(
    name: str,
    lines: list[Line],
    settings: Settings,
    fresh: bool,
    progress: object,
    realtime: bool = False,
) -> list[Result]:
    from emostream.workers.asr import AsrStage

    stage = AsrStage(settings)
    await stage.ensure_model()
    assert stage.engine is not None
    stage.engine.transcribe(lines[0].audio)  # warm-up (first call allocates)
    out: list[Result] = []
    try:
        for line in lines:
            out.append(await run_line(stage, line, settings, fresh, len(out), realtime))
            if callable(progress):
                progress()
    finally:
        await stage.close()
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON line per model (else a table)")
    parser.add_argument("--csv", default=DEFAULT_CSV, metavar="FILE", help=f"MELD CSV ({DEFAULT_CSV})")
    parser.add_argument("--n", type=int, default=200, metavar="N", help="utterances (200)")
    parser.add_argument("--models", default="tiny.en,base", help="comma list of tiny.en, base (both)")
    parser.add_argument("--beam-size", type=int, default=None, metavar="B", help="override asr.beam_size")
    parser.add_argument(
        "--min-window", type=float, default=None, metavar="S", help="override asr.min_window_s"
    )
    parser.add_argument(
        "--voices",
        default=",".join(BENCH_VOICES),
        help="espeak-ng voices, one per speaker (chosen by `bench voices` on train lines)",
    )
    parser.add_argument("--wpm", type=int, default=BENCH_WPM, help=f"speaking rate ({BENCH_WPM})")
    parser.add_argument("--no-fresh", action="store_true", help="skip the fresh (no early partials) pass")
    parser.add_argument("--out", metavar="FILE", help="also write per-utterance results as CSV")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="play every clip at live pace (no assumption that the ASR is idle at the last pause; slower)",
    )


def run(args: argparse.Namespace) -> int:
    from emostream.config import load_settings
    from emostream.progress import Steps

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise UserError(f"unknown model {unknown[0]}: pick from {', '.join(MODELS)}")
    loaded = load_settings(getattr(args, "config", None))
    base, vad = loaded.asr, loaded.vad
    voices = tuple(v.strip() for v in args.voices.split(",") if v.strip())
    if not voices:
        raise UserError("--voices is empty: pass espeak-ng voice names, e.g. en+f2,en-us+m6")
    lines = load_lines(args.csv, args.n, voices, args.wpm)
    all_results: list[Result] = []
    for name in names:  # a bar per model on a terminal's stderr; results on stdout after it
        asr = AsrSettings(**{**{f: getattr(base, f) for f in base.__struct_fields__}, "model": MODELS[name]})
        if args.beam_size:
            asr.beam_size = args.beam_size
        if args.min_window:
            asr.min_window_s = args.min_window
        passes0, model0 = _partial_passes(), _model_seconds()
        with Steps(f"bench asr {name}: utterances", len(lines)) as bar:
            results = asyncio.run(
                bench_model(
                    name,
                    lines,
                    msgspec.structs.replace(loaded, asr=asr),
                    not args.no_fresh,
                    bar.advance,
                    args.realtime,
                )
            )
        all_results += results
        summary = summarize(name, results, vad)
        utterances = max(1, sum(r.utterances for r in results))
        summary["partial_passes_per_utterance"] = round((_partial_passes() - passes0) / utterances, 2)
        fresh_s = sum(r.fresh_s for r in results if r.fresh_s == r.fresh_s)
        all_s = _model_seconds() - model0 - fresh_s  # every pass but the "fresh" comparison ones
        summary["rtf_all_passes"] = round(all_s / max(1e-9, sum(r.seconds for r in results)), 4)
        print(json.dumps(summary) if args.json else _table(summary), flush=True)
    if args.out:
        _write(args.out, all_results)
    return 0


def _by_voice(results: list[Result]) -> dict[str, float]:
    """WER per espeak-ng voice: synthetic voices differ a lot in how well Whisper hears them."""
    tally: dict[str, list[int]] = {}
    for r in results:
        t = tally.setdefault(r.voice, [0, 0])
        t[0] += r.errors
        t[1] += r.words
    return {v: round(e / max(1, w), 4) for v, (e, w) in tally.items()}


def _partial_passes() -> float:
    """Speculative ASR passes run so far (the cost side of early partials)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("emostream_asr_partials_total", {"result": "transcribed"}) or 0.0


def _model_seconds() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("emostream_asr_model_seconds_sum") or 0.0


def _table(summary: dict[str, object]) -> str:
    return "  ".join(f"{k}={v}" for k, v in summary.items())


def _write(path: str, results: list[Result]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(list(Result.__dataclass_fields__))
        for r in results:
            w.writerow([getattr(r, f) for f in Result.__dataclass_fields__])
