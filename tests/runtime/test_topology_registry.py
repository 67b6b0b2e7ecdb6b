"""The stage registry is the one stage list: the worker command, replay and docker-compose agree with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from emostream.config import Settings
from emostream.errors import UserError
from emostream.runtime import topology

REPO = Path(__file__).resolve().parents[2]


def test_compose_runs_exactly_the_registry_stages() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    workers = [s["command"][1] for s in compose["services"].values() if s.get("command", [""])[0] == "worker"]
    assert workers == list(topology.PIPELINE)


@pytest.mark.parametrize("name", list(topology.STAGES))
def test_registry_inputs_are_what_the_stage_consumes(name: str) -> None:
    spec = topology.STAGES[name]
    stage = spec.create(Settings())  # models load in setup(), not here
    assert stage.name == ("toy1" if name == "toy" else name)
    tailed = {"descriptions"} if name == "fusion" else set()  # fusion tails it without a group
    assert set(stage.inputs) == set(spec.inputs) - tailed


def test_text_only_run_leaves_out_the_visual_branch() -> None:
    assert topology.TEXT_ONLY == ("asr", "context", "fusion")
    assert "toy" not in topology.PIPELINE


def test_unknown_stage_is_one_line() -> None:
    with pytest.raises(UserError, match="unknown stage 'nope': choose one of asr, fec, vlm, context, fusion"):
        topology.spec("nope")
