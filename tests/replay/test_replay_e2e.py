"""End to end: synthesized MELD clips through segmenter, ASR, FEC, VLM, context and fusion."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from emostream.cli import main


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def test_asr_replay_end_to_end(synth_root: Path, tmp_path: Path, replay: Any) -> None:
    out = tmp_path / "asr"
    metrics, err = replay("--root", str(synth_root), "--split", "dev", "--text", "asr", "--out", str(out))
    assert {"weighted_f1", "accuracy", "per_class_f1", "utterances"} <= set(metrics)
    assert metrics["utterances"] == metrics["answered"] == 11
    assert metrics["sources"] == {"clip": 11} and metrics["media"] is True
    assert 0.0 <= metrics["weighted_f1"] <= 100.0
    assert "total" in metrics["latency_ms"] and "asr" in metrics["latency_ms"]
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert len(events) == 11
    # espeak-ng speech is transcribed: most utterances share most of their words with the CSV text
    overlaps = [
        len(_words(e["transcript"]) & _words(e["meld"]["text"])) / max(1, len(_words(e["meld"]["text"])))
        for e in events
    ]
    assert sum(o >= 0.5 for o in overlaps) >= 8, overlaps
    # every event says what the visual branch did (``used`` when the face took part)
    assert sum(metrics["visual_status"].values()) == 11
    assert set(metrics["visual_status"]) <= {"used", "late", "absent", "no_face", "unreliable", "disabled"}
    features = [json.loads(x) for x in (out / "features.jsonl").read_text().splitlines()]
    assert len(features) == 11
    assert all(f.get("transcript") is not None for f in features)
    assert sum(bool(f.get("face_found")) for f in features) >= 8
    assert any(f.get("description_embedding") for f in features)
    # the visual descriptions in the form `train visual|fusion` reads
    described = [json.loads(x) for x in (out / "descriptions.jsonl").read_text().splitlines()]
    assert len(described) == metrics["descriptions"] >= 8
    assert set(described[0]) == {"dialogue", "utterance", "text", "confidence"}
    # what the text model read, in the form `train asr-text` writes and `eval meld --transcripts` reads
    heard = [json.loads(x) for x in (out / "transcripts.jsonl").read_text().splitlines()]
    assert len(heard) == metrics["transcripts"] == 11
    assert [h["text"] for h in heard] == [f["transcript"] for f in features]
    assert all(h["hypotheses"][0][0] == h["text"] for h in heard if "hypotheses" in h)
    assert sum("hypotheses" in h for h in heard) >= 8  # asr.hypotheses = 2: a distinct runner-up is usual
    for name in ("metrics.json", "confusion.png", "report.md", "timelines/dia0.png", "timelines/dia3.png"):
        assert (out / name).stat().st_size > 0, name
    assert "weighted-F1" in (out / "report.md").read_text()


def test_text_only_asr_replay_scores_what_eval_meld_scores_on_its_transcripts(
    synth_root: Path,
    tmp_path: Path,
    replay: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The replay's transcripts (with their hypotheses) through `eval meld` give the replay's figure."""
    monkeypatch.setenv("EMOSTREAM_FUSION_MODE", "text")
    out = tmp_path / "asr-text"
    metrics, _ = replay("--root", str(synth_root), "--split", "dev", "--text", "asr", "--out", str(out))
    assert metrics["utterances"] == metrics["answered"] == 11 and metrics["modalities"] == {"text": 11}
    csv, heard = str(synth_root / "dev_sent_emo.csv"), str(out / "transcripts.jsonl")
    assert main(["eval", "meld", "--csv", csv, "--transcripts", heard, "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert (
        scored["per_class_f1"] == metrics["per_class_f1"] and scored["weighted_f1"] == metrics["weighted_f1"]
    )
    assert scored["gold_text_no_transcript"] == 0 and scored["utterances"] == 11
    assert main(["eval", "meld", "--csv", csv, "--transcripts", heard, "--json", "--best-only"]) == 0
    assert json.loads(capsys.readouterr().out)["text_variant"].endswith("(best hypothesis only)")


def test_gold_text_replay_uses_csv_text(synth_root: Path, tmp_path: Path, replay: Any) -> None:
    out = tmp_path / "gold"
    metrics, _ = replay(
        "--root", str(synth_root), "--split", "dev", "--text", "gold", "--out", str(out), "--dialogues", "0,3"
    )
    assert metrics["utterances"] == metrics["answered"] == 5
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert [e["transcript"] for e in events] == [e["meld"]["text"] for e in events]
    assert {e["room"] for e in events} == {"meld-dev-dia0", "meld-dev-dia3"}
    assert [(e["speaker"], e["utterance"]) for e in events if e["room"] == "meld-dev-dia3"] == [
        ("gary", 0),
        ("ross", 0),
        ("chandler", 0),
    ]
