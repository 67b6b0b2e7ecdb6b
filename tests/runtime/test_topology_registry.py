"""The stage registry is the one stage list: the worker command, replay and docker-compose agree with it."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from emostream.errors import UserError
from emostream.runtime import topology
from emostream.runtime.stage import Stage

REPO = Path(__file__).resolve().parents[2]


def stage_class(spec: topology.StageSpec) -> type[Stage]:
    """The Stage subclass named ``spec.name`` in the spec's module (without building it: no models)."""
    module = importlib.import_module(spec.module)
    for path in (module.__name__, f"{module.__name__}.stage"):
        mod = importlib.import_module(path) if path != module.__name__ else module
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, Stage) and getattr(cls, "name", None) in (spec.name, "toy"):
                return cls
    raise AssertionError(f"no Stage named {spec.name} in {spec.module}")


def test_compose_runs_exactly_the_registry_stages() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    workers = [s["command"][1] for s in compose["services"].values() if s.get("command", [""])[0] == "worker"]
    assert workers == list(topology.PIPELINE)


@pytest.mark.parametrize("name", list(topology.STAGES))
def test_registry_inputs_are_what_the_stage_consumes(name: str) -> None:
    spec = topology.STAGES[name]
    cls = stage_class(spec)
    declared = set(getattr(cls, "inputs", {}) or {})
    if name == "toy":  # relays are built per hop; hop 1 reads toy.0
        declared = {"toy.0"}
    assert declared == set(spec.inputs) - ({"descriptions"} if name == "fusion" else set())


def test_text_only_run_leaves_out_the_visual_branch() -> None:
    assert topology.TEXT_ONLY == ("asr", "context", "fusion")
    assert "toy" not in topology.PIPELINE


def test_unknown_stage_is_one_line() -> None:
    with pytest.raises(UserError, match="unknown stage 'nope': choose one of asr, fec, vlm, context, fusion"):
        topology.spec("nope")
