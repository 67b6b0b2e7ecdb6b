"""Progress for long pulls: rich bars on a terminal, plain status lines otherwise (CI logs, pipes)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class Task:
    """One bar (bytes); a no-op when bars are off."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def update(self, completed: int, total: int | None = None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed, total=total or None)

    def close(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._progress.refresh()  # or the next note line re-draws the finished bar
            self._task = None


class Reporter:
    """Bars when ``bars`` (default: stderr is a terminal); ``note`` lines always go to stderr."""

    def __init__(self, bars: bool | None = None, quiet: bool = False) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.bars = self.console.is_terminal if bars is None else bars
        self.quiet = quiet
        self._progress: Progress | None = None

    def __enter__(self) -> Reporter:
        if self.bars and not self.quiet:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def task(self, description: str, total: int | None) -> Task:
        if self._progress is None:
            return Task(None, None)
        return Task(self._progress, self._progress.add_task(description, total=total or None))

    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False, soft_wrap=True)


SILENT = Reporter(bars=False, quiet=True)
