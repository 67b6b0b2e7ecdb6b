"""The dialogue model: numpy runtime == torch training module, TextModel.decide over windows, eval parity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from emostream.commands.eval import evaluate
from emostream.inference.dialogue import DialogueHistory
from emostream.inference.dialogue_model import DialogueModel, inputs_of
from emostream.inference.text import TextModel
from emostream.train.dialogue import DialogueGRU

from .helpers import FIXTURE_CSV, TinyModels


def _save(folder: Path, members: list[DialogueGRU], inputs: str, d_in: int, hidden: int) -> None:
    arrays = {
        f"m{i}.{k}": v.detach().numpy() for i, m in enumerate(members) for k, v in m.state_dict().items()
    }
    np.savez(folder / "dialogue.npz", **arrays)
    spec = {"type": "speaker-gru", "inputs": inputs, "d_in": d_in, "hidden": hidden, "members": len(members)}
    (folder / "dialogue.json").write_text(json.dumps({**spec, "file": "dialogue.npz"}))


def _members(d_in: int, hidden: int, n: int, gain: float = 5.0) -> list[DialogueGRU]:
    torch.manual_seed(0)
    members = [DialogueGRU(d_in, hidden, dropout=0.0).eval() for _ in range(n)]
    for m in members:  # larger weights than the init so the residual is far from zero
        with torch.no_grad():
            m.out.weight.mul_(gain)
    return members


def test_numpy_runtime_equals_the_torch_module(tmp_path: Path) -> None:
    d_h, hidden, t_len = 12, 16, 9
    members = _members(d_h + 7, hidden, 2)
    _save(tmp_path, members, "h+logits", d_h + 7, hidden)
    rng = np.random.default_rng(1)
    h = rng.normal(size=(t_len, d_h)).astype(np.float32)
    logits = rng.normal(size=(t_len, 7)).astype(np.float32)
    speakers = [0, 1, 0, 2, 2, 1, 0, 3, 1]
    x = inputs_of(h, logits, "h+logits")
    with torch.no_grad():
        args = (torch.from_numpy(x)[None], torch.from_numpy(logits)[None], torch.tensor([speakers]))
        mask = torch.ones(1, t_len, dtype=torch.bool)
        expected = torch.stack([m(*args, mask)[0] for m in members]).mean(0).numpy()
    got = DialogueModel.from_dir(tmp_path).logits_all(x, logits, speakers)
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(got - logits).max() > 0.1  # the residual is not a no-op
    # causal: a later turn never changes an earlier decision
    early = DialogueModel.from_dir(tmp_path).decide(h[:4], logits[:4], speakers[:4])
    assert np.allclose(early, got[3], atol=1e-5)


def test_padding_in_a_batch_changes_nothing() -> None:
    m = _members(10, 8, 1)[0]
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(2, 6, 10)).astype(np.float32))
    lg = torch.from_numpy(rng.normal(size=(2, 6, 7)).astype(np.float32))
    spk = torch.tensor([[0, 1, 0, 1, 0, 0], [1, 0, 2, 0, 0, 0]])
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    with torch.no_grad():
        both = m(x, lg, spk, mask)
        alone = m(x[1:, :3], lg[1:, :3], spk[1:, :3], mask[1:, :3])
    assert torch.allclose(both[1, :3], alone[0], atol=1e-5)


@pytest.fixture()
def dialogue_dir(tiny_models: TinyModels, tmp_path: Path) -> Path:
    folder = tmp_path / "text-dialogue"
    folder.mkdir()
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copy(tiny_models.woq_integer / name, folder / name)
    meta = json.loads((tiny_models.woq_integer / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "context_turns": 0}))
    hidden = int(meta["head"]["in"])
    # the tiny teacher's logits are large (head gain 30): a residual of that size makes decisions differ
    _save(folder, _members(hidden + 7, 16, 2, gain=300.0), "h+logits", hidden + 7, 16)
    return folder


def test_decide_encodes_each_turn_alone_once_and_reads_the_window(dialogue_dir: Path) -> None:
    model = TextModel.from_dir(dialogue_dir)
    assert model.dialogue is not None and model.builder.past_turns == 0
    calls: list[int] = []
    run = model.run
    model.run = lambda prompts: (calls.append(len(prompts)), run(prompts))[1]  # type: ignore[method-assign]
    history = DialogueHistory(model.builder, limit=4)
    lines = [
        ("alice", "i can't believe it"),
        ("bob", "what happened"),
        ("alice", "we won"),
        ("bob", "no way"),
    ]
    decisions = []
    for i, (speaker, text) in enumerate(lines):
        window = history.add(f"k{i}", speaker, float(i), text)
        _, logits, new = model.decide(window)
        assert list(new) == [f"k{i}"]  # only the new turn is encoded
        history.remember(new)
        decisions.append(logits)
    assert calls == [1, 1, 1, 1]
    # the same decisions from scratch: each turn encoded alone, then the dialogue model over all four
    alone = [
        run([model.builder.assemble([history.turns[i].segment], history.turns[i].speaker)]) for i in range(4)
    ]
    h = np.stack([e[0][0] for e in alone])
    z = np.stack([e[1][0] for e in alone])
    assert model.dialogue is not None
    assert np.allclose(decisions[-1], model.dialogue.decide(h, z, [0, 1, 0, 1]), atol=1e-5)
    assert not np.allclose(decisions[-1], z[-1], atol=1e-3)  # the past changed the decision
    # a turn this history never encoded (added by the tail, a rebuild) is encoded when first needed
    fresh = DialogueHistory(model.builder, limit=4)
    for i, (speaker, text) in enumerate(lines):
        last = fresh.add(f"k{i}", speaker, float(i), text)
    _, logits, new = model.decide(last)
    assert sorted(new) == ["k0", "k1", "k2", "k3"] and np.allclose(logits, decisions[-1], atol=1e-5)


def test_eval_meld_runs_the_dialogue_path(dialogue_dir: Path) -> None:
    model = TextModel.from_dir(dialogue_dir)
    result = evaluate(model, str(FIXTURE_CSV), history=32)
    manual, encoder_only = [], []
    from emostream.evaluation.meld import read_meld

    for dialogue in read_meld(FIXTURE_CSV).dialogues.values():
        history = DialogueHistory(model.builder, 32)
        for u in dialogue:
            window = history.add(str(u.index), u.speaker, float(u.index), u.text)
            _, logits, new = model.decide(window)
            history.remember(new)
            manual.append(int(np.argmax(logits)))
            encoder_only.append(int(np.argmax(model.run([window.prompt])[1][0])))
    assert result["predictions"] == manual and result["utterances"] == 42
    assert result["predictions"] != encoder_only  # the dialogue model decided, not the encoder alone


def test_quantize_ships_the_dialogue_model_only_beside_an_utterance_encoder(tmp_path: Path) -> None:
    from emostream.errors import UserError
    from emostream.train.quantize import copy_dialogue

    run, out = tmp_path / "run", tmp_path / "out"
    run.mkdir()
    out.mkdir()
    _save(run, _members(9, 4, 1), "h+logits", 9, 4)
    with pytest.raises(UserError, match="context_turns 0"):
        copy_dialogue(run, out, {"max_tokens": 128})
    copy_dialogue(run, out, {"context_turns": 0})
    assert DialogueModel.present(out) and (out / "dialogue.npz").is_file()
    copy_dialogue(None, out, {})  # re-quantizing without one removes the stale files
    assert not DialogueModel.present(out) and not (out / "dialogue.npz").exists()


def test_a_turn_heard_several_ways_is_the_weighted_mean_of_its_readings(dialogue_dir: Path) -> None:
    """ASR hypotheses: the distinct readings encoded as one batch, mixed by weight; readings the tokenizer
    folds into one (case) and a single hypothesis change nothing."""
    model = TextModel.from_dir(dialogue_dir)
    plain = DialogueHistory(model.builder, limit=4)
    heard = DialogueHistory(model.builder, limit=4)
    plain.add("k0", "alice", 0.0, "we won")
    heard.add("k0", "alice", 0.0, "we won", [("we won", 1.0)])
    assert heard.turns[0].readings == ()  # one reading: the segment alone
    folded = heard.add("k1", "bob", 1.0, "No way.", [("No way.", 0.7), ("no way.", 0.3)])
    assert folded.readings[-1] == ()  # the tokenizer lowercases: one reading, no extra encoding
    window = heard.add("k2", "alice", 2.0, "we did it.", [("we did it.", 0.75), ("we did it!", 0.25)])
    (seg_a, w_a), (seg_b, w_b) = window.readings[-1]
    assert (w_a, w_b) == (0.75, 0.25) and seg_a != seg_b
    _, logits, new = model.decide(window)
    e, z = model.run([model.builder.assemble([seg], 0) for seg in (seg_a, seg_b)])  # one batch
    assert np.allclose(new["k2"][0], 0.75 * e[0] + 0.25 * e[1], atol=1e-5)
    assert np.allclose(new["k2"][1], 0.75 * z[0] + 0.25 * z[1], atol=1e-5)
    plain.add("k1", "bob", 1.0, "No way.")
    _, alone, _ = model.decide(plain.add("k2", "alice", 2.0, "we did it."))
    assert not np.allclose(logits, alone, atol=1e-4)  # the runner-up moved the decision
    _, same, _ = model.decide(plain.window("k0"))
    _, again, _ = model.decide(heard.window("k0"))
    assert np.array_equal(same, again)
    broken = heard.add("k3", "bob", 3.0, "ok.", [("ok.", float("nan")), ("ok!", -1.0), ("ok?", float("inf"))])
    assert broken.readings[-1] == ()  # no usable weight: the best text alone
    many = [(f"reading {i}.", 1.0) for i in range(50)]
    assert len(heard.add("k4", "bob", 4.0, "reading 0.", many).readings[-1]) == 8  # bounded per turn


def test_eval_meld_reads_cached_hypotheses_unless_best_only(dialogue_dir: Path, tmp_path: Path) -> None:
    from emostream.evaluation.meld import read_meld
    from emostream.evaluation.transcripts import load_heard, load_transcripts

    rows = [u for d in read_meld(FIXTURE_CSV).dialogues.values() for u in d]
    cache = tmp_path / "heard.jsonl"
    with cache.open("w") as fh:
        for u in rows:
            runner_up = u.text.rstrip(".!?") + ("?" if u.index % 2 else "!")
            line = {"dialogue": u.dialogue, "utterance": u.index, "text": u.text}
            fh.write(json.dumps({**line, "hypotheses": [[u.text, 0.6], [runner_up, 0.4]]}) + "\n")
    assert load_transcripts(cache) == {(u.dialogue, u.index): u.text for u in rows}
    heard = load_heard(cache)
    model = TextModel.from_dir(dialogue_dir)
    mixed = evaluate(model, str(FIXTURE_CSV), history=32, transcripts=heard)
    best = evaluate(
        model, str(FIXTURE_CSV), history=32, transcripts={k: (t, ()) for k, (t, _) in heard.items()}
    )
    gold = evaluate(model, str(FIXTURE_CSV), history=32)
    assert best["predictions"] == gold["predictions"] and mixed["gold_text_no_transcript"] == 0
    differ = sum(u.text.rstrip(".!?") + ("?" if u.index % 2 else "!") != u.text for u in rows)
    assert mixed["several_readings"] == differ > 0 and best["several_readings"] == 0
    assert mixed["predictions"] != gold["predictions"]


async def test_context_stage_reads_transcript_hypotheses_as_eval_does(dialogue_dir: Path) -> None:
    """The live context stage and `eval meld --transcripts` decide the same from the same hypotheses."""
    from emostream.bus import open_bus
    from emostream.config import BusSettings, Settings
    from emostream.runtime.stage import StageContext
    from emostream.schema import Hypothesis, TextContext, Transcript
    from emostream.workers.context import ContextStage

    settings = Settings(bus=BusSettings(url="memory://"))
    bus = open_bus("memory://", settings.bus)
    model = TextModel.from_dir(dialogue_dir)
    stage = ContextStage(settings, model=model, follow=False)
    ctx = StageContext(bus=bus, settings=settings, stage="context", consumer="c")
    await stage.setup(ctx)
    said = [
        ("alice", [("i can't believe it.", 0.6), ("i can't believe it!", 0.4)]),
        ("bob", [("what happened?", 1.0)]),
        ("alice", [("we won.", 0.55), ("we won!", 0.45)]),
    ]
    history = DialogueHistory(model.builder, settings.context.history)
    try:
        for i, (speaker, heard) in enumerate(said):
            hyps = [Hypothesis(text=t, weight=w) for t, w in heard] if len(heard) > 1 else []
            msg = Transcript(
                room="r", speaker=speaker, utterance=i, start=float(i), end=i + 0.9, text=heard[0][0],
                hypotheses=hyps,
            )  # fmt: skip
            (out,) = await stage.handle(msg, ctx)
            assert isinstance(out.message, TextContext)
            window = history.add(msg.key, speaker, float(i), heard[0][0], heard if hyps else ())
            _, logits, new = model.decide(window)
            history.remember(new)
            assert np.allclose(out.message.logits, logits, atol=1e-5)
    finally:
        await stage.close()
        await bus.close()
