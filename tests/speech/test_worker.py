"""The ASR stage under the real runtime: in-process on the memory bus, and `emostream worker asr` over Redis."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from emostream.bench.asr import normalize, speak
from emostream.bench.speech_data import BENCH_VOICES, BENCH_WPM
from emostream.bus import Bus, open_bus
from emostream.cli import main
from emostream.config import BusSettings, Settings, StageSettings
from emostream.ingest.participant import SpeechIngest
from emostream.runtime.stage import run_stage
from emostream.schema import Transcript, Utterance, decode, encode
from emostream.testing.harness import start_worker
from emostream.workers.asr import create

from .conftest import trimmed


async def _speak_utterance(bus: Bus, settings: Settings, room: str) -> list[Utterance]:
    """Real segmenter output (partials and utterance published on ``bus``) for one spoken line."""
    import numpy as np

    ingest = SpeechIngest(bus, settings, room, "dee", t0=100.0)
    pad = np.zeros(16_000, np.float32)
    audio = np.concatenate([pad, trimmed(speak("Is there anything else we need to discuss?", "en-gb")), pad])
    out = await ingest.push(audio, 16_000) + await ingest.flush()
    return [m for m in out if isinstance(m, Utterance)]


async def _transcripts(bus: Bus, n: int, timeout_s: float) -> list[Transcript]:
    await bus.ensure_group("transcripts", "check", "0")
    got: list[Transcript] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        for d in await bus.read_group(["transcripts"], "check", "c", 10, 200):
            got.append(decode(d.data, Transcript))
            await bus.ack("transcripts", "check", [d.id])
    return got


async def test_runs_in_process_under_run_stage() -> None:
    settings = Settings(bus=BusSettings(block_ms=50), stage=StageSettings(concurrency=2))
    bus = open_bus("memory://", settings.bus)
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        run_stage(create(settings), bus, settings, consumer="a1", stop=stop, ready=ready)
    )
    await asyncio.wait_for(ready.wait(), 30)
    (utt,) = await _speak_utterance(bus, settings, "live")
    gold = Utterance(room="live", speaker="eve", utterance=0, start=0, end=1, text="Gold words.")
    await bus.publish("utterances", encode(gold))
    got = await _transcripts(bus, 2, 30)
    stop.set()
    stats = await asyncio.wait_for(task, 30)
    by_speaker = {t.speaker: t for t in got}
    assert by_speaker["eve"].text == "Gold words."
    dee = by_speaker["dee"]
    assert dee.utterance == utt.utterance and dee.start == utt.start == pytest.approx(100.8, abs=0.3)
    assert {"anything", "else", "discuss"} <= set(normalize(dee.text))
    assert stats.processed >= 3 and stats.failed == 0  # partial + 2 utterances
    await bus.close()


async def test_worker_process_over_redis(flush_redis: str) -> None:
    settings = Settings(bus=BusSettings(url=flush_redis, block_ms=50))
    bus = open_bus(flush_redis, settings.bus)
    proc = start_worker("asr", flush_redis, "w1")
    try:
        (utt,) = await _speak_utterance(bus, settings, "remote")  # blobs and messages in Redis
        got = await _transcripts(bus, 1, 60)
        if not got:  # say what the worker said, and what the stream holds
            proc.terminate()
            _, err = proc.communicate(timeout=30)
            groups = await bus._r.xinfo_groups("emostream:utterances")  # type: ignore[attr-defined]
            raise AssertionError(f"no transcript in 60 s; groups {groups}; worker: {err.decode()[-3000:]}")
        (t,) = got
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert t.key == utt.key and t.model == "whisper-tiny.en" and t.words
        assert {"anything", "else", "discuss"} <= set(normalize(t.text))
    finally:
        proc.terminate()
        proc.wait(30)
        await bus.close()
    assert proc.returncode == 0


def test_bench_prints_one_json_line_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    csv = "tests/fixtures/meld/dev_sample.csv"
    assert (
        main(["bench", "asr", "--json", "--csv", csv, "--n", "3", "--models", "tiny.en", "--no-fresh"]) == 0
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 1
    r = lines[0]
    assert r["model"] == "tiny.en" and r["n"] == 3
    assert 0.0 <= r["wer"] <= 0.6 and r["rtf"] > 0.0  # speed is the bench's figure, not a test
    assert r["eos_to_text_p50_ms"] is not None and r["eos_to_text_p95_ms"] >= r["eos_to_text_p50_ms"]
    # the fixture's first three lines have three speakers: the first three bench voices, scored apiece
    assert set(r["wer_by_voice"]) == set(BENCH_VOICES[:3])
    assert all(0.0 <= w <= 1.0 for w in r["wer_by_voice"].values())
    with pytest.raises(SystemExit):
        main(["bench", "asr", "--models"])
    assert main(["bench", "asr", "--csv", "/nonexistent.csv", "--n", "1"]) == 1
    assert "not found" in capsys.readouterr().err


def test_bench_voices_scores_each_voice_and_flags_ignored_variants(
    capsys: pytest.CaptureFixture[str],
) -> None:
    csv = "tests/fixtures/meld/dev_sample.csv"
    # espeak-ng ignores "+f2" on en-gb (same audio as en-gb); on "en" the variant applies
    argv = ["bench", "voices", "--json", "--csv", csv, "--n", "2", "--voices", "en-gb,en-gb+f2,en+f2"]
    assert main(argv) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert [r["voice"] for r in rows] == ["en-gb", "en-gb+f2", "en+f2"]
    assert rows[1] == {"voice": "en-gb+f2", "same_audio_as": "en-gb"}
    for r in (rows[0], rows[2]):
        assert r["wpm"] == BENCH_WPM and r["words"] > 0 and 0.0 <= r["wer"] <= 0.6
    assert main(["bench", "voices", "--csv", "/nonexistent.csv"]) == 1
    assert "not found" in capsys.readouterr().err
