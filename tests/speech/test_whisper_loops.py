"""A short-window decode that repeats itself is re-decoded in Whisper's full 30 s window.

Seen in CI: tiny.en, a browser's Opus audio of one Asterisk prompt, decoded as that sentence twice
(neither the token budget nor the compression ratio caught a single repeat)."""

from __future__ import annotations

from emostream.inference.whisper import _looped


def test_a_sentence_said_twice_in_a_row_is_a_loop() -> None:
    twice = "Please enter the conference PIN number. Please enter the conference PIN number."
    assert _looped(twice, n_tokens=20, budget=60)
    assert _looped(twice.upper(), n_tokens=20, budget=60)  # case does not hide it


def test_ordinary_speech_is_not() -> None:
    assert not _looped("Please enter the conference PIN number.", n_tokens=10, budget=60)
    assert not _looped("No. No. I said no.", n_tokens=10, budget=60)  # short repeats are speech
    assert not _looped("You are here. You are there.", n_tokens=10, budget=60)


def test_the_old_signals_still_count() -> None:
    assert _looped("anything", n_tokens=60, budget=60)  # ran into the budget
    assert _looped("la " * 40, n_tokens=40, budget=200)  # compresses far too well
