"""Progress bars for commands that run longer than a few seconds (benches, analyze, training).

A bar is drawn on stderr and only when stderr is a terminal, so pipes, CI logs and ``--json``
consumers of stdout never see it; it is transient (gone when the work ends). Lines printed while a bar runs
go above it, unwrapped (stdout's only when stdout is a terminal too; piped stdout is left alone).
Model pulls keep their byte bars (``emostream.store.progress``) and replay its per-dialogue bars.

    with Steps("voices", total=len(voices)) as bar:
        for v in voices:
            ...
            bar.advance(note=v)
"""

from __future__ import annotations

import io
import sys
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


def enabled() -> bool:
    """Bars only for a person watching: stderr is a terminal (``TERM=dumb`` counts as one too)."""
    return sys.stderr.isatty()


class Steps:
    """One bar of ``total`` steps (unknown total: a pulsing bar); a no-op when stderr is no terminal."""

    def __init__(self, description: str, total: float | None = None, *, show: bool | None = None) -> None:
        self.description = description
        self.total = total
        self.show = enabled() if show is None else show
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._note = ""
        self._saved = (sys.stdout, sys.stderr)

    def __enter__(self) -> Steps:
        if self.show:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[note]}"),
                console=Console(file=sys.stderr, highlight=False),  # the real stderr, kept
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._progress.start()
            self._saved = (sys.stdout, sys.stderr)
            if sys.stdout.isatty():
                sys.stdout = _Above(self._progress.console, sys.stdout)
            sys.stderr = _Above(self._progress.console, sys.stderr)
            self._task = self._progress.add_task(self.description, total=self.total, note="")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            for stream in (sys.stdout, sys.stderr):
                if isinstance(stream, _Above):
                    stream.flush()
            sys.stdout, sys.stderr = self._saved
            self._progress.stop()
            self._progress = None
            self._task = None

    def advance(self, n: float = 1, note: str | None = None) -> None:
        if self._progress is not None and self._task is not None:
            self._note = self._note if note is None else note
            self._progress.update(self._task, advance=n, note=self._note)

    def update(
        self,
        completed: float | None = None,
        total: float | None = None,
        note: str | None = None,
        description: str | None = None,
    ) -> None:
        if self._progress is None or self._task is None:
            return
        self._note = self._note if note is None else note
        self._progress.update(
            self._task, completed=completed, total=total, description=description, note=self._note
        )


class _Above(io.TextIOBase):
    """A stand-in for stdout/stderr while a bar runs: whole lines go above the bar, unwrapped (rich's
    own redirection wraps long lines at the terminal width, which breaks JSON lines)."""

    def __init__(self, console: Console, real: TextIO) -> None:
        self.console, self.real, self._buf = console, real, ""

    def write(self, text: str) -> int:
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        if self._buf:
            self.console.print(self._buf, markup=False, highlight=False, emoji=False, soft_wrap=True)
            self._buf = ""

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.real.fileno()
