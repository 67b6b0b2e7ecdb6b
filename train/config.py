"""Training configs: dataclasses with documented defaults, filled from a TOML file and CLI overrides."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from emostream.config import Settings
from emostream.errors import UserError

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None, overrides: dict[str, Any] | None = None) -> T:
    """Build ``cls`` from the TOML file at ``path`` (flat keys) then ``overrides`` (None values ignored).

    Unknown keys are an error, so a typo never silently falls back to a default.
    """
    values = read_toml(Path(path)) if path is not None else {}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"unknown config keys {unknown} for {cls.__name__} (known: {sorted(names)})")
    return cls(**values)


def read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's keys; ``base = "other.toml"`` (beside it) is read first and overridden, so a variant
    recipe states only what it changes."""
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise UserError(f"{path}: base chain loops back to itself")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    base = values.pop("base", None)
    if base is None:
        return values
    merged = read_toml(path.parent / str(base), (*seen, path.resolve()))
    merged.update(values)
    return merged


def resolve_model_path(name_or_path: str, store_name: str, settings: Settings) -> Path:
    """A local folder if given, else the model store's copy of ``store_name``."""
    if name_or_path:
        p = Path(name_or_path).expanduser()
        if not p.exists():
            raise UserError(f"model folder not found: {p}")
        return p
    from emostream.store import load

    return Path(load(store_name, settings))
