"""Errors a user can act on: one line saying what, where and what to do."""

from __future__ import annotations


class UserError(Exception):
    """Printed by the CLI as one line (no traceback); ``exit_code`` is the process status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NotLanded(UserError):
    """A command whose issue has not landed yet: says so and exits 2."""

    def __init__(self, command: str, issue: str) -> None:
        super().__init__(f"`{command}` is not available yet (issue {issue} has not landed)", exit_code=2)
