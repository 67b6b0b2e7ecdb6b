"""One module per CLI command: HELP, add_arguments(parser), run(args) -> int."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emostream.config import Settings


def settings_of(args: argparse.Namespace) -> Settings:
    """The command's settings (defaults < ``--config`` TOML < ``EMOSTREAM_*``), with ``--redis URL``
    (where the command has it) as the bus; a bad setting is one UserError line."""
    import msgspec

    from emostream.config import ConfigError, load_settings
    from emostream.errors import UserError

    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    redis = getattr(args, "redis", None)
    if redis:
        settings = msgspec.structs.replace(settings, bus=msgspec.structs.replace(settings.bus, url=redis))
    return settings
