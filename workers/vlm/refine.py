"""Refinement every VLM backend's output passes (DDVLM): factual sentences only, no emotion words.

The visual student must learn emotion from *observable* states, so a description may not name the
emotion. Rules, in order:

1. Split into sentences; strip list markers, quotes and whitespace.
2. A sentence containing a word from :data:`EMOTION_WORDS` loses that word when it is used as an
   attribute (followed by another word, e.g. "a happy smile" -> "a smile"); when it is the predicate
   ("she looks happy", "appears surprised.") the whole sentence is dropped.
3. Duplicates (same words after normalisation, or >= 80 % word overlap with a kept sentence) are dropped.
4. At most ``max_sentences`` (default 3) are kept, in their original order.
"""

from __future__ import annotations

import re

EMOTION_WORDS: frozenset[str] = frozenset(
    """
    happy happier happiest happily happiness joy joyful joyous glad cheerful cheery delighted pleased
    content contented elated excited excitement amused amusement
    sad sadder saddest sadly sadness unhappy sorrow sorrowful gloomy depressed miserable melancholy
    grief grieving upset heartbroken disappointed disappointment
    angry angrier angrily anger mad furious fury rage enraged irritated irritation annoyed annoyance
    frustrated frustration hostile resentful
    fear fearful afraid scared frightened terrified terror anxious anxiety nervous nervously worried
    worry panic panicked
    surprise surprised surprising astonished astonishment amazed amazement shocked shock startled
    disgust disgusted disgusting repulsed revolted contempt contemptuous
    neutral emotion emotions emotional emotionally mood feeling feelings calm serene bored
    embarrassed ashamed proud guilty jealous lonely hopeful confident confused
    """.split()
)
"""Emotion words never allowed in a description (MELD classes, their synonyms and inflections, and
other affect words). "smile", "frown", "laugh" are actions and stay allowed."""

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[A-Za-z']+")
_LEAD = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
_PREDICATE_CUES = frozenset(
    "is are was were be being been looks look looking seems seem seeming appears appear appearing "
    "feels feel feeling becomes become getting gets remains remain stays stay".split()
)
_JOINERS = frozenset("and or but with while as to at in of . , ; :".split())


def split_sentences(text: str) -> list[str]:
    out = []
    for part in _SENTENCE.split(text.strip()):
        s = _LEAD.sub("", part).strip().strip("\"'`").strip()
        if s:
            out.append(s)
    return out


def _clean_sentence(sentence: str) -> str | None:
    """The sentence without attributive emotion words, or None when it must be dropped."""
    tokens = re.findall(r"[A-Za-z']+|[^A-Za-z'\s]+", sentence)
    kept: list[str] = []
    for i, tok in enumerate(tokens):
        if tok.lower() not in EMOTION_WORDS:
            kept.append(tok)
            continue
        prev = next((t.lower() for t in reversed(tokens[:i]) if _WORD.fullmatch(t)), "")
        nxt = tokens[i + 1].lower() if i + 1 < len(tokens) else ""
        attributive = bool(_WORD.fullmatch(nxt)) and nxt not in _JOINERS and prev not in _PREDICATE_CUES
        if not attributive:
            return None
        if kept and kept[-1].lower() in {"a", "an"}:
            kept[-1] = "a" if kept[-1] == "an" else "A" if kept[-1] == "An" else kept[-1]
    text = " ".join(kept)
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    text = re.sub(r"\b(a|A) (?=[aeiouAEIOU])", lambda m: m.group(1) + "n ", text)
    words = _WORD.findall(text)
    if len(words) < 3:
        return None
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _words(sentence: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(sentence)}


def refine(text: str, max_sentences: int = 3) -> str:
    """Apply the rules above; returns "" when nothing factual survives."""
    kept: list[str] = []
    seen: list[set[str]] = []
    for raw in split_sentences(text):
        s = _clean_sentence(raw)
        if s is None:
            continue
        words = _words(s)
        if any(words == w or len(words & w) / max(1, len(words | w)) >= 0.8 for w in seen):
            continue
        kept.append(s)
        seen.append(words)
        if len(kept) >= max_sentences:
            break
    return " ".join(kept)


def emotion_words_in(text: str) -> list[str]:
    """The lexicon words present in ``text`` (for tests and checks)."""
    return [w for w in _WORD.findall(text.lower()) if w in EMOTION_WORDS]
