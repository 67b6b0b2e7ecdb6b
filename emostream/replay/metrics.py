"""Replay metrics: weighted-F1, accuracy, per-class F1, confusion matrix, stage latencies, modality use.

Scores come from :mod:`emostream.evaluation.scores` (scikit-learn, the ``emostream eval meld``
definition). A row that got no event counts as wrong (prediction ``UNANSWERED``): it adds a false
negative to its true class and is never a true positive, so lost events lower the score.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from emostream.evaluation.scores import UNANSWERED, confusion, edit_distance, scores
from emostream.replay.face_effect import face_effect
from emostream.schema import EMOTIONS


@dataclass
class RowResult:
    """One CSV row after the replay: its truth, what the pipeline said, and how it was replayed."""

    dialogue: int
    index: int
    speaker: str
    text: str
    true: str
    pred: str | None
    """Predicted label, or None when no event arrived in time."""
    source: str
    """Where the utterance came from: ``clip`` (media), ``csv`` (text-only) or ``fallback`` (clip bad)."""
    event: dict[str, Any] | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "dialogue": self.dialogue,
            "utterance_id": self.index,
            "speaker": self.speaker,
            "text": self.text,
            "true": self.true,
            "pred": self.pred,
            "source": self.source,
            "note": self.note,
            "event": self.event,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RowResult:
        return cls(
            dialogue=int(data["dialogue"]),
            index=int(data["utterance_id"]),
            speaker=str(data["speaker"]),
            text=str(data["text"]),
            true=str(data["true"]),
            pred=data.get("pred"),
            source=str(data.get("source", "")),
            event=data.get("event"),
            note=str(data.get("note", "")),
        )


_WORD = re.compile(r"[a-z0-9']+")


def _norm_words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(word edit distance, reference words) after lower-casing and dropping punctuation."""
    r, h = _norm_words(ref), _norm_words(hyp)
    return edit_distance(r, h), len(r)


def corpus_wer(rows: list[RowResult]) -> float | None:
    """Word error rate (percent) of the transcripts of rows replayed from clips, vs the CSV text."""
    errors = words = 0
    for r in rows:
        if r.source == "clip" and r.event is not None:
            e, n = word_errors(r.text, str(r.event.get("transcript", "")))
            errors, words = errors + e, words + n
    return round(100 * errors / words, 2) if words else None


def repeated_ngram(text: str, max_n: int = 6) -> tuple[str, int] | None:
    """The longest back-to-back repetition in ``text``: (n-gram, times), or None when it reads as speech.

    A Whisper decoding loop repeats a phrase ("Well... Well... Well... Well..."); people repeat a
    word three times at most ("no, no, no") and a phrase twice. So a loop is one word said 4+ times in a
    row, or a 2..``max_n``-word phrase said 3+ times in a row.
    """
    words = _norm_words(text)
    best: tuple[str, int] | None = None
    for n in range(1, max_n + 1):
        need = 4 if n == 1 else 3
        i = 0
        while i + n <= len(words):
            gram = words[i : i + n]
            times = 1
            while words[i + times * n : i + (times + 1) * n] == gram:
                times += 1
            if times >= need and (best is None or times * n > best[1] * len(best[0].split())):
                best = (" ".join(gram), times)
            i += max(1, (times - 1) * n) if times > 1 else 1
    return best


def asr_loops(rows: list[RowResult]) -> list[dict[str, Any]]:
    """Transcribed rows whose transcript loops where the CSV text does not (an ASR artefact)."""
    out: list[dict[str, Any]] = []
    for r in rows:
        if r.source != "clip" or r.event is None:
            continue
        said = str(r.event.get("transcript", ""))
        loop = repeated_ngram(said)
        if loop is not None and repeated_ngram(r.text) is None:
            out.append(
                {
                    "dialogue": r.dialogue,
                    "utterance_id": r.index,
                    "transcript": said[:120],
                    "ngram": loop[0],
                    "repeats": loop[1],
                }
            )
    return out


def per_speaker(rows: list[RowResult], top: int = 10) -> dict[str, dict[str, float]]:
    """Utterances and accuracy (percent) of the ``top`` most frequent speakers."""
    counts = Counter(r.speaker for r in rows)
    out: dict[str, dict[str, float]] = {}
    for name, n in counts.most_common(top):
        right = sum(r.pred == r.true for r in rows if r.speaker == name)
        out[name] = {"utterances": n, "accuracy": round(100 * right / n, 2)}
    return out


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, np.float64)
    return {
        "p50": round(float(np.percentile(arr, 50)), 2),
        "p95": round(float(np.percentile(arr, 95)), 2),
        "n": len(values),
    }


def summarize(rows: list[RowResult], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metrics JSON: weighted_f1 and accuracy (percent), per-class F1 and counts, the confusion
    matrix (rows = true, columns = predicted, MELD class order), stage latency p50/p95 (ms from end of
    speech), modality and visual-status counts, what the face changed (``face``: decisions changed vs the
    text-only labels, text-only weighted-F1, drivers), how rows were replayed, and the ASR word error rate
    against the CSV text (0 with gold text; None without clips) and the transcripts that loop."""
    true = [EMOTIONS.index(r.true) for r in rows]
    pred = [EMOTIONS.index(r.pred) if r.pred in EMOTIONS else UNANSWERED for r in rows]
    score = scores(true, pred)
    support = Counter(true)
    latencies: dict[str, list[float]] = {}
    modalities: Counter[str] = Counter()
    visual: Counter[str] = Counter()
    for r in rows:
        if not r.event:
            continue
        for stage, ms in (r.event.get("latency_ms") or {}).items():
            latencies.setdefault(stage, []).append(float(ms))
        modalities["+".join(r.event.get("modalities") or []) or "none"] += 1
        visual[str(r.event.get("visual_status", ""))] += 1
    predicted = Counter(r.pred for r in rows if r.pred)
    out: dict[str, Any] = {
        **score,
        "utterances": len(rows),
        "answered": sum(p != UNANSWERED for p in pred),
        "dialogues": len({r.dialogue for r in rows}),
        "counts": {
            "true": {e: support.get(i, 0) for i, e in enumerate(EMOTIONS)},
            "predicted": {e: predicted.get(e, 0) for e in EMOTIONS},
        },
        "confusion": {"labels": list(EMOTIONS), "matrix": confusion(true, pred).tolist()},
        "latency_ms": {stage: _percentiles(v) for stage, v in sorted(latencies.items())},
        "modalities": dict(modalities),
        "visual_status": dict(visual),
        "sources": dict(Counter(r.source for r in rows)),
        "asr_wer": corpus_wer(rows),
        "asr_loops": asr_loops(rows),
        "per_speaker": per_speaker(rows),
        "face": face_effect(rows),
    }
    out.update(extra or {})
    return out
