"""A progress bar for long jobs (fsck, gc, backup, restore), drawn only when stderr is a terminal.

Scripts and CI read stdout and stderr as text; a bar there would be noise, so off a terminal the
tracker does nothing. Rich comes with Typer (which renders its help with it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.progress import TaskID


class Tracker(Protocol):
    """What a job reports to: how much work there is, and how much was done since the last call."""

    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, amount: int = 1) -> None: ...


class _Silent:
    def start(self, description: str, total: int | None) -> None:
        return None

    def advance(self, amount: int = 1) -> None:
        return None


class _RichTracker:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: TaskID | None = None

    def start(self, description: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(description, total=total)

    def advance(self, amount: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)

    def __enter__(self) -> _RichTracker:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


@contextmanager
def progress() -> Iterator[Tracker]:
    """A tracker that draws on stderr when it is a terminal, and does nothing otherwise."""
    if not sys.stderr.isatty():
        yield _Silent()
        return
    with _RichTracker() as tracker:
        yield tracker
