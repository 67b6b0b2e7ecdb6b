"""Punctuation dropout toward spoken text: reproducible, at the configured rates, labels untouched."""

from __future__ import annotations

from emostream.train.text_data import spoken_noise

LINE = "Are you kidding me?! Wow."


def test_spoken_noise_is_reproducible_and_near_its_rates() -> None:
    noise_a, noise_b = spoken_noise(7, 0.3, 0.15), spoken_noise(7, 0.3, 0.15)
    draws_a = [noise_a(LINE) for _ in range(2000)]
    assert draws_a == [noise_b(LINE) for _ in range(2000)]
    bare = draws_a.count("Are you kidding me Wow") / 2000
    flat = draws_a.count("Are you kidding me. Wow.") / 2000
    gold = draws_a.count(LINE) / 2000
    assert abs(bare - 0.15) < 0.03 and abs(flat - 0.3) < 0.03 and abs(gold - 0.55) < 0.03


def test_no_dropout_keeps_gold_text() -> None:
    noise = spoken_noise(1, 0.0, 0.0)
    assert all(noise(LINE) == LINE for _ in range(100))
