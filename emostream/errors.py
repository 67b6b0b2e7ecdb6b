"""Errors a user can act on: one line saying what, where and what to do."""

from __future__ import annotations


class UserError(Exception):
    """Printed by the CLI as one line (no traceback); ``exit_code`` is the process status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
