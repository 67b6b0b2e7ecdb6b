"""The `emostream` command: help everywhere, version, JSON Schema, one-line errors with exit codes."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import emostream
from emostream import schema
from emostream.bus import open_bus
from emostream.cli import COMMANDS, main
from emostream.runtime import topology
from emostream.runtime.topology import StageSpec
from emostream.testing.harness import fast_settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emostream", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS], ["bench", "bus"], ["config", "show"]])
def test_help_on_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: emostream") and len(out.splitlines()) >= 3


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"emostream {emostream.__version__}"


def test_schema_events_is_valid_json_schema_that_accepts_real_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema", "events"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(doc)
    event = json.loads(schema.to_json(_event("r1", 1)))
    jsonschema.validate(event, doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**event, "label": "bored"}, doc)


def test_no_command_is_a_stub() -> None:
    """Every command and bench is built: none answers that it is not available."""
    for name in COMMANDS:
        source = inspect.getsource(importlib.import_module(f"emostream.commands.{name}"))
        assert "not available yet" not in source, name


def test_worker_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "nope", "--redis", "redis://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "emostream worker: error: unknown worker 'nope': choose one of asr, fec, vlm, context, fusion"
    )
    ghost = StageSpec("ghost", "emostream.workers.ghost", ("x",), ("y",))
    monkeypatch.setitem(topology.STAGES, "ghost", ghost)
    assert main(["worker", "ghost", "--redis", "redis://127.0.0.1:1"]) == 2
    assert (
        "stage 'ghost' is not installed (emostream.workers.ghost is missing): reinstall emostream"
        in capsys.readouterr().err
    )
    assert main(["worker", "toy"]) == 2  # memory:// default cannot be shared by processes
    assert "pass --redis" in capsys.readouterr().err


def test_unreachable_redis_is_one_line_naming_host_and_port(unused_port: int) -> None:
    result = cli("worker", "toy", "--redis", f"redis://127.0.0.1:{unused_port}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"cannot reach Redis at 127.0.0.1:{unused_port}" in result.stderr
    assert "start redis-server there or fix the address (it comes from --redis" in result.stderr
    assert "pass --redis" not in result.stderr  # it was passed
    bad = cli("events", "--redis", "http://127.0.0.1:80")
    assert bad.returncode == 1 and "bad bus URL scheme 'http'" in bad.stderr and bad.stderr.count("\n") == 1


async def test_events_prints_json_lines_of_one_room(flush_redis: str) -> None:
    bus = open_bus(flush_redis, fast_settings(flush_redis).bus)
    for room, n in [("r1", 1), ("r2", 2), ("r1", 3), ("r1", 4)]:
        await bus.publish("events", schema.encode(_event(room, n)))
    await bus.publish("events", b"garbage")
    await bus.close()
    result = cli("events", "--redis", flush_redis, "--room", "r1", "--from-start", "--count", "3")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["utterance"] for e in lines] == [1, 3, 4]
    assert lines[0]["id"] == schema.event_id("r1", "alice", 1)


def _event(room: str, n: int) -> schema.EmotionEvent:
    probs = dict.fromkeys(schema.EMOTIONS, 0.0) | {"joy": 1.0}
    return schema.EmotionEvent(
        id=schema.event_id(room, "alice", n),
        room=room,
        speaker="alice",
        utterance=n,
        start=0.0,
        end=1.0,
        label="joy",
        probabilities=probs,
        confidence=0.9,
        modalities=["text"],
    )


def test_config_is_accepted_before_and_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "f.toml"
    path.write_text("[bus]\nblob_ttl_s = 177\n")
    for argv in (["config", "show", "--config", str(path)], ["--config", str(path), "config", "show"]):
        assert main(argv) == 0
        assert "blob_ttl_s = 177" in capsys.readouterr().out, argv
    assert main(["config", "show"]) == 0
    assert "blob_ttl_s = 177" not in capsys.readouterr().out


def test_every_subcommand_help_has_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["replay", "meld"], ["replay", "synth"], ["models", "pull"], ["config", "show"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        usage, _, rest = capsys.readouterr().out.partition("\n\n")
        assert rest and not rest.startswith("options:"), (argv, rest[:80])
