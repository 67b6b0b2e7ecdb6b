"""Noise toward spoken text: reproducible, at the configured rates, transcripts swapped in by key."""

from __future__ import annotations

from emostream.evaluation.meld import Utterance
from emostream.train.text_data import spoken_noise

LINE = Utterance(3, 1, "Joey", "Are you kidding me?! Wow.", "surprise")
HEARD = {(3, 1): "are you kidding me wow"}


def test_spoken_noise_is_reproducible_and_near_its_rates() -> None:
    noise_a, noise_b = spoken_noise(7, 0.3, 0.15), spoken_noise(7, 0.3, 0.15)
    draws_a = [noise_a(LINE) for _ in range(2000)]
    assert draws_a == [noise_b(LINE) for _ in range(2000)]
    bare = draws_a.count("Are you kidding me Wow") / 2000
    flat = draws_a.count("Are you kidding me. Wow.") / 2000
    gold = draws_a.count(LINE.text) / 2000
    assert abs(bare - 0.15) < 0.03 and abs(flat - 0.3) < 0.03 and abs(gold - 0.55) < 0.03


def test_no_dropout_keeps_gold_text() -> None:
    noise = spoken_noise(1, 0.0, 0.0)
    assert all(noise(LINE) == LINE.text for _ in range(100))


def test_asr_share_reads_the_transcript_of_that_utterance() -> None:
    noise = spoken_noise(5, 0.2, 0.1, HEARD, 0.4)
    draws = [noise(LINE) for _ in range(3000)]
    shares = {t: draws.count(t) / 3000 for t in set(draws)}
    assert abs(shares[HEARD[(3, 1)]] - 0.4) < 0.03
    assert abs(shares["Are you kidding me Wow"] - 0.1) < 0.03
    assert abs(shares["Are you kidding me. Wow."] - 0.2) < 0.03
    other = Utterance(4, 0, "Ross", "Hi!", "joy")  # no transcript: its ASR share stays gold
    assert {noise(other) for _ in range(200)} <= {"Hi!", "Hi", "Hi."}
    assert sum(noise(other) == "Hi!" for _ in range(3000)) / 3000 > 0.6
