"""Whisper on CTranslate2 (faster-whisper's model, tokenizer and features) tuned for short utterances.

Stock faster-whisper pads every call to Whisper's 30 s window, so a 2 s utterance costs as much encoder
time as 30 s of audio (~0.2-0.5 s with tiny.en on 2 CPU cores). Here the audio is zero-padded only to
``min_window_s`` (default 10 s; CTranslate2 accepts encoder inputs shorter than 3000 frames): ~3x less
encoder work, same WER on our bench. Shorter windows make tiny models loop on short inputs, so the
window stays >= 10 s, the token budget is capped by the audio length, and a looping or truncated output
is redone with the stock 30 s window. Audio longer than 29 s goes through stock ``transcribe``.

One :class:`WhisperEngine` per process and model (``WhisperEngine.shared``), shared by all rooms. Calls
from several threads run in parallel up to ``workers`` (CTranslate2 replicas), more wait; ASR's
scheduler (emostream/workers/asr.py) decides what runs.
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emostream.config import AsrSettings, Settings
from emostream.errors import UserError
from emostream.ingest.audio import SAMPLE_RATE, Audio

_PREPEND = "\"'“¿([{-"
_APPEND = "\"'.。,，!！?？:：”)]}、"
_MAX_S = 29.0
"""Longer audio is transcribed by stock faster-whisper (30 s windows, seeking)."""


@dataclass(frozen=True, slots=True)
class WordTiming:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True, slots=True)
class Transcription:
    text: str
    words: list[WordTiming] = field(default_factory=list)
    language: str = "en"
    duration: float = 0.0
    """Seconds of audio transcribed."""
    compute_s: float = 0.0
    """Model time of the call this came from (shared by a batch)."""
    batch: int = 1
    fallback: bool = False
    """True when the short window looped and the stock 30 s window was used."""
    beam: int = 0
    """Beam width of the pass (0: the stock path, which does not say)."""
    hypotheses: tuple[tuple[str, float], ...] = ()
    """The pass's best distinct hypotheses as (text, weight), best first (``text`` is the first), weights
    from their beam log-probabilities summing to 1; empty when only ``text`` was kept."""


@dataclass(frozen=True, slots=True)
class WhisperOptions:
    """What the engine needs from ``[asr]`` settings (documented and defaulted there, nowhere else)."""

    model: str
    device: str
    compute_type: str
    cpu_threads: int
    workers: int
    language: str
    beam_size: int
    hypotheses: int
    word_timestamps: bool
    min_window_s: float

    @classmethod
    def from_settings(cls, s: AsrSettings) -> WhisperOptions:
        return cls(
            model=s.model,
            device=s.device,
            compute_type=s.compute_type,
            cpu_threads=s.cpu_threads,
            workers=s.workers,
            language=s.language,
            beam_size=s.beam_size,
            hypotheses=s.hypotheses,
            word_timestamps=s.word_timestamps,
            min_window_s=s.min_window_s,
        )


class WhisperEngine:
    """A loaded Whisper model; :meth:`transcribe_batch` turns 16 kHz mono arrays into text + words."""

    _shared: dict[tuple[WhisperOptions, str, str], WhisperEngine] = {}
    _lock = threading.Lock()

    def __init__(self, opts: WhisperOptions, settings: Settings) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        from emostream.store import load

        self.opts = opts
        path = load(opts.model, settings)
        device = opts.device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        compute = opts.compute_type
        if compute == "auto":
            compute = "float16" if device == "cuda" else "int8"
        try:
            self.fw = WhisperModel(
                str(path),
                device=device,
                compute_type=compute,
                cpu_threads=opts.cpu_threads,
                num_workers=opts.workers,
            )
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"cannot load {opts.model} on {device}/{compute}: {exc}") from None
        self.device, self.compute_type = device, compute
        self.multilingual = bool(self.fw.model.is_multilingual)
        lang = opts.language or None
        if not self.multilingual:
            lang = "en"
        self._tokenizers: dict[str | None, Any] = {}
        self._tok_lock = threading.Lock()
        self._make_tokenizer = lambda language: Tokenizer(
            self.fw.hf_tokenizer, self.multilingual, task="transcribe", language=language
        )
        self.tokenizer = self._tokenizer(lang or "en")  # special token ids; prompts use per-item languages
        self.language = lang
        self.suppress = list(get_suppressed_tokens(self.tokenizer, [-1]))
        self._storage = ctranslate2.StorageView.from_array

    @classmethod
    def shared(cls, opts: WhisperOptions, settings: Settings) -> WhisperEngine:
        """The process-wide engine for these options and model store (one model for every room)."""
        key = (opts, str(settings.home), settings.store.manifest)
        with cls._lock:
            engine = cls._shared.get(key)
            if engine is None:
                engine = cls._shared[key] = cls(opts, settings)
            return engine

    def _tokenizer(self, language: str | None) -> Any:
        with self._tok_lock:  # passes run in parallel threads
            tok = self._tokenizers.get(language)
            if tok is None:
                tok = self._tokenizers[language] = self._make_tokenizer(language)
            return tok

    # ------------------------------------------------------------------------------------- public
    def transcribe(self, audio: Audio) -> Transcription:
        return self.transcribe_batch([audio])[0]

    def transcribe_batch(self, audios: list[Audio], beam_size: int = 0) -> list[Transcription]:
        """Transcribe several utterances in one encoder/decoder pass (long ones individually);
        ``beam_size`` > 0 overrides the configured width for this pass."""
        beam = beam_size or self.opts.beam_size
        out: list[Transcription | None] = [None] * len(audios)
        short = [i for i, a in enumerate(audios) if a.size / SAMPLE_RATE <= _MAX_S]
        for i, a in enumerate(audios):
            if i not in short:
                out[i] = self._stock(a, beam)
        if short:
            window = max(self.opts.min_window_s, max(audios[i].size for i in short) / SAMPLE_RATE + 1.0)
            results = self._windowed([audios[i] for i in short], min(30.0, window), beam)
            for i, r in zip(short, results, strict=True):
                out[i] = r
        return [r for r in out if r is not None]

    # ----------------------------------------------------------------------------------- internals
    def _windowed(self, audios: list[Audio], window_s: float, beam: int) -> list[Transcription]:
        t0 = time.perf_counter()
        n_frames = int(round(window_s * 100)) // 2 * 2
        feats = np.stack([self._features(a, n_frames) for a in audios])
        enc = self.fw.model.encode(self._storage(np.ascontiguousarray(feats)), to_cpu=False)
        langs = self._languages(enc, len(audios))
        prompts = [self._tokenizer(lang).sot_sequence + [self.tokenizer.no_timestamps] for lang in langs]
        longest = max(a.size for a in audios) / SAMPLE_RATE
        budget = min(448, max(len(p) for p in prompts) + int(16 + 10 * longest))
        res = self.fw.model.generate(
            enc,
            prompts,
            beam_size=beam,
            num_hypotheses=max(1, min(self.opts.hypotheses, beam)),
            max_length=budget,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self.suppress,
        )
        kept = [[[t for t in seq if t < self.tokenizer.eot] for seq in r.sequences_ids] for r in res]
        tokens = [k[0] for k in kept]
        hyps = [
            _weighted([self._tokenizer(lang).decode(tk).strip() for tk in k], r.scores, [len(tk) for tk in k])
            for lang, k, r in zip(langs, kept, res, strict=True)
        ]
        texts = [h[0][0] for h in hyps]
        words: list[list[WordTiming]] = [[] for _ in audios]
        if self.opts.word_timestamps and any(tokens):
            frames = [min(n_frames, a.size // 160) for a in audios]
            words = self._words(enc, tokens, frames)
        dt = time.perf_counter() - t0
        out: list[Transcription] = []
        for i, a in enumerate(audios):
            if window_s < 30.0 and _looped(texts[i], len(res[i].sequences_ids[0]), budget - len(prompts[i])):
                redo = self._windowed([a], 30.0, beam)[0]
                out.append(Transcription(**{**_fields(redo), "fallback": True}))
                continue
            out.append(
                Transcription(
                    text=texts[i],
                    words=words[i],
                    language=langs[i] or "en",
                    duration=a.size / SAMPLE_RATE,
                    compute_s=dt,
                    batch=len(audios),
                    beam=beam,
                    hypotheses=hyps[i] if len(hyps[i]) > 1 else (),
                )
            )
        return out

    def _features(self, audio: Audio, n_frames: int) -> np.ndarray:
        pad = max(0, n_frames * 160 + 400 - audio.size)
        x = np.concatenate([audio, np.zeros(pad, np.float32)]) if pad else audio
        feats = self.fw.feature_extractor(x, padding=0)[:, :n_frames]
        return np.asarray(feats, dtype=np.float32)

    def _languages(self, enc: Any, n: int) -> list[str | None]:
        if self.language is not None or not self.multilingual:
            return [self.language] * n
        found = self.fw.model.detect_language(enc)
        return [str(r[0][0]).strip("<|>") for r in found]

    def _words(self, enc: Any, tokens: list[list[int]], frames: list[int]) -> list[list[WordTiming]]:
        from faster_whisper.transcribe import merge_punctuations

        batch = [tk if tk else [self.tokenizer.eot] for tk in tokens]
        aligned = self.fw.find_alignment(self.tokenizer, batch, enc, frames)
        out: list[list[WordTiming]] = []
        for tk, alignment in zip(tokens, aligned, strict=True):
            if not tk or not alignment:
                out.append([])
                continue
            merge_punctuations(alignment, _PREPEND, _APPEND)
            out.append(
                [
                    WordTiming(
                        round(float(w["start"]), 3),
                        round(float(w["end"]), 3),
                        w["word"],
                        float(w["probability"]),
                    )
                    for w in alignment
                    if w["word"]
                ]
            )
        return out

    def _stock(self, audio: Audio, beam: int) -> Transcription:
        t0 = time.perf_counter()
        segments, info = self.fw.transcribe(
            audio,
            language=self.language,
            beam_size=beam,
            word_timestamps=self.opts.word_timestamps,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        segs = list(segments)
        words = [WordTiming(w.start, w.end, w.word, w.probability) for s in segs for w in (s.words or [])]
        return Transcription(
            text=" ".join(s.text.strip() for s in segs).strip(),
            words=words,
            language=info.language,
            duration=audio.size / SAMPLE_RATE,
            compute_s=time.perf_counter() - t0,
            beam=beam,
        )


def _looped(text: str, n_tokens: int, budget: int) -> bool:
    """A tiny model stuck repeating itself: output ran into the budget, compresses too well, or says
    one sentence twice in a row (tiny.en in a short window, seen on a browser's Opus audio:
    "Please enter the conference PIN number. Please enter the conference PIN number.")."""
    if n_tokens >= budget:
        return True
    data = text.encode()
    if len(data) > 40 and len(data) / len(zlib.compress(data)) > 2.4:
        return True
    sentences = [s.strip(" ,").lower() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    return any(a == b and len(a.split()) >= 3 for a, b in zip(sentences, sentences[1:], strict=False))


def _weighted(texts: list[str], scores: list[float], lengths: list[int]) -> tuple[tuple[str, float], ...]:
    """(text, weight) per distinct text, best first: CTranslate2's scores are log-probabilities divided by
    the length (length_penalty 1), so a hypothesis's probability is exp(score * length); two token
    sequences that decode to the same text share one entry."""
    logp = np.array([s * max(1, n) for s, n in zip(scores, lengths, strict=True)], dtype=np.float64)
    p = np.exp(logp - logp.max())
    merged: dict[str, float] = {}
    for i, (text, w) in enumerate(zip(texts, p / p.sum(), strict=True)):
        if text or not i:  # an empty runner-up says nothing the best one does not
            merged[text] = merged.get(text, 0.0) + float(w)
    total = sum(merged.values())
    return tuple((t, round(w / total, 4)) for t, w in merged.items())


def _fields(t: Transcription) -> dict[str, Any]:
    return {f: getattr(t, f) for f in Transcription.__dataclass_fields__}
