"""ASR stage on the segmented conversation (real tiny.en), speculation, gold text, bad input, engines."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client import REGISTRY

from emostream.bench.asr import edit_distance, normalize, speak
from emostream.bus.memory import MemoryBus
from emostream.config import AsrSettings, Settings
from emostream.inference.whisper import WhisperEngine, WhisperOptions
from emostream.runtime.errors import BlobExpired
from emostream.runtime.stage import StageContext
from emostream.schema import PartialAudio, Transcript, Utterance
from emostream.workers.asr import AsrStage, create

from .conftest import Conversation, Segmented, trimmed


def _ctx(bus: object) -> StageContext:
    return StageContext(bus=bus, settings=Settings(), stage="asr", consumer="test")  # type: ignore[arg-type]


def _count(how: str) -> float:
    return REGISTRY.get_sample_value("emostream_asr_utterances_total", {"how": how}) or 0.0


async def test_conversation_transcripts(conversation: Conversation, segmented: Segmented) -> None:
    """Every utterance of the 2-minute conversation, partials first as live: text right, words timed."""
    stage = create(Settings())
    assert isinstance(stage, AsrStage)
    ctx = _ctx(segmented.bus)
    await stage.setup(ctx)
    spec0 = _count("speculative")
    errors = words = 0
    n = 0
    try:
        for who in ("ann", "ben", "cal"):
            truth = iter(conversation.truth_of(who))
            for msg in segmented.messages[who]:
                if isinstance(msg, PartialAudio):
                    assert await stage.process(msg, ctx) == []
                elif isinstance(msg, Utterance):
                    (emit,) = await stage.process(msg, ctx)  # as the runtime runs it
                    t = emit.message
                    assert isinstance(t, Transcript) and t.key == msg.key
                    ref = normalize(next(truth).text)
                    err = edit_distance(ref, normalize(t.text))
                    assert err < len(ref), (ref, t.text)  # never junk (WER over all is bounded below)
                    errors, words, n = errors + err, words + len(ref), n + 1
                    assert t.words and t.model == "whisper-tiny.en" and t.eos_at == msg.eos_at
                    starts = [w.start for w in t.words]
                    assert starts == sorted(starts)
                    assert msg.start - 0.05 <= t.words[0].start and t.words[-1].end <= msg.end + 0.5
                    assert "segmenter" in t.trace and "asr" in t.trace
    finally:
        await stage.close()
    assert n == len(conversation.truth)
    assert errors / words <= 0.2, f"WER {errors / words:.3f}"  # tiny.en, beam 5: 0.152 measured
    assert _count("speculative") - spec0 == n  # every utterance reused its pause partial's pass


async def test_gold_text_passes_through_without_a_model() -> None:
    stage = AsrStage(Settings(asr=AsrSettings(model="no-such-model")))
    msg = Utterance(room="r", speaker="s", utterance=1, start=1.0, end=2.0, text="Hi there.", eos_at=5.0)
    (emit,) = await stage.handle(msg, _ctx(MemoryBus()))
    assert isinstance(emit.message, Transcript)
    assert emit.message.text == "Hi there." and emit.message.model == "gold"
    assert stage.engine is None  # never loaded


async def test_missing_audio_blob_fails_with_a_clear_reason() -> None:
    stage = AsrStage(Settings())
    msg = Utterance(room="r", speaker="s", utterance=1, start=0.0, end=1.0, audio="blob:gone")
    with pytest.raises(BlobExpired, match="missing or expired"):
        await stage.handle(msg, _ctx(MemoryBus()))
    await stage.close()


async def test_partials_superseded_and_late() -> None:
    bus = MemoryBus()
    ctx = _ctx(bus)
    stage = AsrStage(Settings())
    await stage.setup(ctx)
    audio = trimmed(speak("I can help with the first round.", "en-us"))
    refs = [await bus.put_blob(f"p{i}", audio[: (i + 1) * audio.size // 3].tobytes(), 60) for i in range(3)]
    final = await bus.put_blob("u", audio.tobytes(), 60)

    def partial(seq: int) -> PartialAudio:
        return PartialAudio(room="r", speaker="s", utterance=0, start=0, end=1, seq=seq, audio=refs[seq])

    late0 = REGISTRY.get_sample_value("emostream_asr_partials_total", {"result": "late"}) or 0.0
    sup0 = REGISTRY.get_sample_value("emostream_asr_partials_total", {"result": "superseded"}) or 0.0
    for seq in (0, 1, 2):  # arrive together: the older queued ones are dropped (latest wins)
        await stage.handle(partial(seq), ctx)
    await stage.handle(partial(1), ctx)  # out of order: older than the latest seen
    utt = Utterance(room="r", speaker="s", utterance=0, start=0, end=2, audio=final)
    fresh0 = _count("fresh")
    (emit,) = await stage.handle(utt, ctx)  # audio differs from every partial: a fresh pass
    assert _count("fresh") == fresh0 + 1
    assert "first round" in emit.message.text.lower()  # type: ignore[attr-defined]
    await stage.handle(partial(2), ctx)  # after the utterance: ignored
    sup = REGISTRY.get_sample_value("emostream_asr_partials_total", {"result": "superseded"}) or 0.0
    assert sup - sup0 >= 2
    assert REGISTRY.get_sample_value("emostream_asr_partials_total", {"result": "late"}) == late0 + 1
    await stage.close()


def test_engine_batch_long_audio_and_silence() -> None:
    engine = WhisperEngine.shared(WhisperOptions.from_settings(AsrSettings()), Settings())
    lines = ["Have a nice weekend.", "The lease starts in the spring."]
    audios = [trimmed(speak(t, "en-us")) for t in lines]
    single = [engine.transcribe(a).text for a in audios]
    batch = engine.transcribe_batch(audios)
    assert [b.batch for b in batch] == [2, 2]
    for text, one, b in zip(lines, single, batch, strict=True):
        assert edit_distance(normalize(one), normalize(b.text)) <= 1
        assert edit_distance(normalize(text), normalize(b.text)) <= 2
    assert {b.beam for b in batch} == {AsrSettings().beam_size}
    greedy = engine.transcribe_batch(audios, beam_size=1)  # the scheduler's busy beam
    assert [g.beam for g in greedy] == [1, 1]
    for text, g in zip(lines, greedy, strict=True):
        assert edit_distance(normalize(text), normalize(g.text)) <= 2
    silence = engine.transcribe(np.zeros(16_000, np.float32))
    assert len(normalize(silence.text)) <= 2 and not silence.fallback
    gap = np.zeros(15 * 16_000, np.float32)
    long = engine.transcribe(np.concatenate([audios[0], gap, audios[1], gap]))  # 30+ s: stock path
    assert long.duration > 29 and "spring" in normalize(long.text) and long.words


def test_whisper_base_detects_english() -> None:
    engine = WhisperEngine.shared(
        WhisperOptions.from_settings(AsrSettings(model="whisper-base", language="", word_timestamps=False)),
        Settings(),
    )
    assert engine.multilingual
    r = engine.transcribe(trimmed(speak("I can help with the first round.", "en-gb")))
    assert r.language == "en"
    assert {"help", "first", "round"} <= set(normalize(r.text))


async def test_scheduler_runs_one_pass_at_a_time() -> None:
    stage = AsrStage(Settings(asr=AsrSettings(max_batch=4)))
    await stage.ensure_model()
    assert stage.scheduler is not None
    audio = trimmed(speak("Then let us end the meeting here.", "en-us"))
    futures = [stage.scheduler.submit(audio, final=True) for _ in range(3)]
    results = await asyncio.gather(*futures)
    assert {r.text for r in results} == {results[0].text}
    assert results[0].batch == 3  # waiting finals went as one batch
    other = AsrStage(Settings(asr=AsrSettings(max_batch=2)))
    await other.ensure_model()
    assert other.engine is stage.engine  # one model per process, whatever the stage count or rooms
    await stage.close()
    await other.close()


def test_early_partials_off_consumes_utterances_only() -> None:
    assert set(AsrStage(Settings()).inputs) == {"utterances", "partials"}
    assert set(AsrStage(Settings(asr=AsrSettings(early_partials=False))).inputs) == {"utterances"}


def test_engine_keeps_the_beams_best_readings_with_their_weights() -> None:
    """asr.hypotheses = 2: the best text first, then a distinct runner-up; weights sum to 1 and the best
    text is the one a single-hypothesis pass gives. With a beam of 1 only the best is left."""
    two = WhisperEngine.shared(WhisperOptions.from_settings(AsrSettings(hypotheses=2)), Settings())
    one = WhisperEngine.shared(WhisperOptions.from_settings(AsrSettings(hypotheses=1)), Settings())
    audio = trimmed(speak("Oh my god, he is lost it. He is totally lost it!", "en-us"))
    best = one.transcribe(audio)
    heard = two.transcribe(audio)
    assert best.hypotheses == () and heard.text == best.text
    assert len(heard.hypotheses) == 2 and heard.hypotheses[0][0] == heard.text
    assert heard.hypotheses[0][0] != heard.hypotheses[1][0]
    assert abs(sum(w for _, w in heard.hypotheses) - 1.0) < 1e-3
    assert all(0.0 < w < 1.0 for _, w in heard.hypotheses)
    assert two.transcribe_batch([audio], beam_size=1)[0].hypotheses == ()


def test_hypothesis_weights_merge_duplicates_and_drop_empty_runners_up() -> None:
    from emostream.inference.whisper import _weighted

    # scores are per-token log-probabilities: -0.1 x 10 tokens against -0.2 x 10 -> e^-1 : e^-2
    got = dict(_weighted(["a b", "a b!", ""], [-0.1, -0.2, -0.05], [10, 10, 1]))
    assert set(got) == {"a b", "a b!"}
    assert abs(got["a b"] / got["a b!"] - np.exp(1.0)) < 1e-2
    assert _weighted(["same", "same"], [-0.1, -0.3], [5, 5]) == (("same", 1.0),)


async def test_stage_sends_hypotheses_on_and_gold_text_has_none() -> None:
    bus = MemoryBus()
    stage = create(Settings(asr=AsrSettings(hypotheses=2, early_partials=False)))
    ctx = _ctx(bus)
    await stage.setup(ctx)
    try:
        audio = trimmed(speak("Are you kidding me? That is amazing!", "en-us"))
        ref = await bus.put_blob("u0", audio.astype(np.float32).tobytes(), 60)
        spoken = Utterance(room="r", speaker="ann", utterance=0, start=0.0, end=3.0, audio=ref)
        ((emit,),) = [await stage.process(spoken, ctx)]
        t = emit.message
        assert isinstance(t, Transcript) and len(t.hypotheses) == 2 and t.hypotheses[0].text == t.text
        gold = Utterance(room="r", speaker="ann", utterance=1, start=4.0, end=5.0, text="Fine.")
        ((emit,),) = [await stage.process(gold, ctx)]
        assert isinstance(emit.message, Transcript) and emit.message.hypotheses == []
    finally:
        await stage.close()
