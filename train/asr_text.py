"""`emostream train asr-text`: MELD lines as Whisper hears them, cached once for ASR-noise augmentation.

On a call the text model reads Whisper's output, not the script: lost or invented punctuation, misheard
words, dropped fillers. Each row is spoken by espeak-ng (a voice and rate drawn once per dialogue speaker
from the voice survey's candidates, so a speaker sounds the same through a dialogue) and transcribed by
the runtime's ASR settings; the text trainer then swaps in the transcript for a share of utterances
(``asr_text`` / ``p_asr`` in train/text.py). Run it on *train* only: dev stays the measuring stick.

The cache is JSONL, one line per utterance, appended and flushed in batches, so an interrupted run
resumes where it stopped; ``--shard I/N`` splits the rows so N processes can share the cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np

from emostream.bench.speech_data import fix_text, normalize, speak
from emostream.bench.voices import CANDIDATES
from emostream.errors import UserError
from emostream.evaluation.meld import Utterance, read_meld
from emostream.evaluation.transcripts import load_transcripts
from emostream.ingest.audio import SAMPLE_RATE
from emostream.progress import Steps

SILENCE_S = 0.3
"""Silence around each clip, as the segmenter's pre-roll and tail give Whisper on a call."""
log = logging.getLogger("emostream.train.asr_text")
WPM = (135, 175)
"""Speaking rates drawn per speaker (words per minute): slower and faster than the bench's 150."""


def voice_of(seed: int, dialogue: int, speaker: str) -> tuple[str, int]:
    """The (espeak-ng voice, rate) a dialogue's speaker gets: fixed by ``seed``, dialogue and name."""
    rng = random.Random(f"{seed}/{dialogue}/{speaker}")
    return rng.choice(CANDIDATES), rng.randint(*WPM)


def pending(csv: str | Path, out: Path, shard: int, shards: int) -> list[Utterance]:
    """This shard's utterances with words that the cache does not hold yet (dialogue order)."""
    done = load_transcripts(out) if out.is_file() else {}
    rows = [u for d in read_meld(csv).dialogues.values() for u in d if normalize(u.text)]
    return [u for u in rows if u.dialogue % shards == shard and (u.dialogue, u.index) not in done]


def _speak(u: Utterance, voice: str, wpm: int) -> np.ndarray | None:
    """espeak-ng audio of ``u``; None (logged) when it fails twice, so one line never stops the run."""
    for attempt in (1, 2):
        try:
            return speak(fix_text(u.text), voice, wpm)
        except UserError as exc:
            log.warning("dialogue %d utterance %d, attempt %d: %s", u.dialogue, u.index, attempt, exc)
    return None


def transcribe_rows(
    rows: list[Utterance],
    out: Path,
    seed: int,
    model: str,
    batch: int,
    config: str | None,
    hypotheses: int = 0,
) -> tuple[int, int]:
    """Speak and transcribe ``rows``, appending one JSON line each to ``out``.

    ``hypotheses`` > 0 overrides ``asr.hypotheses`` (the best readings kept per line). Returns (lines
    written, utterances espeak-ng could not speak: left out, so they train on gold text)."""
    import msgspec

    from emostream.config import load_settings
    from emostream.inference.whisper import WhisperEngine, WhisperOptions

    settings = load_settings(config)
    asr = msgspec.structs.replace(
        settings.asr,
        model=model,
        cpu_threads=1,
        word_timestamps=False,
        hypotheses=hypotheses or settings.asr.hypotheses,
    )
    engine = WhisperEngine(WhisperOptions.from_settings(asr), settings)
    pad = np.zeros(int(SAMPLE_RATE * SILENCE_S), np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = failed = 0
    with out.open("a", encoding="utf-8") as fh, Steps("asr-text: utterances", len(rows)) as bar:
        for lo in range(0, len(rows), batch):
            chunk = rows[lo : lo + batch]
            spoken = [(u, *voice_of(seed, u.dialogue, u.speaker)) for u in chunk]
            clips = {u: _speak(u, v, wpm) for u, v, wpm in spoken}
            kept = [(u, v, wpm) for u, v, wpm in spoken if clips[u] is not None]
            failed += len(spoken) - len(kept)
            heard = engine.transcribe_batch([np.concatenate([pad, clips[u], pad]) for u, _, _ in kept])
            for (u, v, wpm), t in zip(kept, heard, strict=True):
                line = {"dialogue": u.dialogue, "utterance": u.index, "voice": v, "wpm": wpm, "text": t.text}
                if t.hypotheses:
                    line["hypotheses"] = [[text, w] for text, w in t.hypotheses]
                fh.write(json.dumps(line) + "\n")
            fh.flush()
            written += len(chunk)
            bar.advance(len(chunk))
            if written % (batch * 50) == 0:
                log.info("%d/%d utterances transcribed", written, len(rows))
    return written, failed


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="emostream train asr-text", description=__doc__.split("\n")[0])
    p.add_argument("--csv", required=True, help="MELD CSV to speak (use train_sent_emo.csv)")
    p.add_argument("--out", required=True, help="JSONL cache (appended; rerun to resume)")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="this process's share of dialogues (0/1)")
    p.add_argument("--model", default="whisper-tiny.en", help="ASR model in the store (whisper-tiny.en)")
    p.add_argument("--seed", type=int, default=1, help="voice draw (1)")
    p.add_argument("--batch", type=int, default=8, help="clips per Whisper pass (8)")
    p.add_argument(
        "--hypotheses", type=int, default=0, help="best readings kept per line (default: asr.hypotheses)"
    )
    p.add_argument("--config", help="emostream settings file (model store location)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        shard, shards = (int(x) for x in args.shard.split("/"))
    except ValueError:
        raise UserError(f"--shard expects I/N (e.g. 0/2), got {args.shard!r}") from None
    if not 0 <= shard < shards:
        raise UserError(f"--shard {args.shard}: I must be in 0..N-1")
    out = Path(args.out)
    rows = pending(args.csv, out, shard, shards)
    t0 = time.perf_counter()
    n, failed = transcribe_rows(
        rows, out, args.seed, args.model, args.batch, args.config, max(0, args.hypotheses)
    )
    seconds = round(time.perf_counter() - t0, 1)
    print(json.dumps({"out": str(out), "written": n, "unspoken": failed, "seconds": seconds}))
    return 0
