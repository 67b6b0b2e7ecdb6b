"""Reading the compose files as docker compose does: YAML with merge keys, then ``${VAR}`` interpolation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILES = [REPO / "docker-compose.yml", *sorted((REPO / "deploy").rglob("*compose*.yml"))]
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def variables(text: str) -> set[str]:
    """Every ``${NAME...}`` the file reads from the environment (``$$`` escapes excluded)."""
    return {m.group(1) for m in VAR.finditer(text.replace("$$", ""))}


def interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        if value:
            return value
        if op and op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op else ""

    return VAR.sub(sub, text.replace("$$", "\0")).replace("\0", "$")


def load(path: Path, env: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(interpolate(path.read_text(), env))
    return data


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out
